"""Tiered distribution (pure): parent candidates, parent health, the order to try."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from akacdn.edge.parents import ParentHealth, ParentSettings, choose, parent_candidates
from akacdn.mapping.maps import RegionServers, Server

KEYS = [f"/videos/{i}.mp4" for i in range(2000)]


def _region(name: str, *capacities: int) -> RegionServers:
    servers = tuple(Server(f"{name}-e{i}", name, f"10.0.{i}.1", c) for i, c in enumerate(capacities))
    return RegionServers(name, servers, serving=len(servers) >= 2)


MAP = [_region("child1", 1, 1), _region("child2", 1, 1), _region("parent", 1, 2, 3, 4), _region("backup", 1, 1, 1)]


def _machines(servers: list[Server]) -> list[str]:
    return [s.machine for s in servers]


def _owner(key: str, regions: list[RegionServers]) -> str:
    return parent_candidates(key, regions, ["parent"], "child1", "child1-e0")[0].machine


# --- candidates ---------------------------------------------------------------------------


def test_every_child_asks_the_same_parent_for_a_key() -> None:
    for key in KEYS[:200]:
        seen = {
            tuple(_machines(parent_candidates(key, MAP, ["parent", "backup"], region, machine)))
            for region, machine in [("child1", "child1-e0"), ("child1", "child1-e1"), ("child2", "child2-e0")]
        }
        assert len(seen) == 1
        (ranking,) = seen
        assert sorted(ranking) == sorted(s.machine for s in MAP[2].servers)  # the whole parent region


def test_keys_spread_over_the_parent_region_by_capacity() -> None:
    owners = Counter(_owner(k, MAP) for k in KEYS)
    capacity = {s.machine: s.capacity for s in MAP[2].servers}
    total = sum(capacity.values())
    assert set(owners) == set(capacity)
    for machine, c in capacity.items():
        expected = len(KEYS) * c / total  # 200, 400, 600, 800
        assert abs(owners[machine] - expected) < 0.2 * expected, (machine, owners[machine], expected)


def test_removing_a_parent_only_moves_the_keys_it_held() -> None:
    before = {k: _owner(k, MAP) for k in KEYS}
    gone = "parent-e2"
    smaller = [*MAP[:2], RegionServers("parent", tuple(s for s in MAP[2].servers if s.machine != gone), True)]
    after = {k: _owner(k, smaller) for k in KEYS}
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved == {k for k in KEYS if before[k] == gone}
    assert 450 < len(moved) < 750  # its share: 3/10 of the keys


def test_an_edge_in_a_parent_region_goes_to_the_origin() -> None:
    assert parent_candidates("/a", MAP, ["parent"], "parent", "parent-e0") == []
    assert parent_candidates("/a", MAP, ["backup", "parent"], "parent", "parent-e0") == []  # any named one


def test_the_asking_edge_is_never_its_own_parent() -> None:
    # a map that lags: the edge moved from "parent" to "child1" but the map still lists it there
    for key in KEYS[:100]:
        got = _machines(parent_candidates(key, MAP, ["parent"], "child1", "parent-e3"))
        assert "parent-e3" not in got and len(got) == 3


def test_no_parents_named_or_live() -> None:
    assert parent_candidates("/a", MAP, [], "child1", "child1-e0") == []
    assert parent_candidates("/a", MAP, ["nowhere"], "child1", "child1-e0") == []
    empty = [*MAP, RegionServers("dead", (), False)]
    assert parent_candidates("/a", empty, ["dead"], "child1", "child1-e0") == []


def test_a_region_without_live_edges_is_skipped_for_the_next_named() -> None:
    regions = [*MAP, RegionServers("dead", (), False)]
    got = parent_candidates("/a", regions, ["nowhere", "dead", "backup", "parent"], "child1", "child1-e0")
    assert sorted(_machines(got)) == ["backup-e0", "backup-e1", "backup-e2"]  # enough: parent not needed


def test_a_small_first_region_is_followed_by_the_next_ones_ranking() -> None:
    regions = [*MAP, _region("tiny", 5)]
    got = parent_candidates("/a", regions, ["tiny", "backup", "parent"], "child1", "child1-e0", at_least=3)
    assert got[0].machine == "tiny-e0"
    assert sorted(_machines(got[1:])) == ["backup-e0", "backup-e1", "backup-e2"]  # all of it, ranked
    ranked = parent_candidates("/a", regions, ["backup"], "child1", "child1-e0")
    assert got[1:] == ranked
    # a region that fills the list alone answers alone
    assert len(parent_candidates("/a", regions, ["parent", "backup"], "child1", "child1-e0", at_least=3)) == 4


def test_a_region_named_twice_does_not_repeat_its_parents() -> None:
    got = parent_candidates("/a", MAP, ["backup", "backup", "parent"], "child1", "child1-e0", at_least=10)
    assert len(got) == len(set(_machines(got))) == 7


# --- health -------------------------------------------------------------------------------


def test_consecutive_failures_mark_a_parent_down() -> None:
    h = ParentHealth(ParentSettings(fail_threshold=3))
    h.failed("p", 1.0)
    h.failed("p", 2.0)
    h.succeeded("p", 3.0)  # resets the count
    h.failed("p", 4.0)
    h.failed("p", 5.0)
    assert h.state("p", 5.0) == "up" and h.usable("p", 5.0)
    h.failed("p", 6.0)
    assert h.state("p", 6.0) == "down" and not h.usable("p", 6.0)
    assert h.counts["went_down"] == 1


def test_a_down_parent_waits_retry_after_then_gets_exactly_one_probe() -> None:
    h = ParentHealth(ParentSettings(fail_threshold=1, retry_after=300.0))
    h.failed("p", 10.0)
    assert h.next_deadline() == 310.0
    assert not h.usable("p", 309.9)
    assert h.state("p", 310.0) == "retryable"
    assert h.usable("p", 310.0)  # the probe
    assert h.state("p", 310.0) == "probing"
    assert not h.usable("p", 310.0) and not h.usable("p", 400.0)  # one probe only
    h.succeeded("p", 401.0)
    assert h.state("p", 401.0) == "up" and h.usable("p", 401.0)
    assert h.counts["rejoined"] == 1 and h.counts["probes"] == 1
    assert len(h) == 0 and h.next_deadline() is None  # nothing left to remember


def test_a_failed_probe_keeps_the_parent_down_another_retry_after() -> None:
    h = ParentHealth(ParentSettings(fail_threshold=1, retry_after=300.0))
    h.failed("p", 0.0)
    assert h.usable("p", 300.0)
    h.failed("p", 305.0)
    assert h.state("p", 305.0) == "down" and h.next_deadline() == 605.0
    assert not h.usable("p", 604.0)
    assert h.usable("p", 605.0) and not h.usable("p", 605.0)
    h.failed("p", 606.0)
    h.succeeded("p", 607.0)  # not a probe's (none out): a straggler, does not end the down period
    assert h.state("p", 607.0) == "down"


def test_results_while_down_without_a_probe_are_ignored() -> None:
    h = ParentHealth(ParentSettings(fail_threshold=2, retry_after=60.0))
    h.failed("p", 0.0)
    h.failed("p", 0.0)
    h.succeeded("p", 1.0)  # requests sent before it went down
    h.failed("p", 2.0)
    assert h.state("p", 2.0) == "down" and h.next_deadline() == 60.0  # not extended, not ended
    assert h.counts["ignored"] == 2


def test_an_abandoned_probe_lapses_after_retry_after() -> None:
    h = ParentHealth(ParentSettings(fail_threshold=1, retry_after=100.0))
    h.failed("p", 0.0)
    assert h.usable("p", 100.0)  # the probe's request is then abandoned: no result ever
    assert not h.usable("p", 199.0) and h.next_deadline() == 200.0
    assert h.usable("p", 200.0)  # another probe


def test_in_flight_counts_never_go_below_zero() -> None:
    h = ParentHealth()
    h.finished("p")
    assert h.in_flight("p") == 0 and len(h) == 0
    h.started("p")
    h.started("p")
    h.finished("p")
    assert h.in_flight("p") == 1
    h.finished("p")
    h.finished("p")
    assert h.in_flight("p") == 0 and len(h) == 0


def test_retain_forgets_parents_that_left_the_map() -> None:
    h = ParentHealth(ParentSettings(fail_threshold=1))
    h.failed("gone", 0.0)
    h.started("gone2")
    h.failed("kept", 0.0)
    h.retain({"kept", "other"})
    assert len(h) == 1 and h.state("gone", 1.0) == "up" and h.state("kept", 1.0) == "down"
    h.finished("gone2")  # a request that ends after its parent was forgotten
    assert h.in_flight("gone2") == 0 and len(h) == 1


def test_status_reports_every_remembered_parent() -> None:
    h = ParentHealth(ParentSettings(fail_threshold=2, retry_after=30.0))
    h.failed("a", 0.0)
    h.failed("b", 0.0)
    h.failed("b", 1.0)
    h.started("c")
    st_ = h.status(11.0)
    json.dumps(st_)
    assert st_["parents"] == {
        "a": {"state": "up", "failures": 1, "in_flight": 0},
        "b": {"state": "down", "failures": 0, "in_flight": 0, "down_for": 10.0, "retry_in": 20.0},
        "c": {"state": "up", "failures": 0, "in_flight": 1},
    }
    assert st_["down"] == ["b"] and st_["counts"] == {"went_down": 1}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fail_threshold": 0},
        {"max_parents": 0},
        {"retry_after": 0.0},
        {"retry_after": float("inf")},
        {"retry_after": float("nan")},
        {"balance_factor": 0.5},
        {"balance_factor": float("nan")},
    ],
)
def test_settings_checked(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ParentSettings(**kwargs)  # type: ignore[arg-type]


def test_settings_allowed() -> None:
    ParentSettings(balance_factor=0.0)
    ParentSettings(balance_factor=-1.0)
    ParentSettings(balance_factor=1.0, retry_after=0.001, max_parents=1, fail_threshold=1)


# --- choose -------------------------------------------------------------------------------

PARENTS = [Server(f"p{i}", "parent", f"10.1.0.{i}", 1) for i in range(5)]


def test_ring_order_when_all_are_healthy_and_idle() -> None:
    h = ParentHealth()
    assert choose(PARENTS, h, 0.0) == PARENTS[:3]
    assert choose(PARENTS[:2], h, 0.0) == PARENTS[:2]
    assert choose([], h, 0.0) == []


def test_down_parents_fall_through_along_the_ring() -> None:
    h = ParentHealth(ParentSettings(fail_threshold=1))
    h.failed("p0", 0.0)
    h.failed("p2", 0.0)
    assert choose(PARENTS, h, 1.0) == [PARENTS[1], PARENTS[3], PARENTS[4]]
    for p in PARENTS:
        h.failed(p.machine, 0.0)
    assert choose(PARENTS, h, 1.0) == []  # to the origin


def test_a_probe_goes_first_and_only_once() -> None:
    h = ParentHealth(ParentSettings(fail_threshold=1, retry_after=300.0))
    h.failed("p0", 0.0)
    assert choose(PARENTS, h, 299.0)[0] == PARENTS[1]
    assert choose(PARENTS, h, 300.0) == PARENTS[:3]  # the key's owner: its probe is the first try
    assert h.state("p0", 300.0) == "probing"
    assert choose(PARENTS, h, 300.5) == PARENTS[1:4]  # another request for a key of p0's: no second probe
    h.succeeded("p0", 301.0)
    assert choose(PARENTS, h, 301.0) == PARENTS[:3]


def test_no_probe_from_a_request_that_would_not_reach_it() -> None:
    h = ParentHealth(ParentSettings(fail_threshold=1, retry_after=300.0))
    h.failed("p1", 0.0)
    assert choose(PARENTS, h, 300.0) == [PARENTS[0], PARENTS[2], PARENTS[3]]  # p0 ranks above p1
    assert h.state("p1", 300.0) == "retryable" and h.counts["probes"] == 0


def test_one_probe_per_request() -> None:
    h = ParentHealth(ParentSettings(fail_threshold=1, retry_after=300.0))
    h.failed("p0", 0.0)
    h.failed("p1", 0.0)
    ring = [PARENTS[1], PARENTS[0], *PARENTS[2:]]  # a key whose ring starts with p1, then p0
    assert choose(ring, h, 300.0) == [PARENTS[1], PARENTS[2], PARENTS[3]]
    assert h.counts["probes"] == 1 and h.state("p0", 300.0) == "retryable"  # p0's turn is another request's
    assert choose(ring, h, 300.0) == [PARENTS[0], PARENTS[2], PARENTS[3]]
    assert h.state("p0", 300.0) == h.state("p1", 300.0) == "probing"


def test_a_parent_far_over_its_bound_moves_to_the_end() -> None:
    h = ParentHealth(ParentSettings(balance_factor=1.5))
    for _ in range(100):
        h.started("p0")
    three = PARENTS[:3]
    assert choose(three, h, 0.0) == [PARENTS[1], PARENTS[2], PARENTS[0]]  # not dropped
    assert choose(PARENTS, h, 0.0) == PARENTS[1:4]  # after the others: past max_parents here
    for _ in range(100):
        h.finished("p0")
    assert choose(three, h, 0.0) == three


def test_bounded_load_follows_capacity() -> None:
    big, small = Server("big", "parent", "a", 9), Server("small", "parent", "b", 1)
    h = ParentHealth(ParentSettings(balance_factor=1.5))
    for _ in range(10):
        h.started("big")
    # slots 1.5 x (10 + 1) = 16.5: big's share is ceil(14.85) = 15 > its 10 in flight
    assert choose([big, small], h, 0.0) == [big, small]
    # with equal capacities its share would be ceil(8.25) = 9 <= 10: over
    peer = Server("big", "parent", "a", 1)
    assert choose([peer, small], h, 0.0) == [small, peer]


def test_low_load_stays_on_the_hash() -> None:
    """Below `balance_min` requests in flight to a parent, bounded load does not move its
    keys (each spill would cost a second parent's origin fetch), whatever the shares say."""
    h = ParentHealth(ParentSettings(balance_factor=1.5, balance_min=8))
    three = PARENTS[:3]
    for _ in range(7):
        h.started("p0")
    assert choose(three, h, 0.0) == three  # 7 in flight: share ceil(1.5 x 8 / 3) = 4, but under the floor
    h.started("p0")
    assert choose(three, h, 0.0) == [PARENTS[1], PARENTS[2], PARENTS[0]]  # 8: over both
    h1 = ParentHealth(ParentSettings(balance_factor=1.5, balance_min=1))
    h1.started("p0")
    assert choose(three, h1, 0.0) == [PARENTS[1], PARENTS[2], PARENTS[0]]  # HAProxy's rule alone: one is over


def test_bounded_load_off_keeps_ring_order() -> None:
    h = ParentHealth(ParentSettings(balance_factor=0.0))
    for _ in range(100):
        h.started("p0")
    assert choose(PARENTS, h, 0.0) == PARENTS[:3]


def test_choose_skips_duplicates_and_caps_at_max_parents() -> None:
    h = ParentHealth(ParentSettings(max_parents=2))
    assert choose([PARENTS[0], PARENTS[0], PARENTS[1], PARENTS[1]], h, 0.0) == PARENTS[:2]
    assert choose([PARENTS[0], PARENTS[0]], h, 0.0) == [PARENTS[0]]


# --- invariants under random events -------------------------------------------------------

MACHINES = ["p0", "p1", "p2", "p3"]
events = st.lists(
    st.tuples(
        st.sampled_from(["failed", "succeeded", "started", "finished", "usable", "advance", "choose", "retain"]),
        st.sampled_from(MACHINES),
        st.floats(0.0, 120.0),
    ),
    max_size=120,
)


@settings(max_examples=500, deadline=None)
@given(
    events=events,
    threshold=st.integers(1, 4),
    retry=st.sampled_from([0.001, 10.0, 60.0]),
    factor=st.sampled_from([0.0, 1.0, 1.5, 3.0]),
    max_parents=st.integers(1, 4),
)
def test_random_events_keep_the_invariants(
    events: list[tuple[str, str, float]], threshold: int, retry: float, factor: float, max_parents: int
) -> None:
    s = ParentSettings(fail_threshold=threshold, retry_after=retry, balance_factor=factor, max_parents=max_parents)
    h = ParentHealth(s)
    servers = [Server(m, "parent", m, i + 1) for i, m in enumerate(MACHINES)]
    now = 0.0
    started: Counter[str] = Counter()  # our own count of unmatched `started`
    for kind, m, dt in events:
        before = h.state(m, now)
        if kind == "failed":
            h.failed(m, now)
            if before == "probing":
                assert h.state(m, now) == "down" and h.next_deadline() is not None  # another retry_after
        elif kind == "succeeded":
            h.succeeded(m, now)
            if before == "probing":
                assert h.state(m, now) == "up"  # a probe's success rejoins
        elif kind == "started":
            h.started(m)
            started[m] += 1
        elif kind == "finished":
            h.finished(m)
            started[m] = max(0, started[m] - 1)
        elif kind == "usable":
            ok = h.usable(m, now)
            assert ok == (before in ("up", "retryable"))  # usable => not down, or the probe granted now
            if before == "retryable":
                assert h.state(m, now) == "probing" and not h.usable(m, now)  # exactly one probe
        elif kind == "advance":
            now += dt
        elif kind == "choose":
            probes = h.counts["probes"]
            got = choose(servers, h, now)
            names = [x.machine for x in got]
            assert len(names) == len(set(names)) <= max_parents
            assert all(h.state(x, now) in ("up", "probing") for x in names)
            assert h.counts["probes"] - probes <= 1
            if factor <= 0:
                assert names == [x for x in MACHINES if x in names]  # pure ring order
        elif kind == "retain":
            keep = set(MACHINES[:2])
            h.retain(keep)
            for x in MACHINES[2:]:
                started[x] = 0
        # invariants after every event
        for x in MACHINES:
            assert 0 <= h.in_flight(x) <= started[x]
            if h.state(x, now) == "up":
                assert h.usable(x, now)  # harmless: no side effect while up
        assert len(h) <= len(MACHINES)
        assert all(not p.idle() for p in h._p.values())  # only parents with something to remember
        deadline = h.next_deadline()
        down = [x for x in MACHINES if h.state(x, now) != "up"]
        assert (deadline is None) == (not down)
        json.dumps(h.status(now))
    h.retain(())
    assert len(h) == 0 and h.next_deadline() is None and h.status(now)["parents"] == {}
