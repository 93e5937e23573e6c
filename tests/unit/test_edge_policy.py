"""Edge cores: header fields (Cache-Control lines, end-to-end headers), storability of split
Cache-Control lines, the memory store, customer lookup."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from akacdn.config import Network
from akacdn.edge.customers import CustomerIndex
from akacdn.edge.fields import cache_control, end_to_end
from akacdn.edge.rfc9111 import make_entry, storable
from akacdn.edge.store import MemoryStore, Variant, size

# --- field parsing ----------------------------------------------------------------------------


def test_cache_control_parse() -> None:
    assert cache_control(' Max-Age=60 ,no-cache, ext="a b",, ') == {"max-age": "60", "no-cache": "", "ext": "a b"}


def test_storable_with_case_insensitive_headers() -> None:
    assert not storable("GET", [], 200, CIMultiDict({"cache-control": "no-store"})).ok


REPEATED = {
    # an origin may split Cache-Control over several field lines (RFC 9110 5.3: they are one list)
    "multidict-private-last": CIMultiDict([("Cache-Control", "max-age=600"), ("Cache-Control", "private")]),
    # the edge hands the core the origin's header lines as end_to_end leaves them
    "as-edge-passes-private-first": end_to_end(
        CIMultiDict([("Cache-Control", "private"), ("Cache-Control", "max-age=600")])
    ),
}


@pytest.mark.parametrize("headers", REPEATED.values(), ids=REPEATED.keys())
def test_storable_reads_every_cache_control_line(headers: dict[str, str]) -> None:
    assert not storable("GET", [], 200, headers).ok


def test_storable_repeated_lines_no_store_first() -> None:
    both = CIMultiDict([("Cache-Control", "no-store"), ("Cache-Control", "max-age=600")])
    assert not storable("GET", [], 200, both).ok


# --- end-to-end headers ----------------------------------------------------------------------


def test_end_to_end_strips_hop_by_hop_headers() -> None:
    headers = CIMultiDict(
        [
            ("Content-Type", "text/html"),
            ("Connection", "keep-alive"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "12"),
            ("TE", "trailers"),
            ("Trailer", "X-Sum"),
            ("Upgrade", "h2c"),
            ("Proxy-Authenticate", "Basic"),
            ("Proxy-Authorization", "Basic eA=="),
            ("Proxy-Connection", "close"),
            ("ETag", '"abc"'),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        ]
    )
    assert end_to_end(headers) == [
        ("Content-Type", "text/html"),
        ("ETag", '"abc"'),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]


def test_end_to_end_strips_headers_named_by_connection() -> None:
    headers = CIMultiDict(
        [
            ("Connection", "close, X-Private-Token , x-debug"),
            ("X-Private-Token", "s3cret"),
            ("X-Debug", "1"),
            ("X-Kept", "yes"),
        ]
    )
    assert end_to_end(headers) == [("X-Kept", "yes")]


def test_end_to_end_reads_every_connection_line() -> None:
    headers = CIMultiDict([("Connection", "keep-alive"), ("Connection", "X-Secret"), ("X-Secret", "1"), ("A", "b")])
    assert end_to_end(headers) == [("A", "b")]


def test_end_to_end_without_connection_header_keeps_everything_else() -> None:
    assert end_to_end({"Date": "x", "Age": "3"}) == [("Date", "x"), ("Age", "3")]


# --- memory store ----------------------------------------------------------------------------


def obj(n: int, ttl: int = 60, at: float = 0.0) -> list[Variant]:
    entry = make_entry(200, [("Content-Type", "text/plain")], at, at, ttl)
    return [Variant(None, entry, b"x" * n)]


def key(path: str) -> tuple[str, str]:
    return ("demo", path)


def test_store_get_put_and_size_accounting() -> None:
    s = MemoryStore(budget=100, max_object=50)
    assert s.get(key("/a")) is None
    assert s.put(key("/a"), obj(30))
    assert s.get(key("/a")) == obj(30)
    assert s.put(key("/a"), obj(10))  # replace: the old size is given back
    assert (s.used, len(s)) == (10, 1)
    s.delete(key("/a"))
    s.delete(key("/nope"))
    assert (s.used, len(s)) == (0, 0)


def test_store_evicts_least_recently_used_under_budget() -> None:
    s = MemoryStore(budget=100, max_object=50)
    for p in ("/a", "/b", "/c"):
        assert s.put(key(p), obj(30))
    assert s.get(key("/a")) is not None  # /a is now the most recently used
    assert s.put(key("/d"), obj(30))  # 120 > 100: /b goes first
    assert s.get(key("/b")) is None
    assert [s.get(key(p)) is not None for p in ("/a", "/c", "/d")] == [True, True, True]
    assert s.used == 90 <= s.budget
    # recency is now /a, /c, /d (the gets above); 140 > 100 evicts /a, then /c
    assert s.put(key("/e"), obj(50))
    assert [p for p in ("/a", "/c", "/d", "/e") if s.get(key(p)) is not None] == ["/d", "/e"]
    assert s.used == 80


def test_store_eviction_order_follows_use() -> None:
    s = MemoryStore(budget=3, max_object=1)
    for p in ("/1", "/2", "/3"):
        s.put(key(p), obj(1))
    s.get(key("/1"))
    s.get(key("/2"))
    s.put(key("/4"), obj(1))
    assert s.get(key("/3")) is None
    s.put(key("/5"), obj(1))
    assert s.get(key("/1")) is None
    assert all(s.get(key(p)) is not None for p in ("/2", "/4", "/5"))


def test_store_refuses_objects_over_max_size() -> None:
    s = MemoryStore(budget=1000, max_object=50)
    assert s.put(key("/small"), obj(50))
    assert not s.put(key("/big"), obj(51))
    assert s.get(key("/big")) is None
    assert (s.used, len(s)) == (50, 1)  # nothing was evicted for it


def test_store_stays_within_budget_over_many_puts() -> None:
    s = MemoryStore(budget=1000, max_object=300)
    for i in range(200):
        assert s.put(key(f"/{i % 37}"), obj((i * 53) % 301))
        assert s.used <= s.budget
        assert s.used == sum(size(s.get(k)) for k in list(s._objects))  # type: ignore[arg-type]


# --- customer index --------------------------------------------------------------------------

CUSTOMER_HOSTS = [
    ("www.demo.example", "demo"),
    ("WWW.Demo.Example", "demo"),
    ("www.demo.example.", "demo"),
    ("www.demo.example:8080", "demo"),
    ("www.demo.example.:80", "demo"),
    ("  www.demo.example  ", "demo"),
    ("a123.g.akacdn.test", "demo"),
    ("A123.G.AKACDN.TEST:80", "demo"),
    ("a123.g.akacdn.test.", "demo"),
    ("a124.g.akacdn.test", None),
    ("a0123.g.akacdn.test", None),
    ("demo.example", None),
    ("evil.www.demo.example", None),
    ("www.demo.example.evil", None),
    ("127.0.1.11", None),
    ("127.0.1.11:80", None),
    ("[::1]", None),
    ("[::1]:80", None),
    ("[2001:db8::1]:8080", None),
    ("", None),
    (None, None),
]


@pytest.mark.parametrize(("host", "customer"), CUSTOMER_HOSTS)
def test_customer_for_host(net: Network, host: str | None, customer: str | None) -> None:
    got = CustomerIndex(net).for_host(host)
    assert (got.name if got else None) == customer
    if got:
        assert got.serial == 123 and got.origin == "http://127.0.40.1:80"
