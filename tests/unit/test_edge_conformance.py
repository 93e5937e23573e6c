"""RFC 9110 / 9111 conformance of the edge's pure caching core, beyond the basics in
test_edge_rfc9111: Age lists, freshening from a 304 (4.3.4 selection, 3.2 update),
heuristic freshness for `public`, the one store decision, strict HTTP-dates, the framing of
stored no-content answers, and hostile input (hypothesis)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from akacdn.edge import conditional as cond
from akacdn.edge import rfc9111 as c
from akacdn.edge.fields import (
    DELTA_MAX,
    delta_seconds,
    directive_args,
    entity_tag,
    format_http_date,
    has_validator,
    parse_http_date,
)
from akacdn.edge.hit import Prepared

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 GMT
D0 = format_http_date(T0)
LM = format_http_date(T0 - 86400)


def http(delta: float) -> str:
    return format_http_date(T0 + delta)


def stored(headers: list[tuple[str, str]] | dict[str, str], status: int = 200, at: float = T0) -> c.Entry:
    return c.make_entry(status, headers, at, at, 300)


# --- HTTP-date (RFC 9110 5.6.7, RFC 9111 4.2) ---------------------------------------------------

DATES = [
    # (name, value, seconds or None)
    ("imf-fixdate", "Sun, 06 Nov 1994 08:49:37 GMT", 784111777.0),
    ("rfc850", "Sunday, 06-Nov-94 08:49:37 GMT", 784111777.0),
    ("asctime", "Sun Nov  6 08:49:37 1994", 784111777.0),
    ("case-insensitive", "SUN, 06 NOV 1994 08:49:37 gmt", 784111777.0),  # RFC 9111 4.2 SHOULD
    ("one-digit-day", "Sun, 6 Nov 1994 08:49:37 GMT", 784111777.0),
    ("leap-second", "Sun, 06 Nov 1994 08:49:60 GMT", 784111800.0),
    ("zone-pst", "Sun, 06 Nov 1994 08:49:37 PST", None),  # RFC 9111 4.2: only GMT
    ("zone-utc", "Sun, 06 Nov 1994 08:49:37 UTC", None),
    ("zone-numeric", "Sun, 06 Nov 1994 08:49:37 +0000", None),
    ("zone-unknown", "Sun, 06 Nov 1994 08:49:37 -0000", None),
    ("no-zone", "Sun, 06 Nov 1994 08:49:37", None),
    ("feb-31", "Thu, 31 Feb 1994 08:49:37 GMT", None),
    ("hour-24", "Sun, 06 Nov 1994 24:00:00 GMT", None),
    ("bad-month", "Sun, 06 Nox 1994 08:49:37 GMT", None),
    ("bad-day-name", "Xyz, 06 Nov 1994 08:49:37 GMT", None),
    ("a-list", "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT", None),
    ("arabic-digits", "Sun, ٠٦ Nov 1994 08:49:37 GMT", None),
    ("zero", "0", None),
]


@pytest.mark.parametrize(("value", "expected"), [d[1:] for d in DATES], ids=[d[0] for d in DATES])
def test_http_dates(value: str, expected: float | None) -> None:
    assert parse_http_date(value) == expected


def test_the_local_time_zone_never_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 9111 4.2: a cache MUST NOT let local time zones influence an age or expiry
    (the stdlib reads a zone-less asctime date as local time)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_http_date("Sun Nov  6 08:49:37 1994") == 784111777.0
        assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777.0
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    ("yy", "now_year", "year"),
    [("94", 2023, 1994), ("69", 2023, 2069), ("80", 2023, 1980), ("05", 2023, 2005), ("01", 2099, 2101)],
)
def test_rfc850_two_digit_years_are_read_relative_to_now(yy: str, now_year: int, year: int) -> None:
    """RFC 9110 5.6.7: more than 50 years in the future means the last such year in the past."""
    now = float(time.mktime((now_year, 6, 1, 0, 0, 0, 0, 0, 0)))
    got = parse_http_date(f"Sunday, 06-Nov-{yy} 08:49:37 GMT", now)
    assert got is not None and time.gmtime(got).tm_year == year


def test_delta_seconds_of_any_length() -> None:
    assert delta_seconds("9" * 5000) == DELTA_MAX  # never int()'s 4300-digit limit
    assert delta_seconds("0" * 5000 + "7") == 7
    assert delta_seconds("٣") is None and delta_seconds("+3") is None and delta_seconds("") is None


def test_directive_args_and_validators() -> None:
    lines = [("Cache-Control", "max-age=5, public"), ("cache-control", 'MAX-AGE="9"')]
    assert directive_args(lines, "max-age") == ["5", "9"]
    assert directive_args(lines, "public") == [""]
    assert entity_tag({"ETag": 'W/"a"'}) == 'W/"a"' and entity_tag({"ETag": "a"}) is None
    assert has_validator({"Last-Modified": LM}) and not has_validator({"Last-Modified": "yesterday", "ETag": "x"})


# --- Age (RFC 9111 5.1, 4.2.3) --------------------------------------------------------------------

AGE_VALUES = [
    # (name, header lines, age_value)
    ("absent", [], 0),
    ("plain", [("Age", "30")], 30),
    ("list-first-member", [("Age", "7200, 10")], 7200),
    ("two-lines", [("Age", "7200"), ("Age", "10")], 7200),
    ("empty-first-line", [("Age", ""), ("Age", "10")], 10),
    ("spaces", [("Age", "  42 ")], 42),
    ("negative", [("Age", "-5")], 0),
    ("not-a-number", [("Age", "soon, 10")], 0),
    ("quoted", [("Age", '"5"')], 0),
    ("huge", [("Age", "9" * 40)], DELTA_MAX),
]


@pytest.mark.parametrize(("lines", "expected"), [a[1:] for a in AGE_VALUES], ids=[a[0] for a in AGE_VALUES])
def test_age_value(lines: list[tuple[str, str]], expected: int) -> None:
    assert c.age_value(lines) == expected


def test_an_object_the_origin_says_is_two_hours_old_is_not_fresh_for_its_whole_max_age() -> None:
    e = stored([("Cache-Control", "max-age=3600"), ("Date", D0), ("Age", "7200, 10")])
    assert e.initial_age == 7200
    assert not c.is_fresh(e, T0)
    assert c.reuse("GET", {}, e, T0).action == c.Action.REVALIDATE
    assert c.age_header(e, T0 + 5) == "7205"


@given(
    lines=st.lists(st.tuples(st.sampled_from(["Age", "age", "Date"]), st.text(max_size=40)), max_size=4),
    req_t=st.floats(0, 4e9),
    delay=st.floats(-1e6, 1e6),
)
def test_initial_age_never_negative_never_raises(lines: list[tuple[str, str]], req_t: float, delay: float) -> None:
    assert 0 <= c.age_value(lines) <= DELTA_MAX
    assert c.initial_age(lines, req_t, req_t + delay) >= 0


# --- freshness lifetime (RFC 9111 4.2.1, 4.2.2) ------------------------------------------------

HEURISTIC = {"Date": D0, "Last-Modified": http(-1000)}

LIFETIMES = [
    # (name, status, headers, (seconds, source))
    ("public-302-heuristic", 302, {"Cache-Control": "public"} | HEURISTIC, (100, "heuristic")),
    ("public-302-default", 302, {"Cache-Control": "public"}, (300, "default")),
    ("public-500-default", 500, {"Cache-Control": "public"}, (300, "default")),
    ("plain-302-none", 302, HEURISTIC, (0, "none")),
    ("plain-307-none", 307, {}, (0, "none")),
    ("206-heuristic", 206, HEURISTIC, (100, "heuristic")),
    ("308-default", 308, {}, (300, "default")),
    ("public-with-max-age", 302, {"Cache-Control": "public, max-age=7"} | HEURISTIC, (7, "max-age")),
    ("invalid-expires-no-heuristic", 200, {"Expires": "0"} | HEURISTIC, (0, "expires")),
    ("invalid-max-age-no-default", 200, {"Cache-Control": "max-age=x"}, (0, "max-age")),
    ("max-age-conflict", 200, {"Cache-Control": "max-age=60, max-age=3600"}, (0, "max-age")),
    ("max-age-repeated-same", 200, {"Cache-Control": "max-age=60, max-age=60"}, (60, "max-age")),
    ("max-age-quoted", 200, {"Cache-Control": 'max-age="60"'}, (60, "max-age")),
    ("s-maxage-conflict", 200, {"Cache-Control": "s-maxage=1, max-age=9, s-maxage=2"}, (0, "s-maxage")),
    ("s-maxage-invalid", 200, {"Cache-Control": "s-maxage=-1, max-age=9"}, (0, "s-maxage")),
    ("expires-non-gmt", 200, {"Date": D0, "Expires": "Tue, 14 Nov 2023 23:13:20 PST"}, (0, "expires")),
]


@pytest.mark.parametrize(("status", "headers", "expected"), [x[1:] for x in LIFETIMES], ids=[x[0] for x in LIFETIMES])
def test_freshness_lifetime(status: int, headers: dict[str, str], expected: tuple[float, str]) -> None:
    assert c.freshness_lifetime(status, headers, T0, 300) == expected


def test_max_age_conflicting_across_lines_is_stale() -> None:
    lines = [("Cache-Control", "max-age=60"), ("Cache-Control", "max-age=86400")]
    assert c.freshness_lifetime(200, lines, T0, 300) == (0, "max-age")


def test_two_different_expires_are_stale_two_equal_ones_count() -> None:
    both = [("Date", D0), ("Expires", http(60)), ("Expires", http(600))]
    assert c.freshness_lifetime(200, both, T0, 300) == (0, "expires")
    same = [("Date", D0), ("Expires", http(60)), ("Expires", http(60))]
    assert c.freshness_lifetime(200, same, T0, 300) == (60, "expires")


def test_heuristically_cacheable_is_rfc_9110_list_and_206_is_still_not_stored() -> None:
    assert frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501}) == c.HEURISTICALLY_CACHEABLE
    assert c.storable("GET", {}, 206, {}) == (False, "partial")
    assert c.storable("GET", {}, 206, {"Cache-Control": "must-understand, max-age=60"}) == (False, "partial")
    assert c.heuristic_allowed(302, {"Cache-Control": "public"})
    assert not c.heuristic_allowed(200, {"Cache-Control": "public", "Expires": "0"})


# --- storing (RFC 9111 3, 3.1) -------------------------------------------------------------------


@pytest.mark.parametrize("status", [412, 416])
def test_answers_to_preconditions_and_ranges_are_never_stored(status: int) -> None:
    assert c.storable("GET", {"If-Match": '"a"'}, status, {"Cache-Control": "max-age=60"}) == (
        False,
        "conditional-status",
    )


def test_stored_headers_date_added_or_replaced_when_invalid() -> None:
    """RFC 9110 6.6.1: MUST add a missing Date; MAY replace an invalid one."""
    assert dict(c.stored_headers([("ETag", '"a"')], T0))["Date"] == D0
    kept = c.stored_headers([("Date", "yesterday"), ("X", "1")], T0 + 5)
    assert kept == (("X", "1"), ("Date", http(5)))
    assert c.stored_headers([("Date", LM)], T0) == (("Date", LM),)


def test_proxy_specific_fields_are_never_stored() -> None:
    """RFC 9111 3.1: Proxy-Authenticate, Proxy-Authentication-Info, Proxy-Authorization."""
    lines = [(n, "x") for n in ("Proxy-Authenticate", "Proxy-Authentication-Info", "Proxy-Authorization", "X-Ok")]
    assert [k for k, _ in c.stored_headers(lines, T0)] == ["X-Ok", "Date"]


STORE = [
    # (name, request headers, status, response headers, override, (ok, reason), lifetime)
    ("fresh", {}, 200, {"Cache-Control": "max-age=60"}, None, (True, "explicit"), 60),
    ("default-ttl", {}, 200, {}, None, (True, "default-status"), 300),
    ("stale-no-validator", {}, 200, {"Cache-Control": "max-age=0"}, None, (False, "no-freshness-no-validator"), 0),
    ("stale-with-etag", {}, 200, {"Cache-Control": "max-age=0", "ETag": '"a"'}, None, (True, "explicit"), 0),
    ("stale-with-lm", {}, 200, {"Expires": "0", "Last-Modified": LM}, None, (True, "explicit"), 0),
    (
        "stale-bad-etag",
        {},
        200,
        {"Cache-Control": "no-cache, max-age=0", "ETag": "a"},
        None,
        (False, "no-freshness-no-validator"),
        0,
    ),  # fmt: skip
    ("override-zero", {}, 200, {"ETag": '"a"'}, 0, (True, "default-status"), 0),
    ("override-zero-no-validator", {}, 200, {}, 0, (False, "no-freshness-no-validator"), 0),
    ("no-store-wins-override", {}, 200, {"Cache-Control": "no-store"}, 600, (False, "no-store"), 600),
    ("public-302", {}, 302, {"Cache-Control": "public"}, None, (True, "explicit"), 300),
    ("plain-302", {}, 302, {}, None, (False, "status"), 0),
    ("request-no-store", {"Cache-Control": "no-store"}, 200, {}, None, (False, "request-no-store"), 300),
]


@pytest.mark.parametrize(
    ("req", "status", "resp", "override", "verdict", "lifetime"), [x[1:] for x in STORE], ids=[x[0] for x in STORE]
)
def test_store_decision(
    req: dict[str, str],
    status: int,
    resp: dict[str, str],
    override: float | None,
    verdict: tuple[bool, str],
    lifetime: float,
) -> None:
    got, entry = c.store_decision("GET", req, status, resp, T0 - 1, T0, 300, override, c.DEFAULT_POLICY)
    assert got == verdict
    assert entry == c.make_entry(status, resp, T0 - 1, T0, 300, override)
    assert entry.lifetime == lifetime


def test_store_decision_takes_one_shot_iterables() -> None:
    """Both header arguments are read more than once inside: iterators must work too."""
    got, entry = c.store_decision(
        "GET", iter([("X", "1")]), 200, iter([("Cache-Control", "max-age=5"), ("ETag", '"a"')]), T0, T0, 300
    )
    assert got == (True, "explicit") and entry.lifetime == 5 and ("ETag", '"a"') in entry.headers


# --- freshening from a 304: selection (RFC 9111 4.3.4) -------------------------------------------


def candidates(*specs: tuple[str, list[tuple[str, str]], float]) -> list[tuple[c.Entry, str]]:
    """(handle, header lines, seconds after T0 it was received) -> (entry, handle) pairs."""
    return [(stored(lines, at=T0 + at), name) for name, lines, at in specs]


STRONG = candidates(
    ("a1", [("ETag", '"a"'), ("Date", http(0))], 0),
    ("b", [("ETag", '"b"'), ("Date", http(5))], 5),
    ("a2", [("ETag", '"a"'), ("Date", http(9))], 9),
    ("weak-a", [("ETag", 'W/"a"'), ("Date", http(10))], 10),
)


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        ({"ETag": '"a"'}, ["a1", "a2"]),  # every stored response with that strong ETag
        ({"ETag": '"b"', "Last-Modified": LM}, ["b"]),
        ({"ETag": '"zzz"'}, []),  # none: MUST NOT update anything
        ({"ETag": 'W/"a"'}, ["weak-a"]),  # weak: only the most recent weak match
        ({"ETag": 'W/"b"'}, ["b"]),  # weak comparison matches a stored strong tag
    ],
)
def test_select_by_entity_tag(update: dict[str, str], expected: list[str]) -> None:
    assert cond.select_for_update(update, STRONG) == expected


def test_a_stored_weak_tag_never_matches_a_strong_one() -> None:
    only_weak = candidates(("w", [("ETag", 'W/"x"')], 0))
    assert cond.select_for_update({"ETag": '"x"'}, only_weak) == []
    # the edge weakened it when it re-encoded the body: seen as the edge transformed it, it matches
    assert cond.select_for_update(cond.as_transformed({"ETag": '"x"'}), only_weak) == ["w"]


LM2 = format_http_date(T0 - 3600)
BY_DATE = candidates(
    ("lm-old", [("Last-Modified", LM), ("Date", http(-50))], 0),
    ("lm-new", [("Last-Modified", LM), ("Date", http(-10))], 0),
    ("lm2", [("Last-Modified", LM2), ("Date", http(0))], 0),
    ("etag-and-lm", [("ETag", '"e"'), ("Last-Modified", LM2), ("Date", http(-100))], 0),
)

WEAK = [
    # (name, 304's fields, selected)
    ("last-modified-most-recent", {"Last-Modified": LM}, ["lm-new"]),
    ("last-modified-other", {"Last-Modified": LM2}, ["lm2"]),  # newer than etag-and-lm
    ("last-modified-unknown", {"Last-Modified": format_http_date(T0 - 7)}, []),
    ("weak-etag-and-lm", {"ETag": 'W/"e"', "Last-Modified": LM2}, ["lm2"]),  # lm2 shares LM, no ETag to contradict
    ("weak-etag-conflicts", {"ETag": 'W/"other"', "Last-Modified": LM2}, ["lm2"]),  # etag-and-lm contradicts
    ("weak-etag-only", {"ETag": 'W/"e"'}, ["etag-and-lm"]),
    # Last-Modified matches, but the 304 carries a new strong ETag: it names another representation
    ("lm-matches-new-strong-etag", {"ETag": '"new"', "Last-Modified": LM}, []),
]


@pytest.mark.parametrize(("update", "expected"), [w[1:] for w in WEAK], ids=[w[0] for w in WEAK])
def test_select_by_weak_validators(update: dict[str, str], expected: list[str]) -> None:
    assert cond.select_for_update(update, BY_DATE) == expected


def test_most_recent_ties_go_to_the_later_received() -> None:
    same_date = candidates(
        ("first", [("Last-Modified", LM), ("Date", D0)], 0), ("later", [("Last-Modified", LM), ("Date", D0)], 3)
    )
    assert cond.select_for_update({"Last-Modified": LM}, same_date) == ["later"]


def test_a_304_without_validators_updates_only_a_lone_stored_response_without_any() -> None:
    lone = candidates(("only", [("Date", D0)], 0))
    assert cond.select_for_update({"Date": http(5)}, lone) == ["only"]
    assert cond.select_for_update({}, candidates(("v", [("ETag", '"a"')], 0))) == []
    assert cond.select_for_update({}, candidates(("x", [], 0), ("y", [], 1))) == []
    assert cond.select_for_update({}, []) == []


@pytest.mark.parametrize(
    "update",
    [
        {"ETag": "unquoted"},
        [("ETag", '"a"'), ("ETag", '"b"')],
        {"Last-Modified": "yesterday"},
        [("Last-Modified", LM), ("Last-Modified", LM2)],
    ],
    ids=["malformed-etag", "two-etags", "bad-last-modified", "two-last-modified"],
)
def test_a_validator_that_cannot_be_compared_selects_nothing(update: dict[str, str] | list[tuple[str, str]]) -> None:
    lone = candidates(("only", [("Date", D0)], 0), ("a", [("ETag", '"a"'), ("Last-Modified", LM)], 0))
    assert cond.select_for_update(update, lone[:1]) == []
    assert cond.select_for_update(update, lone) == []


def test_update_candidates_are_the_variants_the_request_could_choose() -> None:
    resp = {"Vary": "Accept-Encoding", "ETag": '"a"'}
    variants = [
        (c.variant_key(resp, {"Accept-Encoding": "gzip"}), stored(resp), "gzip"),
        (c.variant_key(resp, {"Accept-Encoding": "br"}), stored(resp), "br"),
        ((), stored({"ETag": '"a"'}), "no-vary"),
    ]
    got = c.update_candidates({"Accept-Encoding": "br"}, variants)
    assert [h for _, h in got] == ["br", "no-vary"]
    assert cond.select_for_update({"ETag": '"a"'}, got) == ["br", "no-vary"]


_tags = st.sampled_from(['"a"', '"b"', 'W/"a"', 'W/"b"', "bad", None])
_dates = st.sampled_from([LM, LM2, "junk", None])


def _lines(etag: str | None, modified: str | None, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out = list(extra)
    if etag is not None:
        out.append(("ETag", etag))
    if modified is not None:
        out.append(("Last-Modified", modified))
    return out


@given(
    update=st.tuples(_tags, _dates),
    stored_specs=st.lists(st.tuples(_tags, _dates, st.floats(-1000, 1000)), max_size=5),
    noise=st.lists(
        st.tuples(st.sampled_from(["ETag", "Last-Modified", "Date", "X"]), st.text(max_size=20)), max_size=2
    ),
)
def test_selection_never_crosses_a_strong_validator(update, stored_specs, noise) -> None:
    pairs_ = [(stored(_lines(t, m, []), at=T0 + at), i) for i, (t, m, at) in enumerate(stored_specs)]
    got = cond.select_for_update(_lines(update[0], update[1], []), pairs_)
    assert len(set(got)) == len(got) and set(got) <= set(range(len(pairs_)))
    tag = update[0]
    for i in got:
        their = entity_tag(pairs_[i][0].headers)
        if tag is not None and tag.startswith('"'):
            assert their == tag  # strong: the very same strong ETag
        elif tag is not None and their is not None:
            assert cond.weak_match(tag, their)
    if tag is None or tag.startswith("W/") or tag == "bad":
        assert len(got) <= 1  # weak or none: at most the one most recent
    cond.select_for_update(noise, pairs_)  # never raises


# --- freshening from a 304: the update (RFC 9111 3.2) --------------------------------------------


def test_merge_replaces_with_the_304s_fields_except_the_excepted_ones() -> None:
    old = [
        ("Content-Type", "text/plain"),
        ("Content-Encoding", "br"),
        ("Cache-Control", "max-age=60"),
        ("ETag", '"v1"'),
        ("X-Keep", "1"),
        ("Date", D0),
    ]
    update = [
        ("Content-Type", "text/plain; charset=utf-8"),  # updated: nothing we keep depends on it
        ("Content-Encoding", "identity"),  # the stored bytes depend on it
        ("Content-Length", "0"),  # 3.2: never
        ("Content-Range", "bytes 0-0/1"),  # processed, never
        ("Transfer-Encoding", "chunked"),
        ("Connection", "X-Hop"),
        ("X-Hop", "1"),  # named by Connection
        ("Proxy-Authenticate", "Basic"),  # 3.1: never stored
        ("Proxy-Authentication-Info", "x"),
        ("Age", "3"),
        ("Cache-Control", 'max-age=120, private="X-Secret"'),
        ("X-Secret", "s"),  # qualified private: not for a shared cache
        ("ETag", '"v1"'),
        ("Date", http(100)),
        ("X-New", "a"),
        ("X-New", "b"),
    ]
    assert cond.merge_headers(old, update) == [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Encoding", "br"),
        ("Cache-Control", 'max-age=120, private="X-Secret"'),
        ("ETag", '"v1"'),
        ("X-Keep", "1"),
        ("Date", http(100)),
        ("X-New", "a"),
        ("X-New", "b"),
    ]


def test_qualified_private_in_a_304_removes_the_stored_field_too() -> None:
    e = stored([("Cache-Control", "max-age=60"), ("X-User", "alice"), ("Date", D0)])
    fresh = cond.freshen(e, [("Cache-Control", 'max-age=60, private="X-User"'), ("Date", http(1))], T0, T0 + 1, 300)
    assert "x-user" not in {k.lower() for k, _ in fresh.headers}


def test_qualified_no_cache_fields_are_updated_or_removed() -> None:
    """RFC 9111 5.2.2.4: reuse after a successful revalidation "updating or removing those fields"."""
    old = [("Cache-Control", 'no-cache="Set-Cookie, X-Token"'), ("Set-Cookie", "a=1"), ("X-Token", "t1"), ("X", "1")]
    update = [("X-Token", "t2"), ("Date", http(1))]
    assert cond.merge_headers(old, update) == [
        ("Cache-Control", 'no-cache="Set-Cookie, X-Token"'),
        ("X-Token", "t2"),
        ("X", "1"),
        ("Date", http(1)),
    ]
    # named by the 304's own Cache-Control; Cache-Control / Date / framing are never removed
    old = [("Cache-Control", "max-age=5"), ("X-A", "1"), ("Date", D0), ("Content-Encoding", "gzip")]
    update = [("Cache-Control", 'max-age=9, no-cache="X-A, Date, Content-Encoding, Cache-Control"')]
    assert [k for k, _ in cond.merge_headers(old, update)] == ["Cache-Control", "Date", "Content-Encoding"]


def test_a_qualified_no_cache_response_is_stored_but_always_revalidated() -> None:
    e = stored([("Cache-Control", 'max-age=60, no-cache="Set-Cookie"'), ("Set-Cookie", "a=1"), ("Date", D0)])
    assert ("Set-Cookie", "a=1") in e.headers
    assert c.reuse("GET", {}, e, T0 + 1).action == c.Action.REVALIDATE
    assert c.stale_on_error({}, e, T0 + 1, c.Policy(stale_if_error=600)) is None
    assert not Prepared(e, b"x", "v", "m").plain


@pytest.mark.parametrize(
    ("old", "new", "merged"),
    [
        ("Accept-Encoding", "Accept-Encoding", "Accept-Encoding"),
        ("Origin, Accept-Encoding", "Origin", "Origin, Accept-Encoding"),  # never narrowed
        ("Accept-Encoding", "Origin", "Accept-Encoding, Origin"),  # widened: matches fewer requests
        ("Accept-Encoding", "*", "Accept-Encoding, *"),
    ],
)
def test_vary_is_never_narrowed_by_a_304(old: str, new: str, merged: str) -> None:
    assert cond.merge_headers([("Vary", old)], [("Vary", new)]) == [("Vary", merged)]


def test_a_variant_the_edge_compressed_stays_reachable_after_a_304() -> None:
    resp = [("Vary", "Origin"), ("Vary", "Accept-Encoding"), ("ETag", 'W/"x"'), ("Content-Encoding", "br")]
    req = {"Origin": "https://a.example", "Accept-Encoding": "br"}
    key = c.variant_key(resp, req)
    e = stored(resp + [("Cache-Control", "max-age=1")])
    update = cond.as_transformed([("Vary", "Origin"), ("ETag", '"x"'), ("Cache-Control", "max-age=60")])
    assert cond.select_for_update(update, c.update_candidates(req, [(key, e, "v")])) == ["v"]
    fresh = cond.freshen(e, update, T0 + 10, T0 + 10, 300)
    assert c.vary_matches(fresh.headers, key, req)
    assert dict(fresh.headers)["ETag"] == 'W/"x"' and dict(fresh.headers)["Content-Encoding"] == "br"
    assert fresh.lifetime == 60


def test_as_transformed() -> None:
    update = [
        ("ETag", '"x"'),
        ("Repr-Digest", "sha-256=:x:"),
        ("Content-Digest", "sha-256=:y:"),
        ("Digest", "md5=z"),
        ("Content-MD5", "q"),
        ("Content-Encoding", "identity"),
        ("Content-Length", "9"),
        ("Cache-Control", "max-age=9"),
    ]
    assert cond.as_transformed(update) == [("ETag", 'W/"x"'), ("Cache-Control", "max-age=9")]
    assert cond.as_transformed([("ETag", 'W/"x"')]) == [("ETag", 'W/"x"')]
    assert cond.as_transformed([("ETag", "bad")]) == [("ETag", "bad")]  # still selects nothing


def test_a_304_that_forbids_storing_is_seen_by_storable() -> None:
    e = stored({"Cache-Control": "max-age=60", "ETag": '"a"', "Date": D0})
    for cc, reason in (("no-store", "no-store"), ("private", "private")):
        fresh = cond.freshen(e, {"Cache-Control": cc, "ETag": '"a"'}, T0 + 5, T0 + 5, 300)
        assert c.storable("GET", {}, fresh.status, fresh.headers) == (False, reason)


def test_freshen_counts_the_304s_age_list() -> None:
    e = stored({"Cache-Control": "max-age=60", "ETag": '"a"', "Date": D0})
    fresh = cond.freshen(e, [("ETag", '"a"'), ("Date", http(100)), ("Age", "50, 1")], T0 + 100, T0 + 100, 300)
    assert fresh.initial_age == 50 and c.ttl(fresh, T0 + 100) == 10


# --- client conditionals (RFC 9110 13, RFC 9111 4.3.2) -------------------------------------------

STORED = {"ETag": '"v1"', "Last-Modified": LM, "Date": D0}


def test_origin_preconditions() -> None:
    assert cond.origin_preconditions({"If-Match": '"v1"'}) == ("if-match",)
    assert cond.origin_preconditions({"If-Unmodified-Since": D0, "If-Match": "*"}) == (
        "if-match",
        "if-unmodified-since",
    )
    assert cond.origin_preconditions({"If-None-Match": '"v1"', "If-Match": " "}) == ()


def test_a_list_of_dates_in_if_modified_since_is_ignored() -> None:
    """RFC 9110 13.1.3 / 13.1.4: MUST ignore a value with more than one member / a list."""
    one = [("If-Modified-Since", D0)]
    two = [("If-Modified-Since", D0), ("If-Modified-Since", D0)]
    assert cond.precondition("GET", one, 200, STORED, T0) == (304, "if-modified-since")
    assert cond.precondition("GET", two, 200, STORED, T0) == (None, "none")
    ius = [("If-Unmodified-Since", http(-7 * 86400)), ("If-Unmodified-Since", http(-7 * 86400))]
    assert cond.precondition("GET", ius, 200, STORED, T0) == (None, "none")


# --- the plain hit's framing (RFC 9110 6.4.1, 8.6, 15.3.6) -------------------------------------


def prepared(status: int, body: bytes) -> Prepared:
    e = c.Entry(status, (("Date", D0), ("Content-Length", "7")), T0, T0, 0.0, 60.0, "max-age")
    return Prepared(e, body, "1.1 e1 (akacdn)", "e1")


@pytest.mark.parametrize("status", [100, 103, 204, 304])
def test_no_content_length_nor_body_for_1xx_204_304(status: int) -> None:
    p = prepared(status, b"should not be sent")
    assert b"content-length" not in p.head.lower()
    assert p.body == b""
    assert p.head.startswith(b"HTTP/1.1 %d " % status)


def test_a_stored_204_is_served_with_exactly_these_bytes() -> None:
    p = prepared(204, b"")
    assert p.current(T0 + 1)
    assert p.head + p.tail + p.body == (
        b"HTTP/1.1 204 No Content\r\n"
        b"Date: " + D0.encode() + b"\r\n"
        b"Via: 1.1 e1 (akacdn)\r\nX-Served-By: e1\r\nX-Cache: HIT\r\n"
        b"Age: 1\r\nCache-Status: akacdn; hit; ttl=59\r\n\r\n"
    )


def test_205_has_a_zero_content_length_and_200_its_own() -> None:
    assert b"Content-Length: 0\r\n" in prepared(205, b"junk").head and prepared(205, b"junk").body == b""
    p = prepared(200, b"abcd")
    assert b"Content-Length: 4\r\n" in p.head and p.body == b"abcd" and b": 7\r\n" not in p.head


def test_a_stored_field_with_a_line_break_never_splits_the_head() -> None:
    e = c.Entry(200, (("X-Bad", "a\r\nSet-Cookie: x=1"), ("X-Ok", "é")), T0, T0, 0.0, 60.0, "max-age")
    p = Prepared(e, b"", "v", "m")
    assert b"Set-Cookie" not in p.head and b"X-Ok: \xe9\r\n" in p.head


# --- hostile input ------------------------------------------------------------------------------

_names = st.sampled_from(
    ["Cache-Control", "ETag", "Last-Modified", "Date", "Age", "Expires", "Vary", "Connection", "X", "If-Match"]
)


@given(
    old=st.lists(st.tuples(_names, st.text(max_size=30)), max_size=6),
    update=st.lists(st.tuples(_names, st.text(max_size=30)), max_size=6),
    status=st.sampled_from([200, 204, 206, 302, 404, 412, 500]),
)
def test_new_functions_never_raise(old: list[tuple[str, str]], update: list[tuple[str, str]], status: int) -> None:
    verdict, e = c.store_decision("GET", update, status, old, T0, T0, 300, None, c.DEFAULT_POLICY)
    assert e.lifetime >= 0 and e.initial_age >= 0
    assert verdict.ok in (True, False)
    cond.merge_headers(old, update)
    cond.as_transformed(update)
    fresh = cond.freshen(e, update, T0 + 1, T0 + 1, 300)
    assert fresh.initial_age >= 0 and fresh.lifetime >= 0
    cond.select_for_update(update, [(e, 0), (fresh, 1)])
    c.update_candidates(update, [(c.variant_key(old, update), e, 0)])
    cond.origin_preconditions(update)
    cond.precondition("GET", update, 200, e.headers, T0)
    Prepared(e, b"x", "v", "m")


@given(st.text(max_size=60))
def test_parse_http_date_never_raises(value: str) -> None:
    got = parse_http_date(value, T0)
    assert got is None or isinstance(got, float)


def test_huge_ranges_never_raise() -> None:
    plan = cond.byte_range("GET", {"Range": "bytes=" + "9" * 5000 + "-"}, 200, {}, 10)
    assert plan.status == 416
    plan = cond.byte_range("GET", {"Range": "bytes=0-" + "9" * 5000}, 200, {}, 10)
    assert (plan.status, plan.start, plan.stop) == (206, 0, 10)
    assert cond.byte_range("GET", {"Range": "bytes=-" + "9" * 5000}, 200, {}, 10).status == 206
