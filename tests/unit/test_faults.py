"""What the centers make of the daemons' rolls (pure, wall-clock time passed in): the
network-wide in-place mode, quarantines (automatic, operators', versioned), and the
shuffle-sharded servers a quarantined serial keeps.

The devnet: regions r1-r3, each an LLNS and three edges (`rN-llns`, `rN-e1..3`), two
TLNS without a region: 14 serving machines; one customer, serial 123.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from akacdn.config import Customer, Network
from akacdn.mapping.faults import FaultWatch, Quarantined, shard

PROPS = settings(max_examples=100, deadline=None)
SERIAL = 123
EDGES = {r: [f"{r}-e1", f"{r}-e2", f"{r}-e3"] for r in ("r1", "r2", "r3")}


def _net(net: Network, **recovery: Any) -> Network:
    return msgspec.structs.replace(net, recovery=msgspec.structs.replace(net.recovery, **recovery))


def _watch(net: Network, **recovery: Any) -> FaultWatch:
    return FaultWatch(_net(net, **recovery))


def _names(events: list[tuple[str, dict[str, object]]]) -> list[str]:
    return [name for name, _ in events]


# --- the in-place mode -----------------------------------------------------------------------


def test_serving_machines_are_the_edges_llns_and_tlns(net: Network) -> None:
    w = FaultWatch(net)
    assert len(w.region_of) == 14 and "mc1" not in w.region_of and "relay1" not in w.region_of
    assert w.edges == EDGES


def test_the_mode_starts_when_more_than_the_fraction_of_the_network_rolled(net: Network) -> None:
    # one machine of each region (1 of 4 each: 25%, not more), and network-wide 3 of 14
    w = _watch(net, in_place_fraction=0.25, in_place_min_machines=3)
    for m in ("r1-e1", "r2-e1", "r3-llns"):
        w.rolled(m, 10.0)
    assert w.decide(10.0, 1) == [] and not w.in_place
    w.rolled("tlns1", 11.0)  # 4 of 14: 29%
    [(name, info)] = w.decide(11.0, 1)
    assert name == "in_place_mode" and w.in_place and w.mode_since == 11.0
    assert info["rolling"] == ["r1-e1", "r2-e1", "r3-llns", "tlns1"]
    assert "4 machines rolled within 60s" in w.mode_reason and "of the network" in w.mode_reason
    assert w.decide(12.0, 1) == []  # said once


def test_the_mode_starts_when_more_than_the_fraction_of_one_region_rolled(net: Network) -> None:
    w = _watch(net, in_place_fraction=0.5, in_place_min_machines=2)
    w.rolled("r1-e1", 10.0)
    w.rolled("r1-e2", 10.0)
    assert w.decide(10.0, 1) == []  # 2 of 4: not more than half
    w.rolled("r1-llns", 10.0)
    assert _names(w.decide(10.0, 1)) == ["in_place_mode"]  # 3 of 4 (3 of 14 network-wide)
    assert "region r1" in w.mode_reason


def test_the_mode_needs_at_least_in_place_min_machines(net: Network) -> None:
    w = _watch(net, in_place_fraction=0.1, in_place_min_machines=3)
    w.rolled("r1-e1", 10.0)
    w.rolled("r1-e2", 10.0)  # half of r1, a seventh of the network: but only two machines
    assert w.decide(10.0, 1) == [] and not w.in_place
    w.rolled("r3-e3", 10.0)
    assert _names(w.decide(10.0, 1)) == ["in_place_mode"]


def test_a_region_of_fewer_than_three_machines_says_little(net: Network) -> None:
    small = msgspec.structs.replace(net, machines=tuple(m for m in net.machines if m.id not in ("r3-e2", "r3-e3")))
    w = _watch(small, in_place_fraction=0.3, in_place_min_machines=2)
    w.rolled("r3-llns", 10.0)
    w.rolled("r3-e1", 10.0)  # all of r3, but r3 has two machines; 2 of 12 network-wide
    assert w.decide(10.0, 1) == [] and not w.in_place
    w2 = _watch(small, in_place_fraction=0.3, in_place_min_machines=2)
    w2.rolled("r1-e1", 10.0)
    w2.rolled("r1-e2", 10.0)  # half of r1 (four machines)
    assert _names(w2.decide(10.0, 1)) == ["in_place_mode"]


def test_machines_that_serve_nothing_do_not_count(net: Network) -> None:
    w = _watch(net, in_place_fraction=0.1, in_place_min_machines=2)
    for m in ("mc1", "mc2", "relay1", "relay2"):
        w.rolled(m, 10.0)
    assert w.decide(10.0, 1) == [] and not w.in_place


def test_only_rolls_within_the_mode_window_count(net: Network) -> None:
    w = _watch(net, in_place_fraction=0.5, in_place_min_machines=3, mode_window=60.0)
    w.rolled("r1-e1", 0.0)
    w.rolled("r1-e2", 10.0)
    w.rolled("r1-e3", 60.5)  # the first one is 60.5 s old by now
    assert w.decide(60.5, 1) == []
    w.rolled("r1-e1", 70.0)  # again: 60 s after the second, still within the window
    assert _names(w.decide(70.0, 1)) == ["in_place_mode"]


def _in_place_at_10(net: Network) -> FaultWatch:
    w = _watch(net, in_place_fraction=0.1, in_place_min_machines=3, mode_window=60.0)
    for m in ("r1-e1", "r2-e1", "r3-e1"):
        w.rolled(m, 10.0)
    assert _names(w.decide(10.0, 1)) == ["in_place_mode"]
    return w


def test_the_mode_ends_mode_window_after_the_last_roll_not_before(net: Network) -> None:
    w = _in_place_at_10(net)
    assert w.next_deadline() == pytest.approx(70.01)
    assert w.decide(70.0, 1) == [] and w.in_place  # not before
    [(name, info)] = w.decide(70.01, 1)
    assert name == "rolling_mode" and not w.in_place and w.mode_reason == ""
    assert info == {"after": 60.0}
    assert w.next_deadline() is None


def test_an_in_place_fault_or_a_roll_keeps_the_mode(net: Network) -> None:
    w = _in_place_at_10(net)
    w.failed_in_place("r1-e2", 50.0)  # the trouble goes on: the mode only stopped the rolling
    assert w.decide(100.0, 1) == [] and w.in_place
    assert w.next_deadline() == pytest.approx(110.01)
    w.rolled("r2-e2", 105.0)
    assert w.decide(165.0, 1) == [] and w.in_place
    assert _names(w.decide(165.5, 1)) == ["rolling_mode"]


def test_rolls_of_a_quarantined_serial_do_not_count(net: Network) -> None:
    w = _watch(net, in_place_fraction=0.1, in_place_min_machines=3)
    assert w.order("add", SERIAL, 0.0, 1) == ""
    for m in ("r1-e1", "r2-e1", "r3-e1", "r1-e2"):
        w.rolled(m, 10.0, SERIAL)
    assert w.decide(10.0, 1) == [] and not w.in_place
    for m in ("r1-e1", "r2-e1", "r3-e1"):
        w.rolled(m, 11.0, 77)  # a serial no customer has: network trouble
    assert _names(w.decide(11.0, 1)) == ["in_place_mode"]
    w.rolled("r1-e3", 60.0, SERIAL)
    w.failed_in_place("r2-e3", 65.0, SERIAL)  # contained: it does not keep the mode
    assert _names(w.decide(71.01, 1)) == ["rolling_mode"]


def test_rolls_noticed_before_the_serial_was_quarantined_stop_counting(net: Network) -> None:
    w = _watch(net, in_place_fraction=0.1, in_place_min_machines=3)
    for m in ("r1-e1", "r2-e1", "r3-e1"):
        w.rolled(m, 10.0, SERIAL)
    assert w.order("add", SERIAL, 10.0, 1) == ""  # an operator was quicker than the leader's decision
    assert w.decide(10.0, 1) == [] and not w.in_place


# --- quarantines ---------------------------------------------------------------------------


def test_a_serial_that_crashed_quarantine_after_machines_is_quarantined(net: Network) -> None:
    w = _watch(net, quarantine_after=2, quarantine_window=300.0, quarantine_hold=3600.0, quarantine_servers=1)
    w.rolled("r1-e1", 100.0, SERIAL)
    w.rolled("r1-e1", 110.0, SERIAL)  # the same machine again: still one machine
    assert w.decide(110.0, 4) == [] and w.quarantines == {} and w.version == (0, 0)
    w.rolled("r2-e3", 120.0, SERIAL)
    events = w.decide(120.0, 4)
    servers = shard(SERIAL, EDGES, 1)
    q = w.quarantines[SERIAL]
    assert q == Quarantined(SERIAL, servers, 120.0, 3720.0, q.reason, "auto", ("r1-e1", "r2-e3"))
    assert "crashed 2 machines within 300s" in q.reason
    assert events == [("quarantined", {"serial": SERIAL, "servers": list(servers), "reason": q.reason})]
    assert w.version == (4, 1)
    assert sorted(servers) == sorted({e for e in servers}) and len(servers) == 3
    assert {s.split("-")[0] for s in servers} == {"r1", "r2", "r3"}  # one edge per region
    assert w.listed() == [q]
    assert w.next_deadline() == 3720.0


def test_a_request_of_death_is_quarantined_not_a_network_alarm(net: Network) -> None:
    """One serial's request of death crashes three edges before the leader's next tick: the
    quarantine bounds it ("rolls of a quarantined serial do not count"), no network alarm."""
    w = _watch(net, quarantine_after=2, in_place_fraction=0.1, in_place_min_machines=3)
    for m in ("r1-e1", "r1-e2", "r2-e1"):
        w.rolled(m, 10.0, SERIAL)
    assert _names(w.decide(10.0, 1)) == ["quarantined"]
    assert not w.in_place


def test_crashes_further_apart_than_the_window_do_not_quarantine(net: Network) -> None:
    w = _watch(net, quarantine_after=2, quarantine_window=300.0)
    w.rolled("r1-e1", 0.0, SERIAL)
    w.rolled("r2-e1", 300.5, SERIAL)
    assert w.decide(300.5, 1) == [] and not w.quarantines
    w2 = _watch(net, quarantine_after=2, quarantine_window=300.0)
    w2.rolled("r1-e1", 0.0, SERIAL)
    w2.rolled("r2-e1", 200.0, SERIAL)
    assert w2.decide(300.5, 1) == [] and not w2.quarantines  # by the time the leader decides, one is too old


def test_in_place_faults_count_as_crashes(net: Network) -> None:
    w = _watch(net, quarantine_after=3)
    for m in ("r1-e1", "r2-e1", "r3-e1"):
        w.failed_in_place(m, 5.0, SERIAL)
    assert _names(w.decide(5.0, 1)) == ["quarantined"]
    assert w.quarantines[SERIAL].crashed == ("r1-e1", "r2-e1", "r3-e1")


def test_quarantine_servers_edges_per_region(net: Network) -> None:
    w = _watch(net, quarantine_after=1, quarantine_servers=2)
    w.rolled("r1-e1", 5.0, SERIAL)
    w.decide(5.0, 1)
    servers = w.quarantines[SERIAL].servers
    assert servers == shard(SERIAL, EDGES, 2)
    assert Counter(s.split("-")[0] for s in servers) == {"r1": 2, "r2": 2, "r3": 2}


def test_more_crashes_extend_the_quarantine(net: Network) -> None:
    w = _watch(net, quarantine_after=2, quarantine_window=300.0, quarantine_hold=3600.0)
    w.rolled("r1-e1", 100.0, SERIAL)
    w.rolled("r2-e1", 100.0, SERIAL)
    w.decide(100.0, 2)
    assert w.quarantines[SERIAL].until == 3700.0 and w.version == (2, 1)
    w.rolled("r3-e2", 1000.0, SERIAL)  # crashing its own servers, or any (the map lags)
    assert w.decide(1000.0, 2) == []
    q = w.quarantines[SERIAL]
    assert q.until == 4600.0 and q.since == 100.0
    assert q.crashed == ("r1-e1", "r2-e1", "r3-e2")
    assert w.version == (2, 2)
    w.rolled("r3-e3", 1000.5, SERIAL)  # half a second more is no change worth a new version
    w.decide(1000.5, 2)
    assert w.version == (2, 2) and w.quarantines[SERIAL].until == 4600.0


def test_a_quarantine_expires_at_until_and_its_crashes_are_forgotten(net: Network) -> None:
    w = _watch(net, quarantine_after=2, quarantine_hold=3600.0)
    w.rolled("r1-e1", 0.0, SERIAL)
    w.rolled("r2-e1", 0.0, SERIAL)
    w.decide(0.0, 1)
    assert w.next_deadline() == 3600.0
    assert w.decide(3599.9, 1) == [] and SERIAL in w.quarantines
    assert w.decide(3600.0, 1) == [("quarantine_ended", {"serial": SERIAL})]
    assert not w.quarantines and w.version == (1, 2) and w.next_deadline() is None
    w.rolled("r3-e1", 3700.0, SERIAL)  # one crash after the quarantine: not two machines
    assert w.decide(3700.0, 1) == [] and not w.quarantines


def test_a_quarantine_shorter_than_the_window_is_not_renewed_by_the_crashes_it_ended(net: Network) -> None:
    w = _watch(net, quarantine_after=2, quarantine_window=300.0, quarantine_hold=100.0)
    w.rolled("r1-e1", 0.0, SERIAL)
    w.rolled("r2-e1", 0.0, SERIAL)
    w.decide(0.0, 1)
    assert _names(w.decide(100.0, 1)) == ["quarantine_ended"]
    assert w.decide(101.0, 1) == [] and not w.quarantines  # the crashes went with it


def test_unknown_serials_are_never_quarantined(net: Network) -> None:
    w = _watch(net, quarantine_after=1)
    for m in ("r1-e1", "r2-e1", "r3-e1"):
        w.rolled(m, 1.0, 999)
        w.failed_in_place(m, 1.0, 999)
    w.rolled("r1-e2", 1.0)  # no serial known
    w.decide(1.0, 1)
    assert w.quarantines == {} and w.version == (0, 0)


def test_a_new_customer_can_be_quarantined_after_configure(net: Network) -> None:
    w = _watch(net, quarantine_after=1)
    shop = Customer(name="shop", serial=456, origin="http://127.0.40.2:80")
    w.configure(msgspec.structs.replace(_net(net, quarantine_after=1), customers=(*net.customers, shop)))
    w.rolled("r1-e1", 1.0, 456)
    assert _names(w.decide(1.0, 1)) == ["quarantined"]


# --- operators, leaders and followers -------------------------------------------------------


def test_operator_orders(net: Network) -> None:
    w = _watch(net, quarantine_hold=3600.0)
    assert w.order("add", SERIAL, 10.0, 3, seconds=100.0, reason="a bad config") == ""
    q = w.quarantines[SERIAL]
    assert (q.servers, q.since, q.until, q.reason, q.by) == (
        shard(SERIAL, EDGES, 1),
        10.0,
        110.0,
        "a bad config",
        "operator",
    )
    assert w.version == (3, 1)
    assert w.order("extend", SERIAL, 50.0, 3, seconds=100.0) == ""
    assert w.quarantines[SERIAL].until == 210.0 and w.version == (3, 2)
    assert w.order("extend", SERIAL, 500.0, 3) == ""  # after its end: from now, for the default hold
    assert w.quarantines[SERIAL].until == 4100.0
    assert w.order("lift", SERIAL, 600.0, 5) == ""
    assert not w.quarantines and w.version == (5, 1)  # a new leader counts afresh


def test_operator_add_defaults_to_the_hold_and_operator_reason(net: Network) -> None:
    w = _watch(net, quarantine_hold=1234.0)
    assert w.order("add", SERIAL, 10.0, 1) == ""
    q = w.quarantines[SERIAL]
    assert (q.until, q.reason, q.by) == (1244.0, "operator", "operator")


def test_operator_orders_refused(net: Network) -> None:
    w = FaultWatch(net)
    assert w.order("add", 999, 0.0, 1) == "no customer has serial 999"
    assert w.order("extend", SERIAL, 0.0, 1) == f"serial {SERIAL} is not quarantined"
    assert w.order("lift", SERIAL, 0.0, 1) == f"serial {SERIAL} is not quarantined"
    assert w.order("pause", SERIAL, 0.0, 1) == "unknown action 'pause'"
    assert w.quarantines == {} and w.version == (0, 0)  # nothing changed, no new version


def test_a_lifted_serial_is_quarantined_again_only_by_new_crashes(net: Network) -> None:
    w = _watch(net, quarantine_after=2, in_place_min_machines=100)  # (no mode here)
    w.rolled("r1-e1", 0.0, SERIAL)
    w.rolled("r2-e1", 0.0, SERIAL)
    w.decide(0.0, 1)
    assert w.order("lift", SERIAL, 1.0, 1) == ""
    assert w.decide(2.0, 1) == [] and not w.quarantines  # the old crashes are forgotten
    w.rolled("r1-e2", 3.0, SERIAL)
    w.rolled("r2-e2", 3.0, SERIAL)
    assert _names(w.decide(3.0, 1)) == ["quarantined"]


def test_only_a_newer_set_is_adopted(net: Network) -> None:
    leader, follower = FaultWatch(net), FaultWatch(net)
    leader.order("add", SERIAL, 0.0, 3)
    leader.order("extend", SERIAL, 0.0, 3)
    assert leader.version == (3, 2)
    assert follower.adopt(leader.version, leader.listed())
    assert follower.version == (3, 2) and follower.listed() == leader.listed()
    assert not follower.adopt((3, 2), [])  # the same version again
    assert not follower.adopt((2, 9), [])  # an older leader's
    assert follower.listed() == leader.listed()
    assert follower.adopt([4, 1], [])  # type: ignore[arg-type]  # as decoded from a message
    assert follower.version == (4, 1) and follower.quarantines == {}
    follower.order("add", SERIAL, 0.0, 4)  # now leading under the same term: counts on
    assert follower.version == (4, 2)


# --- shuffle sharding ----------------------------------------------------------------------


def test_shard_is_deterministic_and_ignores_the_order_edges_are_listed_in() -> None:
    shuffled = {r: list(reversed(es)) for r, es in reversed(list(EDGES.items()))}
    for serial in (1, 123, 999999):
        assert shard(serial, EDGES, 1) == shard(serial, EDGES, 1) == shard(serial, shuffled, 1)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_shard_gives_k_edges_per_region(k: int) -> None:
    servers = shard(123, EDGES, k)
    for region, edges in EDGES.items():
        mine = [s for s in servers if s in edges]
        assert len(mine) == len(set(mine)) == min(k, len(edges)), region
    assert set(servers) <= set(itertools.chain(*EDGES.values()))


def test_serials_are_spread_over_the_edges() -> None:
    sets = [shard(serial, EDGES, 1) for serial in range(1, 601)]
    assert len(set(sets)) >= 20  # of the 27 possible sets
    for edge, n in Counter(itertools.chain(*sets)).items():  # each edge about a third of the serials
        assert 120 <= n <= 280, edge
    shared = [len(set(a) & set(b)) for a, b in itertools.combinations(sets[:120], 2)]
    assert sum(shared) / len(shared) < 1.3  # 1 expected: a third of a chance per region
    assert sum(1 for n in shared if n == 3) / len(shared) < 0.08  # 1/27 expected


@PROPS
@given(st.integers(min_value=1, max_value=999999), st.integers(min_value=1, max_value=3), st.data())
def test_a_quarantined_serial_keeps_its_servers_when_another_edge_goes(
    serial: int, k: int, data: st.DataObject
) -> None:
    """Rendezvous: removing an edge it does not keep leaves its set alone; removing one it
    keeps replaces just that one."""
    servers = shard(serial, EDGES, k)
    gone = data.draw(st.sampled_from(sorted(itertools.chain(*EDGES.values()))))
    fewer = {r: [e for e in es if e != gone] for r, es in EDGES.items()}
    after = shard(serial, fewer, k)
    if gone not in servers:
        assert after == servers
    else:
        assert set(servers) - set(after) == {gone}
        assert len(set(after) - set(servers)) == (1 if k < 3 else 0)


@PROPS
@given(st.lists(st.sampled_from(["r1-e1", "r1-e2", "r2-e1", "r2-llns", "r3-e1", "tlns1"]), max_size=12))
def test_sleeping_machines_do_not_move_the_shard(shared_net: Network, asleep: list[str]) -> None:
    w = _watch(shared_net, quarantine_after=1)
    for m in asleep:
        w.sleeping(m, 1e9)
    w.rolled("r1-e3", 1.0, SERIAL)
    w.decide(1.0, 1)
    assert w.quarantines[SERIAL].servers == shard(SERIAL, EDGES, 1)
