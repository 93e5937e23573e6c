"""The center's steering: live set and measurements in, the routes the maps carry out."""

from __future__ import annotations

import math

import msgspec

from akacdn.config import Network
from akacdn.mapping.builder import build
from akacdn.mapping.messages import Heartbeat, ProbeReport, ProbeResult
from akacdn.mapping.steering import Steering

NET = "198.18.9.0/24"


def _net(net: Network, max_rps: dict[str, float] | None = None) -> Network:
    """The devnet plus a probed client network with no static region."""
    from akacdn.config import ClientNetwork

    nets = (*net.client_networks, ClientNetwork(NET, probes=["198.18.9.1"]))
    machines = tuple(
        msgspec.structs.replace(m, max_rps=(max_rps or {}).get(m.region, 0.0)) if m.role == "edge" else m
        for m in net.machines
    )
    return msgspec.structs.replace(net, client_networks=nets, machines=machines)


def _live(net: Network, load: dict[str, float] | None = None) -> dict[str, Heartbeat]:
    return {m.id: Heartbeat(m.id, m.role, m.region, True, (load or {}).get(m.region, 0.0)) for m in net.machines}


def _probe(s: Steering, net: Network, rtts: dict[str, float], now: float) -> None:
    for region, rtt in rtts.items():
        edge = next(m.id for m in net.by_role("edge") if m.region == region)
        assert s.measurements.probed(edge, ProbeReport(edge, region, 0.0, (ProbeResult(NET, 2, 0, rtt),)), now) is None


def test_regions_sum_live_edges_and_unmanaged_ones_are_unlimited(net: Network) -> None:
    n = _net(net, {"r1": 100.0})
    s = Steering(n)
    regions = {r.id: r for r in s.regions(_live(n, {"r1": 10.0, "r2": 5.0}), out=())}
    assert regions["r1"].capacity == 300.0 and regions["r1"].load == 30.0 and regions["r1"].serving
    assert regions["r2"].capacity == math.inf and regions["r2"].load == 15.0
    one_left = {k: v for k, v in _live(n).items() if k not in ("r3-e1", "r3-e2")}
    assert not {r.id: r for r in s.regions(one_left, out=())}["r3"].serving


def test_the_measured_best_region_leads_the_route_in_the_low_map(net: Network) -> None:
    n = _net(net)
    s = Steering(n)
    _probe(s, n, {"r1": 80.0, "r2": 20.0, "r3": 50.0}, 0.0)
    live = _live(n)
    assert s.due(0.0)
    alloc = s.assign(0.0, live, ())
    assert not s.due(0.0) and s.due(n.mapping.assign_interval)
    assert any(m.prefix == NET and m.dst == "r2" for m in alloc.moves)
    top, lows = build(n, live, 0.0, (), (), s.routes, s.defaults(live, ()))
    route = next(r for r in lows[0].routes if r.prefix == NET)
    assert route.regions[:3] == ("r2", "r3", "r1")
    assert top is not None and any(c.prefix == NET and c.region == "r2" for c in top.clients)
    assert lows[0].defaults["r1"][0] == "r1"


def test_measured_demand_counts_and_unseen_networks_have_none(net: Network) -> None:
    n = _net(net, {"r1": 10.0, "r2": 10.0, "r3": 10.0})  # 30 a region, 25.5 assignable (0.85)
    s, cycle = Steering(n), n.mapping.assign_interval
    edge = next(m.id for m in n.by_role("edge") if m.region == "r1")
    _probe(s, n, {"r1": 10.0, "r2": 40.0, "r3": 60.0}, 0.0)
    s.assign(0.0, _live(n), ())
    assert s.allocator.current()[NET] == "r1"
    # 40 req/s from the network at r1: over r1's target, but it fits nowhere else either: it stays
    _probe(s, n, {"r1": 10.0, "r2": 40.0, "r3": 60.0}, cycle)
    s.measurements.demanded(edge, {NET: 20}, 0.5, cycle)
    assert s.assign(cycle, _live(n, {"r1": 40 / 3}), ()).moves == ()
    # 20 req/s of the network's and 10 more at r1: r1 is over, the network fits r2 (and the
    # devnet's own networks, measured at none, have no demand: nothing else moves)
    _probe(s, n, {"r1": 10.0, "r2": 40.0, "r3": 60.0}, 2 * cycle)
    s.measurements.demanded(edge, {NET: 10}, 0.5, 2 * cycle)
    alloc = s.assign(2 * cycle, _live(n, {"r1": 30 / 3}), ())
    assert [(m.prefix, m.dst, m.why) for m in alloc.moves] == [(NET, "r2", "shed")]
