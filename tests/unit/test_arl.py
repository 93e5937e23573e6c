"""ARLs: parse what edges receive, build what akamaize writes, and the two agree."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from akacdn.edge import arl
from akacdn.edge.arl import ARL, ARLError

GOOD = [
    # (target, expected ARL)
    ("/7/123/12h/www.demo.example/img/a.gif", ARL(7, 123, 43200, "www.demo.example", "/img/a.gif")),
    ("/7/123/30s/www.demo.example/a.gif", ARL(7, 123, 30, "www.demo.example", "/a.gif")),
    ("/7/123/5m/www.demo.example/a.gif", ARL(7, 123, 300, "www.demo.example", "/a.gif")),
    ("/7/123/7d/www.demo.example/a.gif", ARL(7, 123, 604800, "www.demo.example", "/a.gif")),
    ("/7/123/90/www.demo.example/a.gif", ARL(7, 123, 90, "www.demo.example", "/a.gif")),
    ("/7/123/0/www.demo.example/a.gif", ARL(7, 123, 0, "www.demo.example", "/a.gif")),
    ("/1/999999/365d/h.example/a", ARL(1, 999999, 31536000, "h.example", "/a")),
    ("/7/1/1d/WWW.Demo.Example./a.gif", ARL(7, 1, 86400, "www.demo.example", "/a.gif")),
    ("/7/1/1d/localhost/a.gif", ARL(7, 1, 86400, "localhost", "/a.gif")),
    ("/7/1/1d/h.example", ARL(7, 1, 86400, "h.example", "/")),
    ("/7/1/1d/h.example/", ARL(7, 1, 86400, "h.example", "/")),
    ("/7/1/1d/h.example/a.gif?v=2&x=y", ARL(7, 1, 86400, "h.example", "/a.gif", "v=2&x=y")),
    ("/7/1/1d/h.example/a.gif?", ARL(7, 1, 86400, "h.example", "/a.gif", "")),
    ("/7/1/1d/h.example/a.gif?x=?/", ARL(7, 1, 86400, "h.example", "/a.gif", "x=?/")),
    ("/7/1/1d/h.example/a/./b/../c.gif", ARL(7, 1, 86400, "h.example", "/a/c.gif")),
    ("/7/1/1d/h.example/a/%2e%2E/c.gif", ARL(7, 1, 86400, "h.example", "/c.gif")),
    ("/7/1/1d/h.example/a/b/..", ARL(7, 1, 86400, "h.example", "/a/")),
    ("/7/1/1d/h.example/a//b%20c.gif", ARL(7, 1, 86400, "h.example", "/a//b%20c.gif")),
    ("/7/1/1d/h.example/~u/a;b=c,d:e@f!$'()*+", ARL(7, 1, 86400, "h.example", "/~u/a;b=c,d:e@f!$'()*+")),
]

BAD = [
    # (target, fragment of the error message)
    ("", "not an ARL"),
    ("img/a.gif", "not an ARL"),
    ("/7/123/12h", "not an ARL"),
    ("/img/a.gif", "not an ARL"),
    ("/x/123/12h/h.example/a", "ARL type"),
    ("/07/123/12h/h.example/a", "ARL type"),
    ("/100/123/12h/h.example/a", "ARL type"),
    ("/0/123/12h/h.example/a", "ARL type"),
    ("/7/0123/12h/h.example/a", "serial"),
    ("/7/0/12h/h.example/a", "serial"),
    ("/7/1234567/12h/h.example/a", "serial"),
    ("/7/12a/12h/h.example/a", "serial"),
    ("/7/-1/12h/h.example/a", "serial"),
    ("/7/123/12x/h.example/a", "TTL"),
    ("/7/123/h/h.example/a", "TTL"),
    ("/7/123/012h/h.example/a", "TTL"),
    ("/7/123/366d/h.example/a", "out of range"),
    ("/7/123/12H/h.example/a", "TTL"),
    ("/7/123/12h//a", "no origin host"),
    ("/7/123/12h/h_x.example/a", "not a hostname"),
    ("/7/123/12h/-h.example/a", "not a hostname"),
    ("/7/123/12h/h.example:8080/a", "not a hostname"),
    ("/7/123/12h/127.0.0.1/a", "not a hostname"),
    ("/7/123/12h/user@h.example/a", "not a hostname"),
    ("/7/123/12h/" + "a" * 64 + ".example/a", "not a hostname"),
    ("/7/123/12h/h.example/../a", "climbs above"),
    ("/7/123/12h/h.example/a/../../b", "climbs above"),
    ("/7/123/12h/h.example/%2e%2e/b", "climbs above"),
    ("/7/123/12h/h.example/a b", "printable ASCII"),
    ("/7/123/12h/h.example/\u00e9", "printable ASCII"),
    ("/7/123/12h/h.example/a\r\nX: y", "printable ASCII"),
    ("/7/123/12h/h.example/a#f", "fragment"),
    ("/7/123/12h/h.example/a<b>", "percent-encoded"),
    ("/7/123/12h/h.example/a\\b", "percent-encoded"),
    ("/7/123/12h/h.example/a%zz", "percent escape"),
    ("/7/123/12h/h.example/a%4", "percent escape"),
    ("/7/123/12h/h.example/a?x=%g1", "percent escape"),
    ('/7/123/12h/h.example/a?x="', "percent-encoded"),
    ("/7/123/12h/h.example/" + "a" * 9000, "too long"),
]


@pytest.mark.parametrize(("target", "want"), GOOD, ids=[t for t, _ in GOOD])
def test_parse(target: str, want: ARL) -> None:
    assert arl.parse(target) == want
    assert arl.is_arl(target)


@pytest.mark.parametrize(("target", "fragment"), BAD, ids=[t[:60] for t, _ in BAD])
def test_parse_refuses(target: str, fragment: str) -> None:
    with pytest.raises(ARLError, match=None) as e:
        arl.parse(target)
    assert fragment in str(e.value)


def test_target_and_to_path() -> None:
    a = arl.parse("/7/123/720m/www.demo.example/img/a.gif?v=2")
    assert a.target == "/img/a.gif?v=2"
    assert a.to_path() == "/7/123/12h/www.demo.example/img/a.gif?v=2"  # TTL in canonical form
    assert arl.parse("/7/1/1d/h.example/a").target == "/a"


@pytest.mark.parametrize(
    ("text", "seconds", "canonical"),
    [
        ("0", 0, "0s"),
        ("30s", 30, "30s"),
        ("90", 90, "90s"),
        ("120", 120, "2m"),
        ("5m", 300, "5m"),
        ("60m", 3600, "1h"),
        ("12h", 43200, "12h"),
        ("36h", 129600, "36h"),
        ("1d", 86400, "1d"),
        ("365d", 31536000, "365d"),
        (86400, 86400, "1d"),
    ],
)
def test_ttl(text: str | int, seconds: int, canonical: str) -> None:
    assert arl.parse_ttl(text) == seconds
    assert arl.format_ttl(seconds) == canonical


@pytest.mark.parametrize("text", ["", "1w", "-1", "1.5h", "1 h", "h", "01", "366d", "31536001", True, -5])
def test_ttl_refused(text: str | int) -> None:
    with pytest.raises(ARLError):
        arl.parse_ttl(text)


@pytest.mark.parametrize(
    ("args", "want"),
    [
        ((123, "12h", "www.demo.example", "/img/a.gif"), "/7/123/12h/www.demo.example/img/a.gif"),
        ((123, 43200, "WWW.DEMO.EXAMPLE.", "/img/a.gif"), "/7/123/12h/www.demo.example/img/a.gif"),
        ((1, "1d", "h.example", "/a b/\u00e9.gif"), "/7/1/1d/h.example/a%20b/%C3%A9.gif"),
        ((1, "1d", "h.example", "/a/./b/../c?x=1&y=a b"), "/7/1/1d/h.example/a/c?x=1&y=a%20b"),
        ((1, "1d", "h.example", "/100%/x%41"), "/7/1/1d/h.example/100%25/x%41"),
        ((1, "1d", "h.example", '/<"{|}>'), "/7/1/1d/h.example/%3C%22%7B%7C%7D%3E"),
        ((1, "1d", "h.example", "/a\udce9"), "/7/1/1d/h.example/a%E9"),  # surrogateescape'd byte
        ((1, "1d", "h.example", "/"), "/7/1/1d/h.example/"),
    ],
)
def test_build(args: tuple[int, str | int, str, str], want: str) -> None:
    assert arl.build(*args) == want
    assert arl.parse(want).to_path() == want


def test_build_type_and_url() -> None:
    assert arl.build(5, "1h", "h.example", "/a", type=9) == "/9/5/1h/h.example/a"
    assert (
        arl.url(123, "12h", "www.demo.example", "/img/a.gif", "akacdn.test")
        == "http://a123.g.akacdn.test/7/123/12h/www.demo.example/img/a.gif"
    )


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        ((0, "1d", "h.example", "/a"), {}, "serial"),
        ((1000000, "1d", "h.example", "/a"), {}, "serial"),
        ((1, "1d", "h.example", "/a"), {"type": 0}, "ARL type"),
        ((1, "1d", "h.example", "/a"), {"type": 100}, "ARL type"),
        ((1, "1y", "h.example", "/a"), {}, "TTL"),
        ((1, "1d", "h.example:80", "/a"), {}, "not a hostname"),
        ((1, "1d", "h.example", "a"), {}, "does not start with '/'"),
        ((1, "1d", "h.example", "/../a"), {}, "climbs above"),
        ((1, "1d", "h.example", "/a#b"), {}, "fragment"),
    ],
)
def test_build_refuses(args: tuple[int, str, str, str], kwargs: dict[str, int], fragment: str) -> None:
    with pytest.raises(ARLError) as e:
        arl.build(*args, **kwargs)
    assert fragment in str(e.value)


def test_is_arl() -> None:
    assert arl.is_arl("/7/123/12h/h.example/a")
    assert not arl.is_arl("/img/7/123/a")
    assert not arl.is_arl("/7/a/b")


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_hosts = st.lists(_label, min_size=1, max_size=4).map(".".join).filter(lambda h: not h.split(".")[-1].isdigit())
_paths = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="#"), max_size=40).map(
    lambda p: "/" + p
)


@given(
    serial=st.integers(1, arl.MAX_SERIAL),
    ttl=st.integers(0, arl.MAX_TTL),
    host=_hosts,
    path=_paths,
    typ=st.integers(1, arl.MAX_TYPE),
)
def test_round_trip(serial: int, ttl: int, host: str, path: str, typ: int) -> None:
    try:
        built = arl.build(serial, ttl, host, path, type=typ)
    except ARLError as e:
        assert "climbs above" in str(e)  # the only refusal for these inputs
        return
    got = arl.parse(built)
    assert (got.type, got.serial, got.ttl, got.origin_host) == (typ, serial, ttl, host)
    assert got.to_path() == built
    assert arl.parse(got.to_path()) == got
    if "?" not in path and "%" not in path and "." not in path:
        assert got.path == arl.quote_target(path)


@given(st.text(max_size=200))
def test_parse_only_raises_arlerror(target: str) -> None:
    try:
        a = arl.parse(target)
    except ARLError:
        return
    assert arl.parse(a.to_path()) == a
