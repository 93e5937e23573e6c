"""The mapping center's measurements: probe rounds and demand, believed only from the
edges they are about, averaged, and forgotten when stale."""

from __future__ import annotations

import msgspec
import pytest

from akacdn.config import Network
from akacdn.mapping.measure import Measurements
from akacdn.mapping.messages import ProbeReport, ProbeResult

NET1, NET2 = "198.18.1.0/24", "198.18.2.0/24"


def _edge(net: Network, region: str) -> str:
    return next(m.id for m in net.by_role("edge") if m.region == region)


def _round(edge: str, region: str, *results: ProbeResult, regions: tuple[ProbeResult, ...] = ()) -> ProbeReport:
    return ProbeReport(edge, region, 0.0, tuple(results), regions)


def test_a_round_sets_the_path_and_later_rounds_average(net: Network) -> None:
    m, e1 = Measurements(net), _edge(net, "r1")
    assert m.probed(e1, _round(e1, "r1", ProbeResult(NET1, 4, 0, 20.0)), 0.0) is None
    assert m.paths(0.0)[NET1]["r1"] == (20.0, 0.0)
    assert m.probed(e1, _round(e1, "r1", ProbeResult(NET1, 4, 2, 40.0)), 1.0) is None
    got = m.paths(1.0)[NET1]["r1"]
    alpha = net.mapping.probe_ewma
    assert got.rtt_ms == pytest.approx(20.0 + alpha * 20.0)
    assert got.loss == pytest.approx(alpha * 0.5)


def test_a_round_that_lost_everything_raises_loss_and_keeps_rtt(net: Network) -> None:
    m, e1 = Measurements(net), _edge(net, "r1")
    m.probed(e1, _round(e1, "r1", ProbeResult(NET1, 4, 0, 20.0)), 0.0)
    for t in range(1, 20):
        m.probed(e1, _round(e1, "r1", ProbeResult(NET1, 4, 4)), float(t))
    got = m.paths(20.0)[NET1]["r1"]
    assert got.rtt_ms == 20.0 and got.loss > 0.99


def test_a_path_that_never_answered_is_no_data(net: Network) -> None:
    m, e1 = Measurements(net), _edge(net, "r1")
    m.probed(e1, _round(e1, "r1", ProbeResult(NET1, 4, 4)), 0.0)
    assert m.paths(0.0) == {}


def test_stale_paths_are_no_data_and_a_fresh_round_restarts_the_average(net: Network) -> None:
    m, e1 = Measurements(net), _edge(net, "r1")
    m.probed(e1, _round(e1, "r1", ProbeResult(NET1, 4, 0, 20.0)), 0.0)
    late = net.mapping.probe_stale + 1
    assert m.paths(late) == {}
    m.probed(e1, _round(e1, "r1", ProbeResult(NET1, 4, 0, 80.0)), late)
    assert m.paths(late)[NET1]["r1"] == (80.0, 0.0)


@pytest.mark.parametrize(
    ("sender", "report", "why"),
    [
        ("mc1", ProbeReport("mc1", "r1", 0.0, (ProbeResult(NET1, 1, 0, 1.0),)), "unknown_prober"),
        ("EDGE_R1", ProbeReport("EDGE_R2", "r2", 0.0, (ProbeResult(NET1, 1, 0, 1.0),)), "unknown_prober"),
        ("EDGE_R1", ProbeReport("EDGE_R1", "r2", 0.0, (ProbeResult(NET1, 1, 0, 1.0),)), "region_mismatch"),
        ("EDGE_R1", ProbeReport("EDGE_R1", "r1", 0.0, (ProbeResult("10.0.0.0/8", 1, 0, 1.0),)), "unknown_network"),
        ("EDGE_R1", ProbeReport("EDGE_R1", "r1", 0.0, (), (ProbeResult("r9", 1, 0, 1.0),)), "unknown_region"),
        ("EDGE_R1", ProbeReport("EDGE_R1", "r1", 0.0, (), (ProbeResult("r1", 1, 0, 1.0),)), "unknown_region"),
        ("EDGE_R1", ProbeReport("EDGE_R1", "r1", 0.0, (ProbeResult(NET1, 0, 0, 1.0),)), "bad_counts"),
        ("EDGE_R1", ProbeReport("EDGE_R1", "r1", 0.0, (ProbeResult(NET1, 2, 3, 1.0),)), "bad_counts"),
    ],
)
def test_forged_or_foreign_rounds_are_refused_and_change_nothing(
    net: Network, sender: str, report: ProbeReport, why: str
) -> None:
    ids = {"EDGE_R1": _edge(net, "r1"), "EDGE_R2": _edge(net, "r2")}
    sender = ids.get(sender, sender)
    report = msgspec.structs.replace(report, machine=ids.get(report.machine, report.machine))
    m = Measurements(net)
    assert m.probed(sender, report, 0.0) == why
    assert m.paths(0.0) == {} and m.between(0.0) == {}


def test_a_network_limited_to_other_regions_is_refused_from_this_one(net: Network) -> None:
    nets = tuple(msgspec.structs.replace(c, regions=["r2"]) if c.prefix == NET1 else c for c in net.client_networks)
    m, e1 = Measurements(msgspec.structs.replace(net, client_networks=nets)), _edge(net, "r1")
    assert m.probed(e1, _round(e1, "r1", ProbeResult(NET1, 1, 0, 1.0)), 0.0) == "unknown_network"


def test_region_to_region_paths(net: Network) -> None:
    m, e1 = Measurements(net), _edge(net, "r1")
    assert m.probed(e1, _round(e1, "r1", regions=(ProbeResult("r2", 2, 0, 7.0),)), 0.0) is None
    assert m.between(0.0) == {("r1", "r2"): (7.0, 0.0)}


def test_demand_sums_edges_and_lapses(net: Network) -> None:
    m = Measurements(net)
    e1, e2 = _edge(net, "r1"), _edge(net, "r2")
    m.demanded(e1, {NET1: 50, "10.0.0.0/8": 999}, 0.5, 0.0)
    m.demanded(e2, {NET1: 10, NET2: 5}, 0.5, 0.0)
    assert m.demand(0.0) == {NET1: 120.0, NET2: 10.0}
    m.demanded(e1, {NET2: 1}, 0.5, 1.0)  # a network missing from a report had none
    assert m.demand(1.0) == {NET1: 20.0, NET2: 12.0}
    assert m.demand(1.0 + m.demand_window) == {NET2: 2.0}
    m.demanded("not-an-edge", {NET1: 1}, 1.0, 0.0)
    assert m.demand(1.0 + m.demand_window) == {NET2: 2.0}
