"""Validators (pure): revalidation with the origin, client conditionals, single Range.

- To the origin (RFC 9111 4.3.1): `revalidation_headers()` builds If-None-Match from the
  stored ETag and If-Modified-Since from Last-Modified; `validation_outcome()` sorts the
  answer; a 304 goes to `freshen()` (RFC 9111 3.2, 4.3.4), which returns the updated Entry.
- From the client (RFC 9110 13.2.2, evaluated in that order): If-Match, If-Unmodified-Since,
  If-None-Match (weak comparison, `*`), If-Modified-Since (GET/HEAD, ignored with
  If-None-Match) -> `precondition()` says 304, 412 or go on; `not_modified_headers()`
  are the lines a 304 carries (RFC 9110 15.4.5).
- Range (RFC 9110 14): `byte_range()` plans 200, 206 (one `bytes=` range, Content-Range)
  or 416 against the stored complete body; several ranges, other units, bad syntax or a
  failed If-Range all serve the whole body (200).

Like `rfc9111`, nothing here raises on header content.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import NamedTuple

from .fields import (
    HOP_BY_HOP,
    Headers,
    directives,
    field,
    field_names,
    first,
    format_http_date,
    pairs,
    parse_http_date,
    split_list,
)
from .rfc9111 import DEFAULT_POLICY, Entry, Policy, make_entry

# --- entity tags (RFC 9110 8.8.3) -------------------------------------------------------------

_ETAG = re.compile(r'^(W/)?"[^"]*"$')


def parse_etags(value: str) -> list[str]:
    """The valid entity-tags of a list (`W/"a", "b"`); malformed members are skipped."""
    return [t for t in split_list(value) if _ETAG.match(t)]


def strong_match(a: str | None, b: str | None) -> bool:
    """Strong comparison: both strong and identical."""
    return a is not None and b is not None and not a.startswith("W/") and a == b


def weak_match(a: str | None, b: str | None) -> bool:
    """Weak comparison: opaque tags identical, W/ ignored."""
    return a is not None and b is not None and a.removeprefix("W/") == b.removeprefix("W/")


def _etag(headers: Headers) -> str | None:
    value = first(headers, "etag")
    return value if value is not None and _ETAG.match(value) else None


# --- revalidation with the origin -------------------------------------------------------------


def revalidation_headers(stored: Headers) -> list[tuple[str, str]]:
    """Conditional request lines for revalidating a stored response (RFC 9111 4.3.1).

    Empty when it has no validator: then the "revalidation" is a plain fetch.
    """
    out: list[tuple[str, str]] = []
    etag = _etag(stored)
    if etag is not None:
        out.append(("If-None-Match", etag))
    modified = first(stored, "last-modified")
    if modified is not None and parse_http_date(modified) is not None:
        out.append(("If-Modified-Since", modified))
    return out


class Validation(StrEnum):
    FRESHEN = "freshen"  # 304: update the stored headers and lifetime, keep the body
    REPLACE = "replace"  # a full answer: store it (if storable) instead
    ERROR = "error"  # 5xx: rfc9111.stale_on_error() decides


def validation_outcome(status: int) -> Validation:
    """What a revalidation's answer means for the stored entry (RFC 9111 4.3.3)."""
    if status == 304:
        return Validation.FRESHEN
    if status in (500, 502, 503, 504):
        return Validation.ERROR
    return Validation.REPLACE


# Never taken from a 304: framing and the fields the stored body depends on (RFC 9111 3.2).
KEEP_STORED = HOP_BY_HOP | {"content-length", "content-range", "content-encoding", "age", "proxy-authentication-info"}


def merge_headers(stored: Headers, update: Headers) -> list[tuple[str, str]]:
    """Stored lines updated with a 304's (RFC 9111 3.2): each field the 304 carries replaces
    the stored one in place, new fields are appended, except framing/body-bound fields."""
    cc = directives(update)
    skip = set(KEEP_STORED)
    skip.update(n.strip().lower() for n in field(update, "connection").split(",") if n.strip())
    for name in ("private", "no-cache"):
        if cc.get(name):
            skip.update(field_names(cc[name]))
    new: dict[str, list[tuple[str, str]]] = {}
    for k, v in pairs(update):
        if k.lower() not in skip:
            new.setdefault(k.lower(), []).append((k, v))
    out: list[tuple[str, str]] = []
    done: set[str] = set()
    for k, v in pairs(stored):
        name = k.lower()
        if name not in new:
            out.append((k, v))
        elif name not in done:
            out.extend(new[name])
            done.add(name)
    for name, lines in new.items():
        if name not in done:
            out.extend(lines)
    return out


def freshen(
    entry: Entry,
    update: Headers,
    request_time: float,
    response_time: float,
    default_ttl: float,
    override_ttl: float | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> Entry:
    """The stored entry after a 304 (or a HEAD, RFC 9111 4.3.5): headers merged, age and
    lifetime recomputed from the new answer's Date/Age and times. The body is unchanged."""
    lines = list(pairs(update))
    if first(lines, "date") is None:
        lines.append(("Date", format_http_date(response_time)))
    merged = merge_headers(entry.headers, lines)
    return make_entry(entry.status, merged, request_time, response_time, default_ttl, override_ttl, policy, lines)


# --- client conditionals (RFC 9110 13) --------------------------------------------------------


class Precondition(NamedTuple):
    """`status` 304 or 412 to answer with, or None to serve the stored response; and why."""

    status: int | None
    reason: str


def _last_modified(stored: Headers, response_time: float) -> float:
    """The date If-Modified-Since compares with (RFC 9111 4.3.2): Last-Modified, else Date,
    else the time the response was received."""
    for name in ("last-modified", "date"):
        got = parse_http_date(first(stored, name))
        if got is not None:
            return got
    return response_time


def precondition(method: str, req_headers: Headers, status: int, stored: Headers, response_time: float) -> Precondition:
    """Evaluate the client's conditionals against a stored response (RFC 9110 13.2.2).

    Preconditions are ignored when the stored response is not a 2xx (RFC 9110 13.2.1).
    """
    method = method.upper()
    if not 200 <= status < 300:
        return Precondition(None, "not-2xx")
    etag = _etag(stored)
    if_match = field(req_headers, "if-match")
    if if_match.strip():
        if if_match.strip() != "*" and not any(strong_match(t, etag) for t in parse_etags(if_match)):
            return Precondition(412, "if-match")
    else:
        since = parse_http_date(first(req_headers, "if-unmodified-since"))
        modified = parse_http_date(first(stored, "last-modified"))
        if since is not None and modified is not None and modified > since:
            return Precondition(412, "if-unmodified-since")
    if_none = field(req_headers, "if-none-match")
    if if_none.strip():
        if if_none.strip() == "*" or any(weak_match(t, etag) for t in parse_etags(if_none)):
            return Precondition(304 if method in ("GET", "HEAD") else 412, "if-none-match")
        return Precondition(None, "etag-changed")
    if method in ("GET", "HEAD"):
        since = parse_http_date(first(req_headers, "if-modified-since"))
        if since is not None and _last_modified(stored, response_time) <= since:
            return Precondition(304, "if-modified-since")
    return Precondition(None, "none")


NOT_MODIFIED_FIELDS = ("cache-control", "content-location", "date", "etag", "expires", "vary")


def not_modified_headers(stored: Headers) -> list[tuple[str, str]]:
    """The stored lines a 304 carries (RFC 9110 15.4.5): Cache-Control, Content-Location,
    Date, ETag, Expires, Vary; Last-Modified only when there is no ETag. Add Age etc."""
    names = set(NOT_MODIFIED_FIELDS)
    if _etag(stored) is None:
        names.add("last-modified")
    return [(k, v) for k, v in pairs(stored) if k.lower() in names]


# --- Range (RFC 9110 14) ----------------------------------------------------------------------


class RangePlan(NamedTuple):
    """Answer `status` 200 / 206 / 416 with body[start:stop] and `headers` (Content-Range)."""

    status: int
    start: int
    stop: int
    headers: list[tuple[str, str]]
    reason: str


_SPEC = re.compile(r"^([0-9]*)-([0-9]*)$")


def _if_range_holds(value: str, stored: Headers) -> bool:
    value = value.strip()
    if value.startswith('"') or value.startswith("W/"):
        return strong_match(value, _etag(stored))
    at = parse_http_date(value)
    modified = parse_http_date(first(stored, "last-modified"))
    date = parse_http_date(first(stored, "date"))
    # a date validates only as a strong validator: Last-Modified a second or more before Date
    return at is not None and modified is not None and date is not None and at == modified and date - modified >= 1


def byte_range(method: str, req_headers: Headers, status: int, stored: Headers, length: int) -> RangePlan:
    """Plan the answer to a request that may carry `Range` against a complete stored body."""
    whole = RangePlan(200, 0, length, [], "")
    raw = first(req_headers, "range")
    if raw is None or method.upper() != "GET" or status != 200:
        return whole._replace(reason="no-range")
    unit, eq, spec = raw.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return whole._replace(reason="unit")
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if len(items) != 1:
        return whole._replace(reason="multiple" if items else "invalid")
    m = _SPEC.match(items[0])
    if m is None or not (m[1] or m[2]):
        return whole._replace(reason="invalid")
    if_range = first(req_headers, "if-range")
    if if_range is not None and not _if_range_holds(if_range, stored):
        return whole._replace(reason="if-range")
    if m[1]:
        start = int(m[1])
        last = int(m[2]) if m[2] else length - 1
        if m[2] and last < start:
            return whole._replace(reason="invalid")
        if start >= length:
            return RangePlan(416, 0, 0, [("Content-Range", f"bytes */{length}")], "unsatisfiable")
        stop = min(last, length - 1) + 1
    else:
        suffix = int(m[2])
        if suffix == 0 or length == 0:
            return RangePlan(416, 0, 0, [("Content-Range", f"bytes */{length}")], "unsatisfiable")
        start, stop = max(0, length - suffix), length
    return RangePlan(206, start, stop, [("Content-Range", f"bytes {start}-{stop - 1}/{length}")], "range")
