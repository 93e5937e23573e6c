"""HTTP field primitives (pure): header lookup, list splitting, Cache-Control, dates.

Everything here takes header lines as a mapping or as (name, value) pairs (aiohttp's
`CIMultiDict`, a plain dict, or the list the store keeps) and never raises on hostile
input: an unparsable value reads as absent (`None`), which the callers in
`rfc9111`/`conditional` turn into the conservative choice.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterable, Mapping

Headers = Mapping[str, str] | Iterable[tuple[str, str]]

# RFC 9110 7.6.1 connection-specific fields, plus Content-Length: a proxy re-frames the body.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)

# RFC 9111 1.2.2: a delta-seconds value too large to represent reads as 2^31.
DELTA_MAX = 2147483648


def pairs(headers: Headers) -> Iterable[tuple[str, str]]:
    """The header lines as (name, value) pairs, whatever container holds them."""
    return headers.items() if isinstance(headers, Mapping) else headers


def field(headers: Headers, name: str) -> str:
    """All lines of one header field as one list value (RFC 9110 5.3), name case-insensitive."""
    name = name.lower()
    return ", ".join(v for k, v in pairs(headers) if k.lower() == name)


def has_field(headers: Headers, name: str) -> bool:
    name = name.lower()
    return any(k.lower() == name for k, _ in pairs(headers))


def first(headers: Headers, name: str) -> str | None:
    """The first line of a singleton field (Date, Expires, Age, ETag...), or None."""
    name = name.lower()
    for k, v in pairs(headers):
        if k.lower() == name:
            return v.strip()
    return None


def split_list(value: str) -> list[str]:
    """Split a comma-separated list (RFC 9110 5.6.1), keeping quoted strings whole; empties dropped."""
    out: list[str] = []
    cur: list[str] = []
    quoted = escaped = False
    for ch in value:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            item = "".join(cur).strip()
            if item:
                out.append(item)
            cur = []
            continue
        cur.append(ch)
    item = "".join(cur).strip()
    if item:
        out.append(item)
    return out


def unquote(value: str) -> str:
    """The content of a quoted-string (backslash escapes removed); other values as given."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        body, out, i = value[1:-1], [], 0
        while i < len(body):
            if body[i] == "\\" and i + 1 < len(body):
                i += 1
            out.append(body[i])
            i += 1
        return "".join(out)
    return value


def cache_control(value: str) -> dict[str, str]:
    """Parse a Cache-Control value into {directive: argument} (names lowercased, "" without one).

    A repeated directive keeps its first occurrence (RFC 9111 4.2.1 allows "first" or "stale").
    """
    out: dict[str, str] = {}
    for part in split_list(value):
        name, _, arg = part.partition("=")
        name = name.strip().lower()
        if name and name not in out:
            out[name] = unquote(arg)
    return out


def directives(headers: Headers) -> dict[str, str]:
    """Cache-Control of a request or response, every field line read (RFC 9110 5.3)."""
    return cache_control(field(headers, "cache-control"))


def delta_seconds(value: str | None) -> int | None:
    """An RFC 9111 1.2.2 delta-seconds value; None when absent or not a non-negative integer."""
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        return None
    return min(int(value), DELTA_MAX)


def field_names(value: str) -> list[str]:
    """A list of field names (Vary, Connection, qualified no-cache/private), lowercased."""
    return [n.strip().lower() for n in split_list(value)]


def parse_http_date(value: str | None) -> float | None:
    """An HTTP-date (IMF-fixdate, RFC 850 or asctime) as POSIX seconds; None when invalid."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value.strip()).timestamp()
    except (ValueError, TypeError, IndexError, OverflowError):
        return None


def format_http_date(ts: float) -> str:
    """POSIX seconds as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`)."""
    return email.utils.formatdate(ts, usegmt=True)


def end_to_end(headers: Headers) -> list[tuple[str, str]]:
    """The headers a proxy passes on: everything but hop-by-hop ones (RFC 9110 7.6.1)."""
    lines = list(pairs(headers))
    named = {h.strip().lower() for h in field(lines, "connection").split(",")}
    return [(k, v) for k, v in lines if k.lower() not in HOP_BY_HOP and k.lower() not in named]


def without(headers: Headers, names: Iterable[str]) -> list[tuple[str, str]]:
    """The header lines except those whose (case-insensitive) name is in `names`."""
    drop = {n.lower() for n in names}
    return [(k, v) for k, v in pairs(headers) if k.lower() not in drop]
