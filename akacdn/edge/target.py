"""Request targets as cache keys (pure): equivalent URLs make one key (RFC 3986 6.2.2).

Percent-encodings of unreserved characters are decoded (`%7E` -> `~`), other
percent-encodings upper-cased (`%2f` -> `%2F`), and dot segments removed from the path
(`/a/./b/../c` -> `/a/c`, never above the root). The query keeps its order (origins may
care) and gets the same percent normalisation. The normalised target is also what the
origin is asked for: the same resource by RFC 3986.
"""

from __future__ import annotations

import re

_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _pct(m: re.Match[str]) -> str:
    byte = int(m.group(1), 16)
    return chr(byte) if byte in _UNRESERVED else "%" + m.group(1).upper()


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4, for an absolute path."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out)


def normalize_target(target: str) -> str:
    """The normal form of an origin-form request target (`/path?query`)."""
    path, sep, query = target.partition("?")
    if not path.startswith("/"):
        path = "/" + path
    path = remove_dot_segments(_PCT.sub(_pct, path))
    return path + sep + _PCT.sub(_pct, query)


HTTPS = "https:"  # what an https request's cache key target starts with


def cache_key(customer: str, target: str, scheme: str) -> tuple[str, str]:
    """The cache key of a request: (customer, normalised target), the scheme part of it as
    in nginx's default key (an origin may answer http with a redirect to https: sharing
    the stored answer would send https clients round that redirect forever)."""
    return (customer, target) if scheme == "http" else (customer, HTTPS + target)


def origin_target(key: tuple[str, str]) -> str:
    """The request target a cache key stands for (what the origin is asked for)."""
    return key[1].removeprefix(HTTPS)
