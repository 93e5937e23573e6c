"""The edge's RFC 9111 core: storage, freshness, age, reuse, Vary, validators, Range,
invalidation and Cache-Status, table-driven, with hypothesis for the invariants."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from akacdn.edge import conditional as cond
from akacdn.edge import rfc9111 as c
from akacdn.edge.fields import cache_control, format_http_date, parse_http_date, split_list

T0 = 1_700_000_000.0  # a fixed "now" for the origin's clock
D0 = format_http_date(T0)


def http(delta: float) -> str:
    return format_http_date(T0 + delta)


def entry(headers: list[tuple[str, str]] | dict[str, str], status: int = 200, at: float = T0, default: float = 300):
    return c.make_entry(status, headers, at, at, default)


# --- fields ------------------------------------------------------------------------------------


def test_split_list_keeps_quoted_commas() -> None:
    assert split_list(' a, "b, c" ,, d ') == ["a", '"b, c"', "d"]
    assert cache_control('private="set-cookie, x-a", max-age=5, max-age=9') == {
        "private": "set-cookie, x-a",
        "max-age": "5",  # a repeated directive keeps its first occurrence
    }


@pytest.mark.parametrize(
    "value",
    ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"],
)
def test_http_date_formats(value: str) -> None:
    assert parse_http_date(value) == 784111777.0


@pytest.mark.parametrize("value", ["0", "-1", "", None, "Sun, 06 Nov 1994 25:49:37 GMT", "soon"])
def test_bad_http_dates_read_as_absent(value: str | None) -> None:
    assert parse_http_date(value) is None


# --- storable ----------------------------------------------------------------------------------

STORABLE = [
    # (name, method, request headers, status, response headers, ok, reason)
    ("plain-200", "GET", {}, 200, {}, True, "default-status"),
    ("head", "HEAD", {}, 200, {}, True, "default-status"),
    ("post", "POST", {}, 200, {"Cache-Control": "max-age=60"}, False, "method"),
    ("lowercase-method", "get", {}, 200, {}, True, "default-status"),
    ("404", "GET", {}, 404, {}, True, "default-status"),
    ("204", "GET", {}, 204, {}, True, "default-status"),
    ("501", "GET", {}, 501, {}, True, "default-status"),
    ("302-no-freshness", "GET", {}, 302, {}, False, "status"),
    ("302-max-age", "GET", {}, 302, {"Cache-Control": "max-age=60"}, True, "explicit"),
    ("307-expires", "GET", {}, 307, {"Expires": D0}, True, "explicit"),
    ("500-public", "GET", {}, 500, {"Cache-Control": "public"}, True, "explicit"),
    ("500-plain", "GET", {}, 500, {}, False, "status"),
    ("206", "GET", {}, 206, {"Cache-Control": "max-age=60"}, False, "partial"),
    ("304", "GET", {}, 304, {"Cache-Control": "max-age=60"}, False, "not-modified"),
    ("1xx", "GET", {}, 103, {}, False, "status"),
    ("no-store", "GET", {}, 200, {"Cache-Control": "max-age=60, no-store"}, False, "no-store"),
    ("request-no-store", "GET", {"Cache-Control": "no-store"}, 200, {}, False, "request-no-store"),
    ("private", "GET", {}, 200, {"Cache-Control": "private, s-maxage=60"}, False, "private"),
    ("private-qualified", "GET", {}, 200, {"Cache-Control": 'private="Set-Cookie"'}, True, "default-status"),
    ("no-cache-is-storable", "GET", {}, 200, {"Cache-Control": "no-cache"}, True, "default-status"),
    ("auth", "GET", {"Authorization": "Basic eA=="}, 200, {"Cache-Control": "max-age=60"}, False, "authorization"),
    ("auth-public", "GET", {"Authorization": "x"}, 200, {"Cache-Control": "public"}, True, "explicit"),
    ("auth-s-maxage", "GET", {"Authorization": "x"}, 200, {"Cache-Control": "s-maxage=9"}, True, "explicit"),
    (
        "auth-must-reval",
        "GET",
        {"authorization": "x"},
        200,
        {"Cache-Control": "must-revalidate"},
        True,
        "default-status",
    ),
    ("vary-star", "GET", {}, 200, {"Vary": "Accept, *"}, False, "vary-star"),
    ("must-understand-ok", "GET", {}, 200, {"Cache-Control": "must-understand, no-store"}, True, "default-status"),
    (
        "must-understand-unknown",
        "GET",
        {},
        299,
        {"Cache-Control": "must-understand, max-age=9"},
        False,
        "must-understand",
    ),
]


@pytest.mark.parametrize(
    ("method", "req", "status", "resp", "ok", "reason"), [s[1:] for s in STORABLE], ids=[s[0] for s in STORABLE]
)
def test_storable(method: str, req: dict, status: int, resp: dict, ok: bool, reason: str) -> None:
    assert c.storable(method, req, status, resp) == (ok, reason)


def test_storable_reads_every_cache_control_line() -> None:
    resp = CIMultiDict([("Cache-Control", "max-age=60"), ("cache-control", "no-store")])
    assert c.storable("GET", {}, 200, resp) == (False, "no-store")


def test_stored_headers_drop_hop_by_hop_age_and_qualified_private_fields() -> None:
    resp = [
        ("Cache-Control", 'private="Set-Cookie", max-age=60'),
        ("Set-Cookie", "s=1"),
        ("Connection", "X-Hop"),
        ("X-Hop", "1"),
        ("Content-Length", "3"),
        ("Age", "5"),
        ("ETag", '"a"'),
    ]
    e = c.make_entry(200, resp, T0, T0, 300)
    assert e.headers == (("Cache-Control", 'private="Set-Cookie", max-age=60'), ("ETag", '"a"'), ("Date", D0))
    assert e.initial_age == 5 and e.lifetime == 60


# --- freshness lifetime --------------------------------------------------------------------------

LIFETIME = [
    # (name, status, headers, override, (seconds, source))
    ("default", 200, {}, None, (300, "default")),
    ("override-wins", 200, {"Cache-Control": "s-maxage=5, max-age=9"}, 43200, (43200, "override")),
    ("s-maxage", 200, {"Cache-Control": "max-age=9, s-maxage=5"}, None, (5, "s-maxage")),
    ("max-age", 200, {"Cache-Control": "max-age=9", "Expires": http(100)}, None, (9, "max-age")),
    ("max-age-invalid-is-stale", 200, {"Cache-Control": "max-age=soon"}, None, (0, "max-age")),
    ("max-age-negative-is-stale", 200, {"Cache-Control": "max-age=-1"}, None, (0, "max-age")),
    ("max-age-huge", 200, {"Cache-Control": "max-age=99999999999999"}, None, (2147483648, "max-age")),
    ("expires-minus-date", 200, {"Date": D0, "Expires": http(120)}, None, (120, "expires")),
    ("expires-past", 200, {"Date": D0, "Expires": http(-120)}, None, (0, "expires")),
    ("expires-invalid", 200, {"Date": D0, "Expires": "0"}, None, (0, "expires")),
    ("expires-no-date", 200, {"Expires": http(30)}, None, (30, "expires")),
    ("heuristic", 200, {"Date": D0, "Last-Modified": http(-1000)}, None, (100, "heuristic")),
    ("heuristic-capped", 200, {"Date": D0, "Last-Modified": http(-(10**8))}, None, (86400, "heuristic")),
    ("heuristic-future-lm", 200, {"Date": D0, "Last-Modified": http(50)}, None, (0, "heuristic")),
    ("no-heuristic-for-302", 302, {"Last-Modified": http(-1000)}, None, (0, "none")),
    ("404-default", 404, {}, None, (300, "default")),
]


@pytest.mark.parametrize(
    ("status", "headers", "override", "expected"), [x[1:] for x in LIFETIME], ids=[x[0] for x in LIFETIME]
)
def test_freshness_lifetime(status: int, headers: dict, override: int | None, expected: tuple) -> None:
    assert c.freshness_lifetime(status, headers, T0, 300, override) == expected


# --- age -----------------------------------------------------------------------------------------

AGES = [
    # (name, headers, request_time, response_time, now, expected current age)
    ("fresh-from-origin", {"Date": D0}, T0, T0, T0, 0),
    ("resident-time", {"Date": D0}, T0, T0, T0 + 7, 7),
    ("age-header", {"Date": D0, "Age": "30"}, T0, T0, T0 + 5, 35),
    ("response-delay", {"Date": D0, "Age": "30"}, T0 - 2, T0, T0, 32),
    ("apparent-age", {"Date": http(-50)}, T0, T0, T0, 50),
    ("apparent-beats-age", {"Date": http(-50), "Age": "10"}, T0, T0, T0, 50),
    ("date-in-future", {"Date": http(500)}, T0, T0, T0 + 1, 1),
    ("bad-age", {"Date": D0, "Age": "-3"}, T0, T0, T0, 0),
    ("clock-stepped-back", {"Date": D0}, T0, T0, T0 - 100, 0),
]


@pytest.mark.parametrize(("headers", "req_t", "resp_t", "now", "age"), [a[1:] for a in AGES], ids=[a[0] for a in AGES])
def test_current_age(headers: dict, req_t: float, resp_t: float, now: float, age: float) -> None:
    e = c.make_entry(200, headers, req_t, resp_t, 300)
    assert c.current_age(e, now) == age
    assert c.age_header(e, now) == str(int(age))


@given(
    date=st.one_of(st.none(), st.floats(-1e10, 1e10)),
    age=st.one_of(st.none(), st.text(max_size=12), st.integers(-10, 10**20).map(str)),
    req_t=st.floats(0, 2e9),
    delay=st.floats(-1e6, 1e6),
    later=st.floats(-1e9, 1e9),
)
def test_ages_are_never_negative(date, age, req_t, delay, later) -> None:
    headers: list[tuple[str, str]] = []
    if date is not None:
        headers.append(("Date", format_http_date(max(0.0, date))))
    if age is not None:
        headers.append(("Age", age))
    e = c.make_entry(200, headers, req_t, req_t + delay, 300)
    assert c.current_age(e, req_t + delay + later) >= 0
    assert int(c.age_header(e, req_t + later)) >= 0
    assert e.lifetime >= 0


def test_is_fresh_boundary() -> None:
    e = entry({"Cache-Control": "max-age=60", "Date": D0})
    assert c.is_fresh(e, T0 + 59.9) and not c.is_fresh(e, T0 + 60)
    assert c.ttl(e, T0 + 70) == -10


# --- reuse ---------------------------------------------------------------------------------------

H, S, SWR, REVAL, OIC = c.Action.HIT, c.Action.STALE, c.Action.SWR, c.Action.REVALIDATE, c.Action.ONLY_IF_CACHED

REUSE = [
    # (name, response Cache-Control, request headers, seconds after storing, action, reason)
    ("fresh", "max-age=60", {}, 10, H, "fresh"),
    ("stale", "max-age=60", {}, 61, REVAL, "stale"),
    ("no-cache", "max-age=60, no-cache", {}, 1, REVAL, "no-cache"),
    ("no-cache-qualified", 'max-age=60, no-cache="x-a"', {}, 1, REVAL, "no-cache"),
    ("request-no-cache", "max-age=60", {"Cache-Control": "no-cache"}, 1, REVAL, "request-no-cache"),
    ("pragma-no-cache", "max-age=60", {"Pragma": "no-cache"}, 1, REVAL, "request-no-cache"),
    ("pragma-ignored-with-cc", "max-age=60", {"Pragma": "no-cache", "Cache-Control": "max-stale"}, 1, H, "fresh"),
    ("request-max-age", "max-age=60", {"Cache-Control": "max-age=5"}, 10, REVAL, "request-max-age"),
    ("request-max-age-ok", "max-age=60", {"Cache-Control": "max-age=15"}, 10, H, "fresh"),
    ("request-max-age-0", "max-age=60", {"Cache-Control": "max-age=0"}, 1, REVAL, "request-max-age"),
    ("min-fresh", "max-age=60", {"Cache-Control": "min-fresh=30"}, 40, REVAL, "request-min-fresh"),
    ("min-fresh-ok", "max-age=60", {"Cache-Control": "min-fresh=30"}, 20, H, "fresh"),
    ("max-stale-any", "max-age=60", {"Cache-Control": "max-stale"}, 1000, S, "max-stale"),
    ("max-stale-bound", "max-age=60", {"Cache-Control": "max-stale=10"}, 65, S, "max-stale"),
    ("max-stale-exceeded", "max-age=60", {"Cache-Control": "max-stale=10"}, 75, REVAL, "stale"),
    (
        "max-stale-vs-must-revalidate",
        "max-age=60, must-revalidate",
        {"Cache-Control": "max-stale"},
        61,
        REVAL,
        "must-revalidate",
    ),
    (
        "max-stale-vs-proxy-revalidate",
        "max-age=60, proxy-revalidate",
        {"Cache-Control": "max-stale"},
        61,
        REVAL,
        "proxy-revalidate",
    ),
    ("max-stale-vs-s-maxage", "s-maxage=60", {"Cache-Control": "max-stale"}, 61, REVAL, "s-maxage"),
    ("swr", "max-age=60, stale-while-revalidate=30", {}, 80, SWR, "stale-while-revalidate"),
    ("swr-over", "max-age=60, stale-while-revalidate=30", {}, 95, REVAL, "stale"),
    ("swr-with-s-maxage", "s-maxage=60, stale-while-revalidate=30", {}, 80, SWR, "stale-while-revalidate"),
    (
        "swr-vs-must-revalidate",
        "max-age=60, must-revalidate, stale-while-revalidate=30",
        {},
        80,
        REVAL,
        "must-revalidate",
    ),
    ("only-if-cached-fresh", "max-age=60", {"Cache-Control": "only-if-cached"}, 1, H, "fresh"),
    ("only-if-cached-stale", "max-age=60", {"Cache-Control": "only-if-cached"}, 61, OIC, "stale"),
]


@pytest.mark.parametrize(("cc", "req", "after", "action", "reason"), [r[1:] for r in REUSE], ids=[r[0] for r in REUSE])
def test_reuse(cc: str, req: dict, after: float, action: c.Action, reason: str) -> None:
    e = entry({"Cache-Control": cc, "Date": D0})
    got = c.reuse("GET", req, e, T0 + after)
    assert (got.action, got.reason) == (action, reason)
    assert got.age == after


def test_reuse_for_head_and_other_methods() -> None:
    e = entry({"Cache-Control": "max-age=60"})
    assert c.reuse("HEAD", {}, e, T0).action == H
    assert c.reuse("POST", {}, e, T0).action == c.Action.FORWARD


def test_request_no_cache_can_be_ignored_by_policy() -> None:
    e = entry({"Cache-Control": "max-age=60"})
    assert c.reuse("GET", {"Pragma": "no-cache"}, e, T0, c.Policy(honor_request_no_cache=False)).action == H


STALE_IF_ERROR = [
    # (name, response Cache-Control, request headers, operator bound, seconds stale, allowed)
    ("none", "max-age=60", {}, 0, 5, False),
    ("operator-bound", "max-age=60", {}, 600, 500, True),
    ("operator-bound-over", "max-age=60", {}, 600, 700, False),
    ("response-sie", "max-age=60, stale-if-error=100", {}, 0, 90, True),
    ("response-sie-over", "max-age=60, stale-if-error=100", {}, 0, 110, False),
    ("request-sie", "max-age=60", {"Cache-Control": "stale-if-error=50"}, 0, 40, True),
    ("must-revalidate", "max-age=60, must-revalidate, stale-if-error=100", {}, 600, 5, False),
    ("no-cache", "max-age=60, no-cache", {}, 600, 5, False),
    ("s-maxage-implied-proxy-revalidate", "s-maxage=60", {}, 600, 5, False),
    ("s-maxage-with-sie", "s-maxage=60, stale-if-error=100", {}, 0, 5, True),
]


@pytest.mark.parametrize(
    ("cc", "req", "bound", "stale", "allowed"), [x[1:] for x in STALE_IF_ERROR], ids=[x[0] for x in STALE_IF_ERROR]
)
def test_stale_on_error(cc: str, req: dict, bound: float, stale: float, allowed: bool) -> None:
    e = entry({"Cache-Control": cc, "Date": D0})
    got = c.stale_on_error(req, e, T0 + 60 + stale, c.Policy(stale_if_error=bound))
    assert (got is not None) == allowed
    if got:
        assert got.action == S and got.reason == "stale-if-error" and got.ttl == -stale


def test_error_statuses() -> None:
    assert [s for s in (200, 304, 404, 500, 501, 502, 503, 504) if c.is_error_status(s)] == [500, 502, 503, 504]


# --- Vary ----------------------------------------------------------------------------------------

VARY = [
    # (name, Vary, stored request headers, new request headers, matches)
    ("no-vary", None, {"Accept": "a"}, {"Accept": "b"}, True),
    ("same", "Accept-Encoding", {"Accept-Encoding": "gzip"}, {"accept-encoding": "gzip"}, True),
    ("different", "Accept-Encoding", {"Accept-Encoding": "gzip"}, {"Accept-Encoding": "br"}, False),
    ("whitespace", "accept-encoding", {"Accept-Encoding": "gzip,br"}, {"Accept-Encoding": "  gzip ,  br "}, True),
    ("lines-combined", "Accept", [("Accept", "a"), ("Accept", "b")], {"Accept": "a, b"}, True),
    ("absent-vs-absent", "Origin", {}, {}, True),
    ("absent-vs-empty", "Origin", {}, {"Origin": ""}, False),
    ("one-of-two-differs", "Accept, Origin", {"Accept": "a", "Origin": "x"}, {"Accept": "a", "Origin": "y"}, False),
    ("names-case-insensitive", "ACCEPT, accept", {"Accept": "a"}, {"accept": "a"}, True),
    ("star-never-matches", "*", {}, {}, False),
    ("star-in-list", "Accept, *", {"Accept": "a"}, {"Accept": "a"}, False),
]


@pytest.mark.parametrize(("vary", "stored_req", "new_req", "match"), [v[1:] for v in VARY], ids=[v[0] for v in VARY])
def test_vary(vary: str | None, stored_req, new_req, match: bool) -> None:
    resp = {"Vary": vary} if vary is not None else {}
    key = c.variant_key(resp, stored_req)
    assert c.vary_matches(resp, key, new_req) == match


def test_select_variant_picks_the_newest_match() -> None:
    resp = {"Vary": "Accept-Encoding"}
    variants = [
        (c.variant_key(resp, {"Accept-Encoding": "gzip"}), entry(resp | {"Date": http(-10)}), "old-gzip"),
        (c.variant_key(resp, {"Accept-Encoding": "br"}), entry(resp | {"Date": http(0)}), "br"),
        (c.variant_key(resp, {"Accept-Encoding": "gzip"}), entry(resp | {"Date": http(-5)}), "new-gzip"),
    ]
    assert c.select_variant({"Accept-Encoding": "gzip"}, variants) == "new-gzip"
    assert c.select_variant({"Accept-Encoding": "zstd"}, variants) is None


# --- invalidation --------------------------------------------------------------------------------

URI = "http://www.demo.example/a/b?x=1"

INVALIDATION = [
    # (name, method, status, response headers, invalidated paths)
    ("get", "GET", 200, {}, ()),
    ("head", "HEAD", 200, {}, ()),
    ("post", "POST", 200, {}, ("/a/b?x=1",)),
    ("put-201-location", "PUT", 201, {"Location": "/new"}, ("/a/b?x=1", "/new")),
    ("delete-relative", "DELETE", 204, {"Content-Location": "c"}, ("/a/b?x=1", "/a/c")),
    ("patch-absolute-same-origin", "PATCH", 200, {"Location": "http://WWW.demo.example:80/z"}, ("/a/b?x=1", "/z")),
    ("other-origin-ignored", "POST", 303, {"Location": "http://evil.example/a"}, ("/a/b?x=1",)),
    ("other-port-ignored", "POST", 200, {"Location": "http://www.demo.example:8080/a"}, ("/a/b?x=1",)),
    ("other-scheme-ignored", "POST", 200, {"Location": "https://www.demo.example/a"}, ("/a/b?x=1",)),
    ("bad-port-ignored", "POST", 200, {"Location": "http://www.demo.example:99999/a"}, ("/a/b?x=1",)),
    ("duplicate-once", "POST", 200, {"Content-Location": "/a/b?x=1"}, ("/a/b?x=1",)),
    ("error-4xx", "POST", 404, {"Location": "/new"}, ()),
    ("error-5xx", "DELETE", 503, {}, ()),
]


@pytest.mark.parametrize(
    ("method", "status", "headers", "paths"), [i[1:] for i in INVALIDATION], ids=[i[0] for i in INVALIDATION]
)
def test_invalidates(method: str, status: int, headers: dict, paths: tuple[str, ...]) -> None:
    assert c.invalidates(method, status, URI, headers) == paths


# --- Cache-Status --------------------------------------------------------------------------------


def test_cache_status_values() -> None:
    e = entry({"Cache-Control": "max-age=60, stale-while-revalidate=30", "Date": D0})
    assert c.served_status(c.reuse("GET", {}, e, T0 + 18)).value() == "akacdn; hit; ttl=42"
    assert c.served_status(c.reuse("GET", {}, e, T0 + 65)).value() == (
        "akacdn; hit; ttl=-5; detail=stale-while-revalidate"
    )
    r = c.stale_on_error({}, e, T0 + 70, c.Policy(stale_if_error=60))
    assert r is not None
    assert c.served_status(r, 503).value() == "akacdn; fwd=stale; fwd-status=503; ttl=-10; detail=stale-if-error"
    assert c.served_status(r).value() == "akacdn; fwd=stale; ttl=-10; detail=stale-if-error"
    ok = c.storable("GET", {}, 200, e.headers)
    assert (
        c.forwarded_status("uri-miss", 200, ok, e, T0).value() == "akacdn; fwd=uri-miss; fwd-status=200; ttl=60; stored"
    )
    no = c.storable("GET", {}, 200, {"Cache-Control": "no-store"})
    assert c.forwarded_status("vary-miss", 200, no).value() == "akacdn; fwd=vary-miss; fwd-status=200; detail=no-store"
    assert c.forwarded_status("uri-miss", 200, ok, e, T0, collapsed=True).value().endswith("stored; collapsed")
    assert c.CacheStatus(fwd="bypass", detail="odd value").value() == 'akacdn; fwd=bypass; detail="odd value"'
    assert c.CacheStatus(hit=True, key='a "b"').value() == 'akacdn; hit; key="a \\"b\\""'


def test_fwd_reason() -> None:
    e = entry({"Cache-Control": "max-age=60"})
    assert c.fwd_reason(c.reuse("GET", {"Cache-Control": "no-cache"}, e, T0)) == "request"
    assert c.fwd_reason(c.reuse("GET", {}, e, T0 + 61)) == "stale"


# --- revalidation with the origin ----------------------------------------------------------------

LM = http(-3600)


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ({"ETag": '"v1"', "Last-Modified": LM}, [("If-None-Match", '"v1"'), ("If-Modified-Since", LM)]),
        ({"ETag": 'W/"v1"'}, [("If-None-Match", 'W/"v1"')]),
        ({"Last-Modified": LM}, [("If-Modified-Since", LM)]),
        ({"ETag": "unquoted", "Last-Modified": "yesterday"}, []),
        ({}, []),
    ],
)
def test_revalidation_headers(stored: dict, expected: list) -> None:
    assert cond.revalidation_headers(stored) == expected


def test_validation_outcome() -> None:
    assert [cond.validation_outcome(s) for s in (304, 200, 404, 500, 503)] == [
        cond.Validation.FRESHEN,
        cond.Validation.REPLACE,
        cond.Validation.REPLACE,
        cond.Validation.ERROR,
        cond.Validation.ERROR,
    ]


def test_freshen_merges_304_headers_and_restarts_the_clock() -> None:
    stored = entry(
        [
            ("Content-Type", "text/plain"),
            ("Cache-Control", "max-age=60"),
            ("ETag", '"v1"'),
            ("Content-Encoding", "gzip"),
            ("X-Old", "1"),
            ("Date", D0),
        ]
    )
    update = [
        ("Cache-Control", "max-age=120"),
        ("ETag", '"v1"'),
        ("Content-Length", "0"),
        ("Content-Encoding", "identity"),
        ("Connection", "X-Hop"),
        ("X-Hop", "1"),
        ("X-New", "a"),
        ("X-New", "b"),
        ("Date", http(100)),
        ("Age", "3"),
    ]
    fresh = cond.freshen(stored, update, T0 + 99, T0 + 100, 300)
    assert fresh.headers == (
        ("Content-Type", "text/plain"),
        ("Cache-Control", "max-age=120"),
        ("ETag", '"v1"'),
        ("Content-Encoding", "gzip"),
        ("X-Old", "1"),
        ("Date", http(100)),
        ("X-New", "a"),
        ("X-New", "b"),
    )
    assert (fresh.lifetime, fresh.source, fresh.initial_age) == (120, "max-age", 4)
    assert c.reuse("GET", {}, fresh, T0 + 150).action == H


def test_freshen_without_date_uses_the_response_time() -> None:
    stored = entry({"Cache-Control": "max-age=60", "Date": D0})
    fresh = cond.freshen(stored, [], T0 + 500, T0 + 500, 300)
    assert c.is_fresh(fresh, T0 + 530) and dict(fresh.headers)["Date"] == http(500)


# --- client conditionals ------------------------------------------------------------------------

STORED = {"ETag": '"v1"', "Last-Modified": LM, "Date": D0, "Cache-Control": "max-age=60"}

PRECONDITIONS = [
    # (name, method, request headers, stored status, stored headers, status, reason)
    ("none", "GET", {}, 200, STORED, None, "none"),
    ("inm-match", "GET", {"If-None-Match": '"v1"'}, 200, STORED, 304, "if-none-match"),
    ("inm-weak-match", "GET", {"If-None-Match": 'W/"v1"'}, 200, STORED, 304, "if-none-match"),
    ("inm-list", "HEAD", {"If-None-Match": '"x", "v1"'}, 200, STORED, 304, "if-none-match"),
    ("inm-star", "GET", {"If-None-Match": "*"}, 200, STORED, 304, "if-none-match"),
    ("inm-miss", "GET", {"If-None-Match": '"v2"'}, 200, STORED, None, "etag-changed"),
    ("inm-beats-ims", "GET", {"If-None-Match": '"v2"', "If-Modified-Since": D0}, 200, STORED, None, "etag-changed"),
    ("inm-unsafe", "DELETE", {"If-None-Match": '"v1"'}, 200, STORED, 412, "if-none-match"),
    ("ims-not-modified", "GET", {"If-Modified-Since": LM}, 200, STORED, 304, "if-modified-since"),
    ("ims-later", "GET", {"If-Modified-Since": D0}, 200, STORED, 304, "if-modified-since"),
    ("ims-modified", "GET", {"If-Modified-Since": http(-7200)}, 200, STORED, None, "none"),
    ("ims-invalid", "GET", {"If-Modified-Since": "yesterday"}, 200, STORED, None, "none"),
    ("ims-falls-back-to-date", "GET", {"If-Modified-Since": D0}, 200, {"Date": D0}, 304, "if-modified-since"),
    ("ims-post-ignored", "POST", {"If-Modified-Since": D0}, 200, STORED, None, "none"),
    ("if-match-ok", "GET", {"If-Match": '"v1"'}, 200, STORED, None, "none"),
    ("if-match-weak-fails", "GET", {"If-Match": 'W/"v1"'}, 200, STORED, 412, "if-match"),
    ("if-match-star", "GET", {"If-Match": "*"}, 200, STORED, None, "none"),
    ("ius-fails", "GET", {"If-Unmodified-Since": http(-7200)}, 200, STORED, 412, "if-unmodified-since"),
    ("ius-ok", "GET", {"If-Unmodified-Since": D0}, 200, STORED, None, "none"),
    ("not-2xx-ignored", "GET", {"If-None-Match": "*"}, 404, STORED, None, "not-2xx"),
]


@pytest.mark.parametrize(
    ("method", "req", "status", "stored", "expected", "reason"),
    [p[1:] for p in PRECONDITIONS],
    ids=[p[0] for p in PRECONDITIONS],
)
def test_precondition(method: str, req: dict, status: int, stored: dict, expected: int | None, reason: str) -> None:
    assert cond.precondition(method, req, status, stored, T0) == (expected, reason)


def test_not_modified_headers() -> None:
    stored = [
        ("Content-Type", "text/html"),
        ("ETag", '"v1"'),
        ("Last-Modified", LM),
        ("Cache-Control", "max-age=60"),
        ("Expires", http(60)),
        ("Vary", "Accept-Encoding"),
        ("Content-Location", "/a.html"),
        ("Date", D0),
        ("Set-Cookie", "a=1"),
    ]
    assert cond.not_modified_headers(stored) == [
        ("ETag", '"v1"'),
        ("Cache-Control", "max-age=60"),
        ("Expires", http(60)),
        ("Vary", "Accept-Encoding"),
        ("Content-Location", "/a.html"),
        ("Date", D0),
    ]
    assert ("Last-Modified", LM) in cond.not_modified_headers([("Last-Modified", LM), ("Date", D0)])


# --- Range ---------------------------------------------------------------------------------------

BODY = 1000
RANGE_STORED = {"ETag": '"v1"', "Last-Modified": LM, "Date": D0}

RANGES = [
    # (name, method, request headers, stored status, (status, start, stop, reason))
    ("none", "GET", {}, 200, (200, 0, BODY, "no-range")),
    ("first-bytes", "GET", {"Range": "bytes=0-99"}, 200, (206, 0, 100, "range")),
    ("middle", "GET", {"Range": "bytes=500-599"}, 200, (206, 500, 600, "range")),
    ("open-end", "GET", {"Range": "bytes=990-"}, 200, (206, 990, BODY, "range")),
    ("last-clamped", "GET", {"Range": "bytes=900-5000"}, 200, (206, 900, BODY, "range")),
    ("suffix", "GET", {"Range": "bytes=-10"}, 200, (206, 990, BODY, "range")),
    ("suffix-longer-than-body", "GET", {"Range": "bytes=-5000"}, 200, (206, 0, BODY, "range")),
    ("unit-case-and-space", "GET", {"Range": "Bytes= 1-1 "}, 200, (206, 1, 2, "range")),
    ("start-past-end", "GET", {"Range": "bytes=1000-"}, 200, (416, 0, 0, "unsatisfiable")),
    ("suffix-zero", "GET", {"Range": "bytes=-0"}, 200, (416, 0, 0, "unsatisfiable")),
    ("reversed", "GET", {"Range": "bytes=5-1"}, 200, (200, 0, BODY, "invalid")),
    ("garbage", "GET", {"Range": "bytes=a-b"}, 200, (200, 0, BODY, "invalid")),
    ("dash-only", "GET", {"Range": "bytes=-"}, 200, (200, 0, BODY, "invalid")),
    ("empty-set", "GET", {"Range": "bytes=,"}, 200, (200, 0, BODY, "invalid")),
    ("multiple", "GET", {"Range": "bytes=0-1,5-6"}, 200, (200, 0, BODY, "multiple")),
    ("other-unit", "GET", {"Range": "items=0-1"}, 200, (200, 0, BODY, "unit")),
    ("head-ignores", "HEAD", {"Range": "bytes=0-1"}, 200, (200, 0, BODY, "no-range")),
    ("404-ignores", "GET", {"Range": "bytes=0-1"}, 404, (200, 0, BODY, "no-range")),
    ("if-range-etag", "GET", {"Range": "bytes=0-1", "If-Range": '"v1"'}, 200, (206, 0, 2, "range")),
    ("if-range-etag-changed", "GET", {"Range": "bytes=0-1", "If-Range": '"v2"'}, 200, (200, 0, BODY, "if-range")),
    ("if-range-weak", "GET", {"Range": "bytes=0-1", "If-Range": 'W/"v1"'}, 200, (200, 0, BODY, "if-range")),
    ("if-range-date", "GET", {"Range": "bytes=0-1", "If-Range": LM}, 200, (206, 0, 2, "range")),
    ("if-range-date-other", "GET", {"Range": "bytes=0-1", "If-Range": D0}, 200, (200, 0, BODY, "if-range")),
]


@pytest.mark.parametrize(("method", "req", "status", "expected"), [r[1:] for r in RANGES], ids=[r[0] for r in RANGES])
def test_byte_range(method: str, req: dict, status: int, expected: tuple) -> None:
    plan = cond.byte_range(method, req, status, RANGE_STORED, BODY)
    assert (plan.status, plan.start, plan.stop, plan.reason) == expected
    if plan.status == 206:
        assert plan.headers == [("Content-Range", f"bytes {plan.start}-{plan.stop - 1}/{BODY}")]
    elif plan.status == 416:
        assert plan.headers == [("Content-Range", f"bytes */{BODY}")]


def test_if_range_date_needs_a_strong_last_modified() -> None:
    weak = {"Last-Modified": D0, "Date": D0}  # modified in the second it was sent: weak
    plan = cond.byte_range("GET", {"Range": "bytes=0-1", "If-Range": D0}, 200, weak, BODY)
    assert (plan.status, plan.reason) == (200, "if-range")


def test_range_on_empty_body() -> None:
    assert cond.byte_range("GET", {"Range": "bytes=0-"}, 200, {}, 0).status == 416
    assert cond.byte_range("GET", {"Range": "bytes=-1"}, 200, {}, 0).status == 416


_spec = st.one_of(
    st.tuples(st.integers(0, 3000), st.one_of(st.none(), st.integers(0, 3000))).map(
        lambda t: f"{t[0]}-{'' if t[1] is None else t[1]}"
    ),
    st.integers(0, 3000).map(lambda n: f"-{n}"),
    st.text(max_size=12),
)


@given(length=st.integers(0, 2000), spec=_spec)
def test_range_never_leaves_the_body(length: int, spec: str) -> None:
    plan = cond.byte_range("GET", {"Range": f"bytes={spec}"}, 200, {}, length)
    assert plan.status in (200, 206, 416)
    assert 0 <= plan.start <= plan.stop <= length
    if plan.status == 206:
        assert plan.stop > plan.start
        assert plan.headers == [("Content-Range", f"bytes {plan.start}-{plan.stop - 1}/{length}")]
    if plan.status == 200:
        assert (plan.start, plan.stop) == (0, length)


@given(
    headers=st.lists(
        st.tuples(
            st.sampled_from(["Cache-Control", "ETag", "Date", "Age", "Expires", "Vary", "Range", "If-Range", "X"]),
            st.text(max_size=30),
        ),
        max_size=8,
    ),
    method=st.sampled_from(["GET", "HEAD", "POST"]),
)
def test_hostile_headers_never_raise(headers: list[tuple[str, str]], method: str) -> None:
    e = c.make_entry(200, headers, T0, T0, 300)
    c.storable(method, headers, 200, headers)
    c.reuse(method, headers, e, T0 + 10)
    c.stale_on_error(headers, e, T0 + 10)
    c.variant_key(headers, headers)
    c.invalidates(method, 200, URI, headers)
    cond.revalidation_headers(e.headers)
    cond.freshen(e, headers, T0, T0, 300)
    cond.precondition(method, headers, 200, e.headers, T0)
    cond.byte_range(method, headers, 200, e.headers, 100)
    assert c.current_age(e, T0) >= 0


def test_entry_round_trips_through_msgpack() -> None:
    e = entry({"Cache-Control": "max-age=60", "ETag": '"v1"'})
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(e), type=c.Entry) == e
