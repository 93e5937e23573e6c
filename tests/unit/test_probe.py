"""Measured mapping's probes, the pure part: who probes what, how fast, and the round's report."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from akacdn.config import Network, load_network
from akacdn.devnet.network import Layout, write_config
from akacdn.mapping.messages import ProbeReport, ProbeResult
from akacdn.mapping.probe import Pacer, Tally, Target, plan

LAYOUT = Layout(net=0, dns_port=5353, http_port=8080)
R1_EDGES = ["r1-e1", "r1-e2", "r1-e3"]

# client networks: 20 any region may serve (DNS, two targets each, one with a port), one
# only r2 may serve, one measured by TCP, one IPv6, one without probe targets
NETWORKS: list[dict[str, Any]] = [
    *({"prefix": f"198.18.{i}.0/24", "probes": [f"127.9.{i}.1", f"127.9.{i}.2:5300"]} for i in range(1, 21)),
    {"prefix": "198.19.1.0/24", "probes": ["127.9.100.1"], "regions": ["r2"]},
    {"prefix": "198.19.2.0/24", "probes": ["127.9.101.1", "127.9.101.2:8080"], "probe": "tcp", "regions": ["r1", "r3"]},
    {"prefix": "2001:db8::/48", "probes": ["[::1]:5301", "::1"]},
    {"prefix": "198.19.3.0/24"},
]


def _net(tmp_path: Path, probing: dict[str, Any] | None = None) -> Network:
    def tweak(network: dict[str, Any], _customers: dict[str, Any]) -> None:
        network["client_networks"] = NETWORKS
        if probing is not None:
            network["probing"] = probing

    return load_network(write_config(tmp_path / "devnet", LAYOUT, tweak))


@pytest.fixture
def pnet(tmp_path: Path) -> Network:
    return _net(tmp_path)


def _keys(targets: list[Target]) -> set[tuple[str, str]]:
    return {(t.kind, t.key) for t in targets}


def _everything(net: Network, region: str) -> set[tuple[str, str]]:
    """Every key an edge of `region` may probe."""
    nets = {("network", c.prefix) for c in net.client_networks if c.probes and (not c.regions or region in c.regions)}
    return nets | {("region", r.id) for r in net.regions if r.id != region}


def test_each_key_is_probed_by_exactly_probers_of_the_live_edges(pnet: Network) -> None:
    assert pnet.probing.probers == 2
    plans = {e: _keys(plan(pnet, pnet.machine(e), R1_EDGES)) for e in R1_EDGES}
    everything = _everything(pnet, "r1")
    assert len(everything) == 24  # 20 + tcp + IPv6 networks, 2 regions
    for key in everything:
        assert sum(key in p for p in plans.values()) == 2, key
    assert set().union(*plans.values()) == everything
    for p in plans.values():
        assert p < everything  # a share, not everything


def test_a_dead_edge_leaves_its_keys_to_the_others(pnet: Network) -> None:
    everything = _everything(pnet, "r1")
    # r1-e3 is out of the map: two live edges, two probers each: both probe everything
    for e in ("r1-e1", "r1-e2"):
        assert _keys(plan(pnet, pnet.machine(e), ["r1-e1", "r1-e2"])) == everything
    # an edge the map does not list yet (just started) still counts itself
    alone = _keys(plan(pnet, pnet.machine("r1-e3"), ["r1-e1", "r1-e2"]))
    with_it = _keys(plan(pnet, pnet.machine("r1-e3"), R1_EDGES))
    assert alone == with_it


def test_one_prober_per_key(tmp_path: Path) -> None:
    net = _net(tmp_path, {"probers": 1})
    plans = [_keys(plan(net, net.machine(e), R1_EDGES)) for e in R1_EDGES]
    for key in _everything(net, "r1"):
        assert sum(key in p for p in plans) == 1


def test_without_a_map_an_edge_probes_everything(pnet: Network) -> None:
    for e in R1_EDGES:
        got = plan(pnet, pnet.machine(e), None)
        assert _keys(got) == _everything(pnet, "r1")
        assert len(got) == 20 * 2 + 2 + 2 + 2  # every target of every key: 2 per network, 1 LLNS per region
    # a map without this region's edges (the region is down): only itself is alive to ask
    assert _keys(plan(pnet, pnet.machine("r1-e1"), [])) == _everything(pnet, "r1")


def test_only_configured_addresses_with_their_ports_and_methods(pnet: Network) -> None:
    configured = {
        ("198.19.2.0/24", "127.9.101.1", 80, "tcp"),
        ("198.19.2.0/24", "127.9.101.2", 8080, "tcp"),
        ("2001:db8::/48", "::1", 5301, "dns"),
        ("2001:db8::/48", "::1", 53, "dns"),
        ("198.19.1.0/24", "127.9.100.1", 53, "dns"),
        *((f"198.18.{i}.0/24", f"127.9.{i}.1", 53, "dns") for i in range(1, 21)),
        *((f"198.18.{i}.0/24", f"127.9.{i}.2", 5300, "dns") for i in range(1, 21)),
        *((m.region, m.address, pnet.ports.dns, "dns") for m in pnet.by_role("llns")),
    }
    for region in ("r1", "r2", "r3"):
        edges = [m.id for m in pnet.by_role("edge") if m.region == region]
        for e in edges:
            for live in (None, edges, edges[:1]):
                for t in plan(pnet, pnet.machine(e), live):
                    assert (t.key, t.address, t.port, t.method) in configured, t
    r1 = plan(pnet, pnet.machine("r1-e1"), None)
    assert "198.19.1.0/24" not in {t.key for t in r1}  # r2's alone
    assert "198.19.3.0/24" not in {t.key for t in r1}  # nothing to probe it with
    r2 = plan(pnet, pnet.machine("r2-e1"), None)
    assert "198.19.1.0/24" in {t.key for t in r2}
    assert "198.19.2.0/24" not in {t.key for t in r2}  # r1 and r3 only


def test_the_other_regions_llnses_are_probed_by_dns(pnet: Network) -> None:
    got = [t for t in plan(pnet, pnet.machine("r2-e2"), None) if t.kind == "region"]
    llns = {m.region: m.address for m in pnet.by_role("llns")}
    assert got == [
        Target("region", "r1", llns["r1"], pnet.ports.dns, "dns"),
        Target("region", "r3", llns["r3"], pnet.ports.dns, "dns"),
    ]


def test_a_round_without_the_regions_probes_only_client_networks(pnet: Network) -> None:
    m = pnet.machine("r2-e2")
    assert any(t.kind == "region" for t in plan(pnet, m, None))
    got = plan(pnet, m, None, regions=False)
    assert got and all(t.kind == "network" for t in got)
    assert got == [t for t in plan(pnet, m, None) if t.kind == "network"]


def test_region_probes_can_be_turned_off(tmp_path: Path) -> None:
    net = _net(tmp_path, {"regions": False})
    assert all(t.kind == "network" for t in plan(net, net.machine("r1-e1"), None))


def _simulate(pacer: Pacer, asks: list[float]) -> list[float]:
    """A sender that wants to send at each time in `asks` (sorted) and waits as told: the
    times its probes went."""
    sent: list[float] = []
    now = 0.0
    for want in asks:
        now = max(now, want)
        while (d := pacer.delay(now)) > 0:
            now += d
        sent.append(now)
    return sent


def _check_rate(sent: list[float], rate: float) -> None:
    """In every window [sent[i], sent[j]] at most one second's burst plus the rate's share."""
    for i in range(len(sent)):
        for j in range(i, len(sent)):
            assert j - i + 1 <= rate + rate * (sent[j] - sent[i]) + 1e-6, (i, j)


def test_a_greedy_sender_gets_the_burst_then_the_rate() -> None:
    rate = 20
    sent = _simulate(Pacer(rate), [0.0] * 200)
    _check_rate(sent, rate)
    assert sent[:rate] == [0.0] * rate  # one second's worth at once
    gaps = [b - a for a, b in zip(sent[rate:], sent[rate + 1 :], strict=False)]
    assert all(g == pytest.approx(1 / rate) for g in gaps)
    assert len(sent) / sent[-1] == pytest.approx(rate, rel=0.2)


@settings(max_examples=50, deadline=None)
@given(rate=st.integers(1, 50), seed=st.integers(0, 2**32))
def test_the_pacer_never_exceeds_its_rate(rate: int, seed: int) -> None:
    rng = random.Random(seed)
    asks = sorted(rng.uniform(0, 5) for _ in range(rng.randrange(1, 300)))
    _check_rate(_simulate(Pacer(rate), asks), rate)


def test_a_clock_stepping_back_gives_no_tokens() -> None:
    p = Pacer(2)
    assert p.delay(10.0) == 0 and p.delay(10.0) == 0
    assert p.delay(10.0) == pytest.approx(0.5)
    assert p.delay(9.0) > 0  # earlier than before: nothing refilled
    assert p.delay(10.5) == 0


def _t(kind: str, key: str) -> Target:
    return Target(kind, key, "127.9.0.1", 53, "dns")  # type: ignore[arg-type]


def test_tally_median_loss_and_order() -> None:
    tally = Tally()
    for rtt in (0.010, 0.030, None, 0.020):
        tally.add(_t("network", "198.18.2.0/24"), rtt)
    for rtt in (0.010, 0.020):
        tally.add(_t("network", "198.18.10.0/24"), rtt)
    for _ in range(3):
        tally.add(_t("network", "198.18.1.0/24"), None)
    tally.add(_t("region", "r3"), 0.0125)
    tally.add(_t("region", "r2"), None)
    tally.add(_t("region", "r2"), 0.004)
    assert (tally.sent, tally.lost) == (12, 5)
    report = tally.report("r1-e1", "r1", 1234.5)
    assert report == ProbeReport(
        "r1-e1",
        "r1",
        1234.5,
        networks=(
            ProbeResult("198.18.1.0/24", 3, 3, -1.0),  # nothing came back
            ProbeResult("198.18.10.0/24", 2, 0, 15.0),  # median of an even count: the mean of the middle two
            ProbeResult("198.18.2.0/24", 4, 1, 20.0),  # the lost one is no RTT
        ),
        regions=(ProbeResult("r2", 2, 1, 4.0), ProbeResult("r3", 1, 0, 12.5)),
    )
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(report), type=ProbeReport) == report


def test_an_empty_tally_reports_nothing() -> None:
    assert Tally().report("r1-e1", "r1", 0.0) == ProbeReport("r1-e1", "r1", 0.0)
