"""Validators (pure): revalidation with the origin, client conditionals, single Range.

- To the origin (RFC 9111 4.3.1): `revalidation_headers()` builds If-None-Match from the
  stored ETag and If-Modified-Since from Last-Modified; `validation_outcome()` sorts the
  answer. A 304: `select_for_update()` picks the stored responses it may update (RFC 9111
  4.3.4; none -> the 304 must not be used), `freshen()` updates each (3.2) and returns the
  new Entry; `merge_headers()` is that update of the fields.
- From the client (RFC 9110 13.2.2, evaluated in that order): If-Match, If-Unmodified-Since,
  If-None-Match (weak comparison, `*`), If-Modified-Since (GET/HEAD, ignored with
  If-None-Match) -> `precondition()` says 304, 412 or go on; `not_modified_headers()`
  are the lines a 304 carries (RFC 9110 15.4.5). RFC 9111 4.3.2: If-Match and
  If-Unmodified-Since are for the origin, not a cache: `origin_preconditions()` names
  them so the shell can forward such requests.
- Range (RFC 9110 14): `byte_range()` plans 200, 206 (one `bytes=` range, Content-Range)
  or 416 against the stored complete body; several ranges, other units, bad syntax or a
  failed If-Range all serve the whole body (200).

Like `rfc9111`, nothing here raises on header content.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum
from typing import NamedTuple, TypeVar

from .fields import (
    ETAG_RE,
    HOP_BY_HOP,
    Headers,
    directives,
    entity_tag,
    field,
    field_lines,
    field_names,
    first,
    format_http_date,
    has_validator,
    pairs,
    parse_http_date,
    split_list,
)
from .rfc9111 import DEFAULT_POLICY, Entry, Policy, generated_at, make_entry

T = TypeVar("T")

# --- entity tags (RFC 9110 8.8.3) -------------------------------------------------------------

_ETAG = ETAG_RE


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
    return entity_tag(headers)


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


# Never taken from a 304 (RFC 9111 3.2 exceptions):
# - fields excepted from storage (3.1): hop-by-hop ones (and those Connection names, see
#   merge_headers), Proxy-Authenticate / Proxy-Authentication-Info / Proxy-Authorization;
#   Age is not stored at all (the 304's Age counts in the new initial age instead);
# - Content-Length, named by 3.2 itself;
# - fields the stored response depends upon: Content-Encoding (the body we keep is encoded
#   that way; the edge may have encoded it itself, the 3.2 example);
# - fields "automatically processed": Content-Range (we keep complete bodies only).
# Content-Type IS updated: we keep the bytes as received and parse nothing, so nothing we
# store depends on it (3.2 allows omitting it only to a cache that does).
KEEP_STORED = HOP_BY_HOP | {"content-length", "content-range", "content-encoding", "age", "proxy-authentication-info"}
# A qualified no-cache naming these never removes them: caching itself reads them.
_NEVER_REMOVED = KEEP_STORED | {"cache-control", "date"}


def _vary_union(stored: list[tuple[str, str]], update_lines: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One Vary line naming every field the stored Vary named, then the 304's new ones."""
    seen: set[str] = set()
    names: list[str] = []
    for value in (field(stored, "vary"), ", ".join(v for _, v in update_lines)):
        for name in split_list(value):
            if name.lower() not in seen:
                seen.add(name.lower())
                names.append(name)
    return [(update_lines[0][0], ", ".join(names))] if names else update_lines


def merge_headers(stored: Headers, update: Headers) -> list[tuple[str, str]]:
    """Stored lines updated with a 304's (RFC 9111 3.2): each field the 304 carries replaces
    the stored one in place (all its lines), new fields are appended, except `KEEP_STORED`,
    the fields the 304's Connection names and those its qualified `private` names (3.1).

    Two refinements, both for the stored response's integrity:
    - Vary is never narrowed: the result names the stored Vary's fields plus the 304's.
      The stored response sits under a secondary key computed from its Vary (4.1), a field
      it depends upon (3.2); a wider Vary only makes it match fewer requests. (It also keeps
      the `Accept-Encoding` the edge added when it compressed the body.)
    - Fields a qualified `no-cache` names (in the stored or the 304's Cache-Control) are
      updated from the 304 or, if it does not carry them, removed (5.2.2.4: reuse after a
      successful revalidation "updating or removing those fields").
    """
    stored_lines = list(pairs(stored))
    update_lines = list(pairs(update))
    cc = directives(update_lines)
    skip = set(KEEP_STORED)
    skip.update(n.strip().lower() for n in field(update_lines, "connection").split(",") if n.strip())
    if cc.get("private"):
        skip.update(field_names(cc["private"]))
    new: dict[str, list[tuple[str, str]]] = {}
    for k, v in update_lines:
        if k.lower() not in skip:
            new.setdefault(k.lower(), []).append((k, v))
    if "vary" in new:
        new["vary"] = _vary_union(stored_lines, new["vary"])
    revalidated: set[str] = set()
    for directive in (directives(stored_lines), cc):
        if directive.get("no-cache"):
            revalidated.update(field_names(directive["no-cache"]))
    revalidated -= _NEVER_REMOVED
    out: list[tuple[str, str]] = []
    done: set[str] = set()
    for k, v in stored_lines:
        name = k.lower()
        if name in new:
            if name not in done:
                out.extend(new[name])
                done.add(name)
        elif name not in revalidated:
            out.append((k, v))
    for name, lines in new.items():
        if name not in done:
            out.extend(lines)
    return out


def _update_validators(headers: list[tuple[str, str]]) -> tuple[str | None, float | None, bool]:
    """The 304's (ETag, Last-Modified date, usable). Not usable when a validator is there but
    cannot be compared (malformed, or several different lines of this singleton field)."""
    etag: str | None = None
    modified: float | None = None
    etags = field_lines(headers, "etag")
    if etags:
        if len(set(etags)) != 1 or not ETAG_RE.match(etags[0]):
            return None, None, False
        etag = etags[0]
    dates = field_lines(headers, "last-modified")
    if dates:
        parsed = {parse_http_date(v) for v in dates}
        if len(parsed) != 1 or None in parsed:
            return None, None, False
        modified = parsed.pop()
    return etag, modified, True


def select_for_update(update: Headers, stored: Sequence[tuple[Entry, T]]) -> list[T]:
    """Which stored responses a 304 updates (RFC 9111 4.3.4), given the initial set as
    (entry, handle) pairs (`rfc9111.update_candidates()`: the ones the request could have
    chosen). The first rule that applies:

    1. The 304 has a strong ETag: every stored response with that same strong ETag; none ->
       nothing (MUST NOT update anything). A stored weak ETag never matches a strong one.
    2. Else it has weak validators (a weak ETag and/or a Last-Modified; a Last-Modified is
       taken as weak, RFC 9110 8.8.2.2): the most recent (Date, else the time received) of
       the stored responses that share one of them (ETag by weak comparison, Last-Modified
       by equal date) and contradict none.
    3. Else (no validator): the only stored response, if it lacks validators too.

    A validator the 304 carries but that cannot be compared (malformed, or different lines)
    selects nothing. Nothing selected: the cache MUST NOT use the 304 to update anything;
    the shell then asks again without conditionals.
    """
    lines = list(pairs(update))
    etag, modified, usable = _update_validators(lines)
    if not usable:
        return []
    if etag is not None and not etag.startswith("W/"):
        return [handle for entry, handle in stored if strong_match(etag, entity_tag(entry.headers))]
    if etag is not None or modified is not None:
        best: tuple[tuple[float, float], T] | None = None
        for entry, handle in stored:
            stored_etag = entity_tag(entry.headers)
            stored_modified = parse_http_date(first(entry.headers, "last-modified"))
            shared = False
            if etag is not None and stored_etag is not None:
                if not weak_match(etag, stored_etag):
                    continue
                shared = True
            if modified is not None and stored_modified is not None:
                if modified != stored_modified:
                    continue
                shared = True
            if shared:
                when = (generated_at(entry), entry.response_time)
                if best is None or when > best[0]:
                    best = (when, handle)
        return [] if best is None else [best[1]]
    if len(stored) == 1 and not has_validator(stored[0][0].headers):
        return [stored[0][1]]
    return []


# Fields describing the origin's bytes, not a re-encoded copy (RFC 9530, RFC 3230, RFC 1864).
_DIGESTS = frozenset({"content-md5", "digest", "content-digest", "repr-digest"})


def as_transformed(update: Headers) -> list[tuple[str, str]]:
    """A 304's fields as they apply to a stored response this cache transformed itself
    (re-encoded, RFC 9110 7.7), the way `encoding.transformed_headers()` rewrote the 200:
    a strong ETag made weak (the stored bytes are not the origin's), and no digests of the
    origin's bytes. Pass the result, instead of the 304's own fields, to
    `select_for_update()` and `freshen()` for such a stored response only: then a 304
    carrying the origin's strong `"x"` finds the stored `W/"x"` by the weak rule instead of
    selecting nothing. A malformed ETag is kept as it is (it still selects nothing).
    """
    out: list[tuple[str, str]] = []
    for name, value in pairs(update):
        low = name.lower()
        if low in _DIGESTS or low in ("content-encoding", "content-length"):
            continue
        if low == "etag":
            tag = value.strip()
            if ETAG_RE.match(tag) and not tag.startswith("W/"):
                value = "W/" + tag
        out.append((name, value))
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
    """The stored entry after a 304 that `select_for_update()` selected it for (or a HEAD,
    RFC 9111 4.3.5): headers merged (`merge_headers()`, 3.2), age and lifetime recomputed
    from the new answer's Date/Age and times (a 304 without Date gets the received time,
    RFC 9110 6.6.1). The body is unchanged. If the merged fields now forbid storing
    (`no-store`, unqualified `private`...), `rfc9111.storable()` on the result says so: serve
    it this once, do not keep it."""
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


def _request_date(req_headers: Headers, name: str) -> float | None:
    """An If-Modified-Since / If-Unmodified-Since date; None (ignored) unless the field is one
    valid HTTP-date (RFC 9110 13.1.3, 13.1.4: a list of dates is invalid)."""
    lines = field_lines(req_headers, name)
    return parse_http_date(lines[0]) if len(lines) == 1 else None


ORIGIN_PRECONDITIONS = ("if-match", "if-unmodified-since")


def origin_preconditions(req_headers: Headers) -> tuple[str, ...]:
    """The preconditions in a request that a cache must not evaluate (RFC 9111 4.3.2: If-Match
    and If-Unmodified-Since "are not applicable to a cache"; only the origin knows the
    current representation). Non-empty: forward the request (with them) instead of
    answering from the store; `precondition()` still evaluates them for a shell that does
    not. Empty lines do not count."""
    return tuple(name for name in ORIGIN_PRECONDITIONS if field(req_headers, name).strip())


def precondition(method: str, req_headers: Headers, status: int, stored: Headers, response_time: float) -> Precondition:
    """Evaluate the client's conditionals against a stored response (RFC 9110 13.2.2).

    Preconditions are ignored when the stored response is not a 2xx (RFC 9110 13.2.1).
    See `origin_preconditions()` for the two a cache should leave to the origin.
    """
    method = method.upper()
    req_headers = list(pairs(req_headers))
    if not 200 <= status < 300:
        return Precondition(None, "not-2xx")
    etag = _etag(stored)
    if_match = field(req_headers, "if-match")
    if if_match.strip():
        if if_match.strip() != "*" and not any(strong_match(t, etag) for t in parse_etags(if_match)):
            return Precondition(412, "if-match")
    else:
        since = _request_date(req_headers, "if-unmodified-since")
        modified = parse_http_date(first(stored, "last-modified"))
        if since is not None and modified is not None and modified > since:
            return Precondition(412, "if-unmodified-since")
    if_none = field(req_headers, "if-none-match")
    if if_none.strip():
        if if_none.strip() == "*" or any(weak_match(t, etag) for t in parse_etags(if_none)):
            return Precondition(304 if method in ("GET", "HEAD") else 412, "if-none-match")
        return Precondition(None, "etag-changed")
    if method in ("GET", "HEAD"):
        since = _request_date(req_headers, "if-modified-since")
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
_HUGE = 1 << 63


def _position(digits: str) -> int:
    """A byte position; anything past 2^63 reads as 2^63 (never int()'s digit limit)."""
    digits = digits.lstrip("0")
    return _HUGE if len(digits) > 18 else int(digits or "0")


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
        start = _position(m[1])
        last = _position(m[2]) if m[2] else length - 1
        if m[2] and last < start:
            return whole._replace(reason="invalid")
        if start >= length:
            return RangePlan(416, 0, 0, [("Content-Range", f"bytes */{length}")], "unsatisfiable")
        stop = min(last, length - 1) + 1
    else:
        suffix = _position(m[2])
        if suffix == 0 or length == 0:
            return RangePlan(416, 0, 0, [("Content-Range", f"bytes */{length}")], "unsatisfiable")
        start, stop = max(0, length - suffix), length
    return RangePlan(206, start, stop, [("Content-Range", f"bytes {start}-{stop - 1}/{length}")], "range")
