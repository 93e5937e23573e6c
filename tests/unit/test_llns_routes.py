"""The LLNS looks its client's route up in the low map and decides nothing global: the
first serving region of the route, the weighted pick while a move ramps (stable per
/24), the map's default order for clients no route covers, ECS subnets folded onto the
longest prefix."""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest

from akacdn.config import Network
from akacdn.dns.ecs import ClientSubnet
from akacdn.dns.lowlevel import LowLevelZone
from akacdn.dns.wire import Client
from akacdn.mapping.maps import ClientRoute, LowMap, RegionServers, Route, Server

A, B = "198.51.100.0/24", "198.51.0.0/16"


def _regions(serving: dict[str, bool]) -> tuple[RegionServers, ...]:
    return tuple(
        RegionServers(r, tuple(Server(f"{r}-e{i}", r, f"10.0.{n}.{i}", 100) for i in (1, 2)), ok)
        for n, (r, ok) in enumerate(sorted(serving.items()), 1)
    )


def _low(routes: tuple[Route, ...], serving: dict[str, bool] | None = None, defaults: dict | None = None) -> LowMap:
    serving = serving or {"r1": True, "r2": True, "r3": True}
    return LowMap((1, 1), 0.0, _regions(serving), (), (), routes, defaults if defaults is not None else {})


def _zone(net: Network, low: LowMap, region: str = "r1") -> LowLevelZone:
    z = LowLevelZone(net, region)
    z.use_map(low)
    return z


def _ecs(prefix: str) -> Client:
    n = ipaddress.ip_network(prefix)
    raw = n.network_address.packed[: (n.prefixlen + 7) // 8]
    return Client("192.0.2.53", ClientSubnet(1 if n.version == 4 else 2, n.prefixlen, raw))


def test_the_first_serving_region_of_the_longest_prefix_answers(net: Network) -> None:
    z = _zone(net, _low((Route(A, ("r2", "r3")), Route(B, ("r3", "r1")))))
    assert z.region_for(Client("198.51.100.7", None)) == ("r2", True)
    assert z.region_for(Client("198.51.7.7", None)) == ("r3", True)
    assert z.region_for(_ecs("198.51.100.0/24")) == ("r2", True)  # the client subnet, not the resolver
    assert z.region_for(_ecs("198.51.3.0/24")) == ("r3", True)


def test_a_region_that_does_not_serve_is_skipped(net: Network) -> None:
    z = _zone(net, _low((Route(A, ("r2", "r3")),), {"r1": True, "r2": False, "r3": True}))
    assert z.region_for(Client("198.51.100.7", None))[0] == "r3"
    servers, _ = z.servers_for(123, Client("198.51.100.7", None))
    assert {s.region for s in servers} == {"r3"}


def test_clients_no_route_covers_get_the_maps_default_order_for_this_region(net: Network) -> None:
    low = _low((Route(A, ("r2",)),), {"r1": False, "r2": True, "r3": True}, {"r1": ("r1", "r3", "r2")})
    assert _zone(net, low, "r1").region_for(Client("203.0.113.9", None)) == ("r3", True)
    assert _zone(net, low, "r2").region_for(Client("203.0.113.9", None)) == ("r2", True)  # no default: its own


def test_without_routes_the_answer_does_not_depend_on_the_client(net: Network) -> None:
    low = _low((), defaults={"r2": ("r2", "r1")})
    assert _zone(net, low, "r2").region_for(Client("203.0.113.9", None)) == ("r2", False)


def test_nothing_serving_falls_back_to_any_live_edge(net: Network) -> None:
    z = _zone(net, _low((Route(A, ("r2",)),), {"r1": False, "r2": False, "r3": False}))
    region, _ = z.region_for(Client("198.51.100.7", None))
    servers, _ = z.servers_for(123, Client("198.51.100.7", None))
    assert region in ("r1", "r2", "r3") and servers


def test_an_older_centers_client_routes_still_answer(net: Network) -> None:
    low = LowMap((1, 1), 0.0, _regions({"r1": True, "r2": True}), (ClientRoute(A, "r2"),))
    assert _zone(net, low).region_for(Client("198.51.100.7", None))[0] == "r2"


@pytest.mark.parametrize("share", [0.25, 0.5, 0.75])
def test_a_ramping_route_splits_its_clients_by_weight_and_each_keeps_its_region(net: Network, share: float) -> None:
    z = _zone(net, _low((Route("10.0.0.0/8", ("r2", "r1", "r3"), (share, 1 - share, 0.0)),)))
    picks = Counter()
    for i in range(4000):
        c = Client(f"10.{i // 256}.{i % 256}.9", None)
        region, _ = z.region_for(c)
        assert region in ("r1", "r2")
        assert z.region_for(Client(f"10.{i // 256}.{i % 256}.200", None))[0] == region  # same /24, same region
        picks[region] += 1
    assert picks["r2"] / 4000 == pytest.approx(share, abs=0.05)


def test_a_ramping_routes_weight_on_a_region_that_stopped_serving_goes_to_the_rest(net: Network) -> None:
    low = _low((Route("10.0.0.0/8", ("r2", "r1"), (0.5, 0.5)),), {"r1": True, "r2": False, "r3": True})
    z = _zone(net, low)
    assert {z.region_for(Client(f"10.0.{i}.1", None))[0] for i in range(256)} == {"r1"}
