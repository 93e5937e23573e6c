"""HTTP field primitives (pure): header lookup, list splitting, Cache-Control, dates.

Everything here takes header lines as a mapping or as (name, value) pairs (aiohttp's
`CIMultiDict`, a plain dict, or the list the store keeps) and never raises on hostile
input: an unparsable value reads as absent (`None`), which the callers in
`rfc9111`/`conditional` turn into the conservative choice.
"""

from __future__ import annotations

import calendar
import email.utils
import re
import time
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


def field_lines(headers: Headers, name: str) -> list[str]:
    """Every line of one field, values stripped, in order (a singleton field sent twice shows
    as two; dates cannot be told apart by splitting on commas)."""
    name = name.lower()
    return [v.strip() for k, v in pairs(headers) if k.lower() == name]


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


def directive_args(headers: Headers, name: str) -> list[str]:
    """Every argument of one Cache-Control directive, in order, over all field lines ("" for a
    directive without one). `directives()` keeps the first; this tells whether it was repeated
    (RFC 9111 4.2.1: a repeated max-age may be read as its first value or as stale)."""
    name = name.lower()
    out: list[str] = []
    for part in split_list(field(headers, "cache-control")):
        key, _, arg = part.partition("=")
        if key.strip().lower() == name:
            out.append(unquote(arg))
    return out


def delta_seconds(value: str | None) -> int | None:
    """An RFC 9111 1.2.2 delta-seconds value; None when absent or not a non-negative integer.

    Values too large to represent read as 2^31 (1.2.2), however many digits they have (never
    Python's int-from-string digit limit)."""
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        return None
    digits = value.lstrip("0")
    if len(digits) > 10:
        return DELTA_MAX
    return min(int(digits or "0"), DELTA_MAX)


def field_names(value: str) -> list[str]:
    """A list of field names (Vary, Connection, qualified no-cache/private), lowercased."""
    return [n.strip().lower() for n in split_list(value)]


_DAY_NAMES = frozenset(
    {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
    | {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
)
_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_HMS = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
_IMF_FIXDATE = re.compile(rf"([a-z]+), +([0-9]{{1,2}}) +([a-z]{{3}}) +([0-9]{{4}}) +{_HMS} +gmt", re.I | re.A)
_RFC850_DATE = re.compile(rf"([a-z]+), +([0-9]{{1,2}})-([a-z]{{3}})-([0-9]{{2}}) +{_HMS} +gmt", re.I | re.A)
_ASCTIME_DATE = re.compile(rf"([a-z]+) +([a-z]{{3}}) +([0-9]{{1,2}}) +{_HMS} +([0-9]{{4}})", re.I | re.A)


def _two_digit_year(yy: int, now: float | None) -> int:
    """RFC 9110 5.6.7: a two-digit year more than 50 years in the future is the most recent
    past year with those digits. Without `now`, the 1970-2069 window."""
    if now is None:
        return 2000 + yy if yy < 70 else 1900 + yy
    try:
        this_year = time.gmtime(now).tm_year  # a conversion of the caller's time, not a clock read
    except (ValueError, OverflowError, OSError):
        return 2000 + yy if yy < 70 else 1900 + yy
    year = this_year - this_year % 100 + yy
    if year > this_year + 50:
        year -= 100
    elif year <= this_year - 50:
        year += 100
    return year


def parse_http_date(value: str | None, now: float | None = None) -> float | None:
    """An HTTP-date (RFC 9110 5.6.7: IMF-fixdate, RFC 850 or asctime) as POSIX seconds; None
    when invalid.

    Strict where the RFCs ask it: only `GMT` (RFC 9111 4.2: a date with another zone is
    invalid for calculating expiration; asctime has no zone and is GMT), the local time zone
    never counts (4.2 MUST NOT), names match case-insensitively (4.2 SHOULD), a list of dates
    is invalid (RFC 9110 13.1.3/13.1.4). Lenient where it is harmless: a one-digit day,
    runs of spaces, any day name, a leap second (:60). A two-digit year is read relative to
    `now` when given (RFC 9110 5.6.7)."""
    if not value:
        return None
    text = value.strip()
    try:
        if m := _IMF_FIXDATE.fullmatch(text):
            day_name, day, month, year, hh, mi, ss = m.groups()
            y = int(year)
        elif m := _RFC850_DATE.fullmatch(text):
            day_name, day, month, year, hh, mi, ss = m.groups()
            y = _two_digit_year(int(year), now)
        elif m := _ASCTIME_DATE.fullmatch(text):
            day_name, month, day, hh, mi, ss, year = m.groups()
            y = int(year)
        else:
            return None
        mon = _MONTHS.get(month.lower())
        d, h, minute, sec = int(day), int(hh), int(mi), int(ss)
        if day_name.lower() not in _DAY_NAMES or mon is None or y < 1 or h > 23 or minute > 59 or sec > 60:
            return None
        if not 1 <= d <= calendar.monthrange(y, mon)[1]:
            return None
        return float(calendar.timegm((y, mon, d, h, minute, sec, 0, 0, 0)))
    except (ValueError, OverflowError):
        return None


def format_http_date(ts: float) -> str:
    """POSIX seconds as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`)."""
    return email.utils.formatdate(ts, usegmt=True)


# RFC 9110 8.8.3: entity-tag = [ weak ] opaque-tag; opaque-tag = DQUOTE *etagc DQUOTE
ETAG_RE = re.compile(r'^(W/)?"[^"]*"$')


def entity_tag(headers: Headers) -> str | None:
    """The ETag (RFC 9110 8.8.3) of a response when it is one valid entity-tag, else None."""
    value = first(headers, "etag")
    return value if value is not None and ETAG_RE.match(value) else None


def has_validator(headers: Headers) -> bool:
    """Does a response carry a validator a cache can revalidate with (RFC 9110 8.8): a valid
    ETag or a valid Last-Modified."""
    return entity_tag(headers) is not None or parse_http_date(first(headers, "last-modified")) is not None


def end_to_end(headers: Headers) -> list[tuple[str, str]]:
    """The headers a proxy passes on: everything but hop-by-hop ones (RFC 9110 7.6.1)."""
    lines = list(pairs(headers))
    named = {h.strip().lower() for h in field(lines, "connection").split(",")}
    return [(k, v) for k, v in lines if k.lower() not in HOP_BY_HOP and k.lower() not in named]


def without(headers: Headers, names: Iterable[str]) -> list[tuple[str, str]]:
    """The header lines except those whose (case-insensitive) name is in `names`."""
    drop = {n.lower() for n in names}
    return [(k, v) for k, v in pairs(headers) if k.lower() not in drop]
