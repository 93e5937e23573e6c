"""Purges: URL keys, selectors by URL/customer/serial, ids applied once."""

from __future__ import annotations

import pytest

from akacdn.config import Network
from akacdn.edge.customers import CustomerIndex
from akacdn.edge.purge import Purge, PurgeError, Seen, selector, url_key


def test_url_key_matches_what_the_edge_stores(net: Network) -> None:
    idx = CustomerIndex(net)
    assert url_key("http://www.demo.example/img/a.png?v=2", idx.for_host) == ("demo", "/img/a.png?v=2")
    assert url_key("http://a123.g.akacdn.test:80", idx.for_host) == ("demo", "/")
    for bad in ("/img/a.png", "ftp://www.demo.example/x", "http://evil.example/x"):
        with pytest.raises(PurgeError):
            url_key(bad, idx.for_host)


@pytest.mark.parametrize(
    ("kind", "values", "hits", "misses"),
    [
        ("url", ["http://www.demo.example/a"], [("demo", "/a")], [("demo", "/b"), ("other", "/a")]),
        ("customer", ["demo"], [("demo", "/a"), ("demo", "/b")], [("other", "/a")]),
        ("serial", ["123"], [("demo", "/x")], [("other", "/x")]),
    ],
)
def test_selectors(net: Network, kind: str, values: list[str], hits: list, misses: list) -> None:  # type: ignore[type-arg]
    match = selector(Purge("1", kind, values), list(net.customers), CustomerIndex(net).for_host)  # type: ignore[arg-type]
    assert all(match(k) for k in hits) and not any(match(k) for k in misses)


@pytest.mark.parametrize(("kind", "values"), [("customer", ["ghost"]), ("serial", ["999"]), ("serial", ["x"])])
def test_selectors_refuse_what_names_nothing(net: Network, kind: str, values: list[str]) -> None:
    with pytest.raises(PurgeError):
        selector(Purge("1", kind, values), list(net.customers), CustomerIndex(net).for_host)  # type: ignore[arg-type]


def test_each_purge_id_applies_once_and_memory_is_bounded() -> None:
    seen = Seen()
    assert seen.first_time("a") and not seen.first_time("a")
    for i in range(5000):
        seen.first_time(str(i))
    assert seen.first_time("a")  # long forgotten
