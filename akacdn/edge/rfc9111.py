"""HTTP caching for a shared cache (pure, RFC 9111 + RFC 5861 + RFC 9211).

Theory of operation. The shell asks five questions, in this order, and only formats
the answers; nothing here reads a clock or touches a socket (`now`, `request_time` and
`response_time` are POSIX seconds the shell passes in):

1. A request arrives. Unsafe method?  -> forward it, then `invalidates()` names the
   stored paths to drop once the origin answered (RFC 9111 4.4).
2. Lookup by primary key (customer, path). Several variants? `select_variant()` picks
   the one whose `variant_key()` matches this request (Vary, RFC 9111 4.1); none ->
   miss with `fwd=vary-miss`.
3. A stored `Entry` was found: `reuse()` says HIT, STALE (client allowed it), SWR (serve
   stale now, revalidate in the background), REVALIDATE (ask the origin first, with
   `conditional.revalidation_headers()`), or ONLY_IF_CACHED (answer 504).
4. The origin answered: `store_decision()` says whether to keep it and why not (it is
   `storable()` plus "no freshness and no validator: useless to keep") and builds, with
   `make_entry()`, what the store keeps (freshness lifetime and initial age fixed at that
   point, RFC 9111 4.2). A 304 to a revalidation: `update_candidates()` (the Vary-matching
   stored responses) -> `conditional.select_for_update()` (RFC 9111 4.3.4) ->
   `conditional.freshen()` for each selected one (3.2); none selected -> the 304 is unusable.
   The origin failed (no answer, or 5xx): `stale_on_error()` says whether the stale
   entry may answer instead (RFC 5861 stale-if-error, the operator's bound).
5. Headers out: `age_header()`, `CacheStatus(...).value()`.

Error contract: these functions never raise on header content; an unparsable value
reads as absent or, for freshness, as already stale (RFC 9111 4.2.1).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import NamedTuple, TypeVar
from urllib.parse import urljoin, urlsplit

import msgspec

from .fields import (
    DELTA_MAX,
    Headers,
    delta_seconds,
    directive_args,
    directives,
    end_to_end,
    field,
    field_lines,
    field_names,
    first,
    format_http_date,
    has_field,
    has_validator,
    pairs,
    parse_http_date,
    split_list,
)

# RFC 9110 15.1 "heuristically cacheable" (RFC 9111 4.2.2; "cacheable by default" before).
# 206 is one, but the store keeps complete bodies only and serves ranges from them
# (conditional.byte_range): `storable()` refuses it ("partial", RFC 9111 3.3 allows that).
HEURISTICALLY_CACHEABLE = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})
CACHEABLE_BY_DEFAULT = HEURISTICALLY_CACHEABLE  # the RFC 7231 name
# Statuses whose caching rules we implement, for `must-understand` (RFC 9111 5.2.2.3); not
# 206 (partial content is never stored here).
UNDERSTOOD = (HEURISTICALLY_CACHEABLE - {206}) | {302, 303, 307, 400, 403, 451, 500, 502, 503, 504}
# Answers to the request's own preconditions / Range, which the cache key does not hold:
# stored, they would answer requests without them (RFC 9111 3 never obliges storing).
CONDITIONAL_STATUSES = frozenset({412, 416})
STORABLE_METHODS = frozenset({"GET", "HEAD"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Never kept with a stored response: we compute Age, the shell re-frames the body.
NOT_STORED = frozenset({"age", "proxy-authentication-info"})


class Verdict(NamedTuple):
    """May a response be stored: `ok`, and a short reason (Cache-Status `detail`, metrics label)."""

    ok: bool
    reason: str


class Lifetime(NamedTuple):
    """A freshness lifetime in seconds and where it came from."""

    seconds: float
    source: str  # override | s-maxage | max-age | expires | heuristic | default | none


class Policy(msgspec.Struct, frozen=True):
    """The operator's knobs (per customer or global).

    stale_if_error: seconds past expiry a stale entry may answer when the origin fails,
        unless a directive forbids it (RFC 9111 4.2.4); the response's and the request's
        `stale-if-error` can lengthen it.
    honor_request_no_cache: a client's `no-cache` / `Pragma: no-cache` forces revalidation
        (RFC 9111 5.2.1.4). False protects origins from reload storms, as many CDNs do.
    heuristic_fraction / heuristic_max: heuristic freshness (RFC 9111 4.2.2).
    """

    stale_if_error: float = 0.0
    honor_request_no_cache: bool = True
    heuristic_fraction: float = 0.1
    heuristic_max: float = 86400.0


DEFAULT_POLICY = Policy()


class Entry(msgspec.Struct, frozen=True):
    """What the store keeps about a response besides its body.

    headers: the stored lines (end-to-end only, no Age, a `Date` always present).
    initial_age: `corrected_initial_age` of RFC 9111 4.2.3, fixed when stored.
    lifetime: freshness lifetime in seconds (`source` says which rule gave it).
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    request_time: float
    response_time: float
    initial_age: float
    lifetime: float
    source: str


# --- storing (RFC 9111 3) ---------------------------------------------------------------------


def storable(method: str, req_headers: Headers, status: int, resp_headers: Headers) -> Verdict:
    """Whether a shared cache may store this response to this request (RFC 9111 3).

    Reasons when not: method, status, partial, not-modified, conditional-status,
    request-no-store, no-store, must-understand, private, authorization, vary-star. A HEAD
    response carries no body: keep it only to answer HEADs or to freshen a stored GET
    (RFC 9111 4.3.5). `store_decision()` adds the "is it worth keeping" rule.
    """
    method = method.upper()
    req_headers = list(pairs(req_headers))
    resp_headers = list(pairs(resp_headers))
    if method not in STORABLE_METHODS:
        return Verdict(False, "method")
    if not 200 <= status <= 599:
        return Verdict(False, "status")
    if status == 206:
        return Verdict(False, "partial")
    if status == 304:
        return Verdict(False, "not-modified")
    if status in CONDITIONAL_STATUSES:
        return Verdict(False, "conditional-status")
    req = directives(req_headers)
    cc = directives(resp_headers)
    if "no-store" in req:
        return Verdict(False, "request-no-store")
    if "must-understand" in cc:
        if status not in UNDERSTOOD:
            return Verdict(False, "must-understand")
    elif "no-store" in cc:
        return Verdict(False, "no-store")
    if "private" in cc and not cc["private"]:
        return Verdict(False, "private")  # qualified private="f": stored without f (make_entry)
    if has_field(req_headers, "authorization") and not {"public", "s-maxage", "must-revalidate"} & cc.keys():
        return Verdict(False, "authorization")
    if vary_fields(resp_headers) is None:
        return Verdict(False, "vary-star")  # storable, but could never be reused
    if {"public", "max-age", "s-maxage"} & cc.keys() or has_field(resp_headers, "expires"):
        return Verdict(True, "explicit")
    if status in HEURISTICALLY_CACHEABLE:
        return Verdict(True, "default-status")
    return Verdict(False, "status")


def stored_headers(headers: Headers, response_time: float) -> tuple[tuple[str, str], ...]:
    """The lines to keep (RFC 9111 3.1): end-to-end only (Connection and the fields it names
    go), no Proxy-Authenticate / Proxy-Authentication-Info / Proxy-Authorization, no Age (we
    compute it), no fields a qualified `private` names (5.2.2.7; a qualified `no-cache`'s
    fields are kept: every reuse revalidates, see `reuse()`), and a valid Date: added when
    missing (RFC 9110 6.6.1 MUST), the received time replacing an invalid one (6.6.1 MAY)."""
    lines = list(pairs(headers))
    cc = directives(lines)
    drop = set(NOT_STORED)
    if cc.get("private"):
        drop.update(field_names(cc["private"]))
    kept = [(k, v) for k, v in end_to_end(lines) if k.lower() not in drop]
    if parse_http_date(first(kept, "date"), response_time) is None:
        kept = [(k, v) for k, v in kept if k.lower() != "date"]
        kept.append(("Date", format_http_date(response_time)))
    return tuple(kept)


def make_entry(
    status: int,
    headers: Headers,
    request_time: float,
    response_time: float,
    default_ttl: float,
    override_ttl: float | None = None,
    policy: Policy = DEFAULT_POLICY,
    aged_by: Headers | None = None,
) -> Entry:
    """The entry to store for a response `storable()` accepted (or a freshened one: then
    `headers` are the merged ones and `aged_by` the new answer's, whose Date/Age count)."""
    lines = list(pairs(headers))
    life = freshness_lifetime(status, lines, response_time, default_ttl, override_ttl, policy)
    return Entry(
        status=status,
        headers=stored_headers(lines, response_time),
        request_time=request_time,
        response_time=response_time,
        initial_age=initial_age(lines if aged_by is None else aged_by, request_time, response_time),
        lifetime=life.seconds,
        source=life.source,
    )


def store_decision(
    method: str,
    req_headers: Headers,
    status: int,
    resp_headers: Headers,
    request_time: float,
    response_time: float,
    default_ttl: float,
    override_ttl: float | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> tuple[Verdict, Entry]:
    """Store this origin response or not, and the Entry to store: the one decision of the
    foreground miss and of the background (stale-while-revalidate) refresh.

    `storable()` (RFC 9111 3), then: a response with no freshness (lifetime <= 0) and no
    validator could only ever be refetched, so it is not kept (RFC 9111 3 notes caches
    need not store such responses): reason `no-freshness-no-validator`. The Entry is built
    either way (`forwarded_status()` reads it only when stored).
    """
    req = list(pairs(req_headers))
    lines = list(pairs(resp_headers))
    verdict = storable(method, req, status, lines)
    entry = make_entry(status, lines, request_time, response_time, default_ttl, override_ttl, policy)
    if verdict.ok and entry.lifetime <= 0 and not has_validator(entry.headers):
        verdict = Verdict(False, "no-freshness-no-validator")
    return verdict, entry


# --- freshness and age (RFC 9111 4.2) ---------------------------------------------------------


def _date(headers: Headers, response_time: float) -> float:
    got = parse_http_date(first(headers, "date"), response_time)
    return response_time if got is None else got


def generated_at(entry: Entry) -> float:
    """When the origin generated (or last validated) a stored response: its Date, else the
    time it was received. "Most recent" in RFC 9111 4 / 4.1 / 4.3.4 compares these."""
    return _date(entry.headers, entry.response_time)


def _explicit_delta(headers: Headers, name: str) -> int | None:
    """A max-age / s-maxage value (RFC 9111 4.2.1): None when absent; 0 (stale) when invalid
    or repeated with different values (4.2.1 allows "first occurrence" or "stale": stale is
    the conservative reading; repeated equal values are just that value)."""
    args = directive_args(headers, name)
    if not args:
        return None
    values = {delta_seconds(a) for a in args}
    if len(values) != 1 or None in values:
        return 0
    got = values.pop()
    return got if got is not None else 0


def has_explicit_expiration(headers: Headers) -> bool:
    """s-maxage, max-age or Expires present, valid or not (RFC 9111 4.2.1: then no heuristic)."""
    cc = directives(headers)
    return "s-maxage" in cc or "max-age" in cc or has_field(headers, "expires")


def heuristic_allowed(status: int, headers: Headers) -> bool:
    """May a heuristic (or the customer's default TTL) give this response freshness (RFC 9111
    4.2.2): no explicit expiration, and a heuristically cacheable status or `public`."""
    if has_explicit_expiration(headers):
        return False
    return status in HEURISTICALLY_CACHEABLE or "public" in directives(headers)


def freshness_lifetime(
    status: int,
    headers: Headers,
    response_time: float,
    default_ttl: float,
    override_ttl: float | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> Lifetime:
    """Seconds a response stays fresh (RFC 9111 4.2.1), first rule that applies:

    override (ARL TTL) > s-maxage > max-age > Expires - Date > heuristic (a fraction of
    Date - Last-Modified, capped) > the customer's default TTL > 0. The last two only when
    `heuristic_allowed()` (4.2.2: no explicit expiration, and a heuristically cacheable
    status or `public`). An invalid max-age/s-maxage/Expires, or one repeated with
    different values, reads as 0 (stale), as RFC 9111 4.2.1 and 5.3 advise.
    """
    if override_ttl is not None:
        return Lifetime(max(0.0, float(override_ttl)), "override")
    lines = list(pairs(headers))
    for name in ("s-maxage", "max-age"):
        got = _explicit_delta(lines, name)
        if got is not None:
            return Lifetime(float(got), name)
    expires = field_lines(lines, "expires")
    if expires:
        ats = {parse_http_date(v, response_time) for v in expires}
        at = ats.pop() if len(ats) == 1 else None  # two different Expires: stale (4.2.1)
        return Lifetime(0.0 if at is None else max(0.0, at - _date(lines, response_time)), "expires")
    if not heuristic_allowed(status, lines):
        return Lifetime(0.0, "none")
    modified = parse_http_date(first(lines, "last-modified"), response_time)
    if modified is not None:
        span = max(0.0, _date(lines, response_time) - modified)
        return Lifetime(min(policy.heuristic_max, span * policy.heuristic_fraction), "heuristic")
    return Lifetime(max(0.0, float(default_ttl)), "default")


def age_value(headers: Headers) -> int:
    """The Age a response arrived with (RFC 9111 5.1), 0 when absent or invalid.

    A list (`Age: 7200, 10`, or two Age lines) counts by its first member; an invalid value
    (not a non-negative integer) is ignored; a huge one reads as 2^31 (1.2.2)."""
    members = split_list(field(headers, "age"))
    if not members:
        return 0
    return delta_seconds(members[0]) or 0


def initial_age(headers: Headers, request_time: float, response_time: float) -> float:
    """`corrected_initial_age` (RFC 9111 4.2.3): max(apparent_age, corrected_age_value),
    never negative."""
    lines = list(pairs(headers))
    date = parse_http_date(first(lines, "date"), response_time)
    apparent = 0.0 if date is None else max(0.0, response_time - date)
    corrected = age_value(lines) + max(0.0, response_time - request_time)
    return max(apparent, corrected)


def current_age(entry: Entry, now: float) -> float:
    """Seconds since the origin generated the response (RFC 9111 4.2.3); never negative,
    also when the clock steps back (resident time counts from 0)."""
    return entry.initial_age + max(0.0, now - entry.response_time)


def ttl(entry: Entry, now: float) -> float:
    """Remaining freshness in seconds; negative once stale."""
    return entry.lifetime - current_age(entry, now)


def is_fresh(entry: Entry, now: float) -> bool:
    return ttl(entry, now) > 0


def age_header(entry: Entry, now: float) -> str:
    """The `Age` field value (RFC 9111 5.1): whole seconds, capped at 2^31."""
    return str(min(int(current_age(entry, now)), DELTA_MAX))


# --- reuse (RFC 9111 4, 4.2.4, 5.2.1; RFC 5861) -------------------------------------------------


class Action(StrEnum):
    HIT = "hit"  # fresh: serve
    STALE = "stale"  # stale, but the client's max-stale allows it: serve
    SWR = "stale-while-revalidate"  # serve stale now, revalidate in the background
    REVALIDATE = "revalidate"  # ask the origin (conditional request) before answering
    ONLY_IF_CACHED = "only-if-cached"  # would need the origin; the client forbids it: 504
    FORWARD = "forward"  # method not served from cache


class Reuse(NamedTuple):
    """What to do with a stored entry for this request, why, and its age/ttl now."""

    action: Action
    reason: str
    age: float
    ttl: float


def request_directives(req_headers: Headers) -> dict[str, str]:
    """Request Cache-Control; `Pragma: no-cache` counts when there is no Cache-Control (RFC 9111 5.4)."""
    cc = directives(req_headers)
    if not has_field(req_headers, "cache-control") and "no-cache" in (
        p.lower() for p in split_list(field(req_headers, "pragma"))
    ):
        cc["no-cache"] = ""
    return cc


def stale_forbidden(resp_headers: Headers) -> str | None:
    """The directive that forbids serving this response stale (RFC 9111 4.2.4), or None.

    `s-maxage` implies proxy-revalidate (5.2.2.10), unless the origin also sent an RFC 5861
    directive: asking for stale-while-revalidate / stale-if-error says stale is welcome.
    That exception is a deliberate reading (5.2.3: extension directives act as modifiers of
    the base ones; `s-maxage=N, stale-while-revalidate=M` is what origins send to CDNs to
    get exactly that); an explicit must-revalidate / proxy-revalidate / no-cache still wins.
    """
    cc = directives(resp_headers)
    for name in ("no-cache", "must-revalidate", "proxy-revalidate"):
        if name in cc:
            return name
    if "s-maxage" in cc and not {"stale-while-revalidate", "stale-if-error"} & cc.keys():
        return "s-maxage"
    return None


def reuse(method: str, req_headers: Headers, entry: Entry, now: float, policy: Policy = DEFAULT_POLICY) -> Reuse:
    """May `entry` answer this request without the origin (RFC 9111 4), and if not, what then."""
    age = current_age(entry, now)
    left = entry.lifetime - age
    if method.upper() not in STORABLE_METHODS:
        return Reuse(Action.FORWARD, "method", age, left)
    req = request_directives(req_headers)
    cc = directives(entry.headers)

    def origin(reason: str) -> Reuse:
        action = Action.ONLY_IF_CACHED if "only-if-cached" in req else Action.REVALIDATE
        return Reuse(action, reason, age, left)

    if "no-cache" in cc:
        return origin("no-cache")  # qualified no-cache="f" is treated as unqualified
    if policy.honor_request_no_cache and "no-cache" in req:
        return origin("request-no-cache")
    max_age = delta_seconds(req.get("max-age"))
    if max_age is not None and age > max_age:
        return origin("request-max-age")
    if left > 0:
        min_fresh = delta_seconds(req.get("min-fresh"))
        if min_fresh is not None and left < min_fresh:
            return origin("request-min-fresh")
        return Reuse(Action.HIT, "fresh", age, left)
    stale = -left
    forbidden = stale_forbidden(entry.headers)
    if forbidden:
        return origin(forbidden)
    if "max-stale" in req:
        bound = delta_seconds(req["max-stale"])
        if req["max-stale"] == "" or (bound is not None and stale <= bound):
            return Reuse(Action.STALE, "max-stale", age, left)
    swr = delta_seconds(cc.get("stale-while-revalidate"))
    if swr is not None and stale <= swr:
        return Reuse(Action.SWR, "stale-while-revalidate", age, left)
    return origin("stale")


def stale_on_error(req_headers: Headers, entry: Entry, now: float, policy: Policy = DEFAULT_POLICY) -> Reuse | None:
    """The origin failed (unreachable, or 500/502/503/504): may the stored entry answer?

    Allowed within the longest of the response's and the request's `stale-if-error`
    (RFC 5861 4) and the operator's `policy.stale_if_error`, unless `stale_forbidden()`.
    Returns a Reuse (action STALE, reason "stale-if-error") or None (answer the error).
    """
    age = current_age(entry, now)
    left = entry.lifetime - age
    if stale_forbidden(entry.headers):
        return None
    bounds = [policy.stale_if_error]
    for cc in (directives(entry.headers), request_directives(req_headers)):
        got = delta_seconds(cc.get("stale-if-error"))
        if got is not None:
            bounds.append(got)
    if max(0.0, -left) <= max(bounds):
        return Reuse(Action.STALE, "stale-if-error", age, left)
    return None


def is_error_status(status: int) -> bool:
    """Origin answers that count as errors for stale-if-error (RFC 5861 4)."""
    return status in (500, 502, 503, 504)


# --- Vary (RFC 9111 4.1) ----------------------------------------------------------------------

VaryKey = tuple[tuple[str, str | None], ...]
T = TypeVar("T")


def vary_fields(resp_headers: Headers) -> tuple[str, ...] | None:
    """The request fields a response varies on (lowercased, sorted, unique); None for `Vary: *`."""
    names = field_names(field(resp_headers, "vary"))
    if "*" in names:
        return None
    return tuple(sorted(set(names)))


def _normalize(value: str) -> str:
    return ",".join(" ".join(item.split()) for item in split_list(value))


def secondary_key(fields: Iterable[str], req_headers: Headers) -> VaryKey:
    """The request's values of `fields`: lines combined, list items trimmed; an absent field
    is None, which matches only another absent field (not an empty one)."""
    return tuple(
        (name, _normalize(field(req_headers, name)) if has_field(req_headers, name) else None) for name in fields
    )


def variant_key(resp_headers: Headers, req_headers: Headers) -> VaryKey | None:
    """The secondary key to store a response under; None when it can never match (`Vary: *`)."""
    fields = vary_fields(resp_headers)
    return None if fields is None else secondary_key(fields, req_headers)


def vary_matches(resp_headers: Headers, stored_key: VaryKey | None, req_headers: Headers) -> bool:
    """Does a new request select the stored response stored under `stored_key`?"""
    fields = vary_fields(resp_headers)
    if fields is None or stored_key is None:
        return False
    return secondary_key(fields, req_headers) == stored_key


def select_variant(req_headers: Headers, variants: Sequence[tuple[VaryKey | None, Entry, T]]) -> T | None:
    """Among (stored key, entry, handle) variants, the most recent one (by Date, RFC 9111 4.1)
    this request selects."""
    req_headers = list(pairs(req_headers))
    best: tuple[float, T] | None = None
    for key, entry, handle in variants:
        if vary_matches(entry.headers, key, req_headers):
            when = generated_at(entry)
            if best is None or when > best[0]:
                best = (when, handle)
    return None if best is None else best[1]


def update_candidates(
    req_headers: Headers, variants: Sequence[tuple[VaryKey | None, Entry, T]]
) -> list[tuple[Entry, T]]:
    """The "initial set" of RFC 9111 4.3.4 for a 304 to this request: every stored variant
    (stored key, entry, handle) the request could have chosen, i.e. whose Vary it matches
    (4.1); freshness does not matter. Feed the result to `conditional.select_for_update()`."""
    req_headers = list(pairs(req_headers))
    return [(entry, handle) for key, entry, handle in variants if vary_matches(entry.headers, key, req_headers)]


# --- invalidation (RFC 9111 4.4) --------------------------------------------------------------


def _origin_of(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    return scheme, parts.hostname.lower().rstrip("."), port or (443 if scheme == "https" else 80)


def _path_qs(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def invalidates(method: str, status: int, request_uri: str, resp_headers: Headers) -> tuple[str, ...]:
    """Paths (path?query) whose stored responses an unsafe request invalidates.

    Only after a non-error (2xx/3xx) answer to an unsafe method: the effective request
    URI, and Location / Content-Location when they name the same origin (never another
    host: that would let one customer purge another). Drop every Vary variant of each.
    """
    if method.upper() in SAFE_METHODS or not 200 <= status < 400:
        return ()
    own = _origin_of(request_uri)
    if own is None:
        return ()
    out = [_path_qs(request_uri)]
    for name in ("location", "content-location"):
        value = first(resp_headers, name)
        if not value:
            continue
        try:
            target = urljoin(request_uri, value)
        except ValueError:
            continue
        if _origin_of(target) == own and _path_qs(target) not in out:
            out.append(_path_qs(target))
    return tuple(out)


# --- Cache-Status (RFC 9211) ------------------------------------------------------------------

_TOKEN = re.compile(r"^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*$")


def _sf_item(value: str) -> str:
    if _TOKEN.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class CacheStatus(msgspec.Struct, frozen=True):
    """One Cache-Status member (RFC 9211 2). `fwd`: bypass, method, uri-miss, vary-miss,
    miss, request, stale, partial. `ttl` may be negative (served stale)."""

    hit: bool = False
    fwd: str | None = None
    fwd_status: int | None = None
    ttl: float | None = None
    stored: bool = False
    collapsed: bool = False
    key: str | None = None
    detail: str | None = None

    def value(self, cache: str = "akacdn") -> str:
        """The field value, e.g. `akacdn; hit; ttl=42` or `akacdn; fwd=uri-miss; fwd-status=200; stored`."""
        out = [_sf_item(cache)]
        if self.hit:
            out.append("hit")
        if self.fwd:
            out.append(f"fwd={self.fwd}")
        if self.fwd_status is not None:
            out.append(f"fwd-status={self.fwd_status}")
        if self.ttl is not None:
            out.append(f"ttl={math.floor(self.ttl)}")
        if self.stored:
            out.append("stored")
        if self.collapsed:
            out.append("collapsed")
        if self.key is not None:
            out.append(f"key={_sf_item(self.key)}")
        if self.detail:
            out.append(f"detail={_sf_item(self.detail)}")
        return "; ".join(out)


def served_status(r: Reuse, fwd_status: int | None = None) -> CacheStatus:
    """Cache-Status for an answer from the store: HIT, STALE, SWR are hits; a stale-if-error
    answer was forwarded first (`fwd=stale`, `fwd_status` the origin's 5xx or None if unreachable)."""
    if r.reason == "stale-if-error":
        return CacheStatus(fwd="stale", fwd_status=fwd_status, ttl=r.ttl, detail=r.reason)
    return CacheStatus(hit=True, ttl=r.ttl, detail=None if r.action == Action.HIT else r.reason)


def forwarded_status(
    fwd: str,
    fwd_status: int | None,
    verdict: Verdict | None = None,
    entry: Entry | None = None,
    now: float | None = None,
    collapsed: bool = False,
) -> CacheStatus:
    """Cache-Status after going to the origin.

    fwd: uri-miss / vary-miss (nothing stored matched), stale / request (a stored entry
    needed revalidation: `Reuse.reason` tells which), method, bypass. `verdict` is
    `storable()`'s (a 304 that freshened the entry counts as stored); `entry`/`now` give ttl.
    """
    stored = verdict is not None and verdict.ok
    left = None if entry is None or now is None else ttl(entry, now)
    detail = None if verdict is None or verdict.ok else verdict.reason
    return CacheStatus(
        fwd=fwd, fwd_status=fwd_status, ttl=left if stored else None, stored=stored, collapsed=collapsed, detail=detail
    )


def fwd_reason(r: Reuse) -> str:
    """The RFC 9211 `fwd` value for a Reuse that sends the request to the origin."""
    return "request" if r.reason.startswith("request-") else "stale"
