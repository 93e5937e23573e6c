"""ARLs (Akamai Resource Locators): edge URLs that carry serial, TTL and origin in the path.

    http://a123.g.akacdn.test/7/123/12h/www.demo.example/img/a.gif?v=2
                              | |   |   |                |
                              | |   |   origin host      path and query at the origin
                              | |   TTL: 30s, 5m, 12h, 7d or plain seconds (0 .. 365d)
                              | serial: the customer's content bucket (1 .. 999999)
                              type (1 .. 99; the akamaize tool writes 7)

Pure: no I/O. `build(...)` makes the path of an ARL, `url(...)` a whole ARL, and
`parse(target)` reads the request target (path and query) an edge received.

Error contract: `parse`, `build`, `url`, `parse_ttl` and `check_hostname` raise only
`ARLError` (a `ValueError`) for bad input; its message is short, names the part that is
wrong, and is fit for a 400 response body. Anything else escaping is a bug.

What `parse` accepts (strictly):
  * printable ASCII only, at most MAX_TARGET characters, no fragment (`#`);
  * type and serial as digits without leading zeros, TTL as above;
  * origin host a DNS hostname (letters, digits, hyphens; not an IPv4 address;
    lower-cased, a trailing dot dropped);
  * path characters from RFC 3986 `pchar` and `/`, percent escapes well formed;
    dot segments (also `%2e`) removed; a `..` that would climb above the origin's root
    is refused (`/7/1/1d/h/../x`), never clamped;
  * query characters from RFC 3986 `query`, kept verbatim (`None` when there was no `?`).
`build` percent-encodes whatever falls outside those sets (UTF-8; lone surrogates from
`surrogateescape` decoding become their original bytes), so `parse(build(...))` always
round-trips.

`is_arl(target)` is the cheap test the edge uses to tell an ARL from a plain path on an
`aNNN.g.<base>` host: the first two segments are digits. A customer whose own paths
start with `/<digits>/<digits>/` cannot use plain paths on that host (use a CNAME).
"""

from __future__ import annotations

import re

import msgspec

from .. import durations, serials
from ..durations import format_ttl

DEFAULT_TYPE = 7
MAX_TYPE = 99
MAX_SERIAL = 999_999  # as in the customers file
MAX_TTL = durations.MAX_TTL
MAX_TARGET = 8192

_TYPE = re.compile(r"[1-9][0-9]?\Z")
_SERIAL = re.compile(r"[1-9][0-9]{0,5}\Z")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_HEX = "0123456789abcdefABCDEF"
_ARL_PREFIX = re.compile(r"/[0-9]+/[0-9]+/")

# RFC 3986: pchar = unreserved / pct-encoded / sub-delims / ":" / "@"
_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_SUB_DELIMS = "!$&'()*+,;="
PATH_CHARS = frozenset(_UNRESERVED + _SUB_DELIMS + ":@/")
QUERY_CHARS = PATH_CHARS | {"?"}


class ARLError(ValueError):
    """A malformed ARL (or a bad part given to `build`); the message says which part."""


class ARL(msgspec.Struct, frozen=True):
    """A parsed ARL."""

    type: int
    serial: int
    ttl: int  # seconds; overrides the origin's freshness at the edge
    origin_host: str  # lower case, no trailing dot
    path: str  # normalised, starts with "/"
    query: str | None = None  # without the "?"; None when the target had none

    @property
    def target(self) -> str:
        """The request target to send to the origin: path and query."""
        return self.path if self.query is None else f"{self.path}?{self.query}"

    def to_path(self) -> str:
        """This ARL as a request target again (the TTL in its canonical form)."""
        return build(self.serial, self.ttl, self.origin_host, self.target, type=self.type)


def parse_ttl(text: str | int) -> int:
    """Seconds from `30s`, `5m`, `12h`, `7d` or plain seconds (`durations`), ARLError when bad."""
    try:
        return durations.parse_ttl(text)
    except durations.TTLError as e:
        raise ARLError(str(e)) from None


def check_hostname(host: str) -> str:
    """A valid DNS hostname, lower-cased and without a trailing dot, or ARLError."""
    name = host.lower()
    if name.endswith("."):
        name = name[:-1]
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()  # an all-numeric top label: an IPv4 address, not a name
    ):
        raise ARLError(f"bad origin host {host[:100]!r}: not a hostname")
    return name


def normalize_path(path: str, *, clamp: bool = False) -> str:
    """Remove dot segments (RFC 3986 5.2.4; `%2e` counts as `.`) from a path that starts with `/`.

    A `..` above the root is refused (ARLError), or dropped when `clamp` (what browsers do).
    """
    if not path.startswith("/"):
        raise ARLError(f"path {path[:100]!r} does not start with '/'")
    segments = path.split("/")[1:]
    out: list[str] = []
    last = len(segments) - 1
    for i, seg in enumerate(segments):
        dots = seg.replace("%2e", ".").replace("%2E", ".") if "%" in seg else seg
        if dots == ".":
            pass
        elif dots == "..":
            if out:
                out.pop()
            elif not clamp:
                raise ARLError("path climbs above the origin's root ('..')")
        else:
            out.append(seg)
            continue
        if i == last:
            out.append("")  # "/a/." and "/a/b/.." end in a slash
    return "/" + "/".join(out)


def _check_escapes(text: str, what: str) -> None:
    i = text.find("%")
    while i >= 0:
        if len(text) < i + 3 or text[i + 1] not in _HEX or text[i + 2] not in _HEX:
            raise ARLError(f"bad percent escape in {what}")
        i = text.find("%", i + 3)


def _quote(text: str, safe: frozenset[str]) -> str:
    """Percent-encode every character outside `safe` (and every `%` not starting an escape)."""
    out: list[str] = []
    n = len(text)
    for i, ch in enumerate(text):
        if ch in safe:
            out.append(ch)
        elif ch == "%" and i + 2 < n and text[i + 1] in _HEX and text[i + 2] in _HEX:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(out)


def _number(text: str, pattern: re.Pattern[str], what: str) -> int:
    if not pattern.match(text):
        raise ARLError(f"bad {what} {text[:20]!r}: want digits without leading zeros")
    return int(text)


def _check_int(value: int, top: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        raise ARLError(f"bad {what} {value!r}: want 1 to {top}")
    return value


def quote_target(target: str) -> str:
    """A path (and query) with characters outside RFC 3986 percent-encoded, as `build` does."""
    p, sep, q = target.partition("?")
    p = _quote(p, PATH_CHARS)
    return f"{p}?{_quote(q, QUERY_CHARS)}" if sep else p


def build(serial: int, ttl: int | str, origin_host: str, path: str, type: int = DEFAULT_TYPE) -> str:
    """The path of an ARL: `/<type>/<serial>/<ttl>/<origin host><path>[?query]`.

    `path` is the object's path at the origin (starting with `/`), with its query if any;
    characters outside RFC 3986 are percent-encoded and dot segments removed (ARLError if
    they climb above the root, or for a fragment).
    """
    _check_int(type, MAX_TYPE, "ARL type")
    _check_int(serial, MAX_SERIAL, "serial")
    seconds = parse_ttl(ttl)
    host = check_hostname(origin_host)
    if "#" in path:
        raise ARLError("an ARL carries no fragment ('#')")
    p, sep, q = quote_target(path).partition("?")
    target = normalize_path(p) + sep + q
    return f"/{type}/{serial}/{format_ttl(seconds)}/{host}{target}"


def url(
    serial: int,
    ttl: int | str,
    origin_host: str,
    path: str,
    base_domain: str,
    *,
    type: int = DEFAULT_TYPE,
    subzone: str = "g",
    scheme: str = "http",
) -> str:
    """A whole ARL: `http://a<serial>.<subzone>.<base domain>` + `build(...)`."""
    return f"{scheme}://{edge_host(serial, base_domain, subzone)}{build(serial, ttl, origin_host, path, type)}"


def edge_host(serial: int, base_domain: str, subzone: str = "g") -> str:
    """The serial's edge hostname, `a<serial>.<subzone>.<base domain>` (what the LLNS answers)."""
    return serials.hostname(serial, subzone, base_domain)


def is_arl(target: str) -> bool:
    """Whether a request target looks like an ARL (first two segments digits): parse it then."""
    return _ARL_PREFIX.match(target) is not None


def parse(target: str) -> ARL:
    """Parse the request target of an ARL request (`/7/123/12h/www.demo.example/img/a.gif?v=2`)."""
    if len(target) > MAX_TARGET:
        raise ARLError("ARL too long")
    if not target.isascii() or not target.isprintable() or " " in target:
        raise ARLError("ARL has a character that is not printable ASCII")
    if "#" in target:
        raise ARLError("an ARL carries no fragment ('#')")
    path, sep, query = target.partition("?")
    parts = path.split("/", 5)
    if parts[0] != "" or len(parts) < 5:
        raise ARLError("not an ARL: want /<type>/<serial>/<ttl>/<origin host>/<path>")
    typ = _number(parts[1], _TYPE, "ARL type")
    serial = _number(parts[2], _SERIAL, "serial")
    ttl = parse_ttl(parts[3])
    if not parts[4]:
        raise ARLError("ARL has no origin host")
    host = check_hostname(parts[4])
    rest = "/" + parts[5] if len(parts) == 6 else "/"
    bad = set(rest) - PATH_CHARS - {"%"}
    if bad:
        raise ARLError(f"path has characters that must be percent-encoded: {''.join(sorted(bad))!r}")
    _check_escapes(rest, "path")
    if sep:
        bad = set(query) - QUERY_CHARS - {"%"}
        if bad:
            raise ARLError(f"query has characters that must be percent-encoded: {''.join(sorted(bad))!r}")
        _check_escapes(query, "query")
    return ARL(typ, serial, ttl, host, normalize_path(rest), query if sep else None)
