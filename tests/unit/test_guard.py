"""Flap damping and the map guard (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from akacdn.mapping.guard import Damping, MapGuard, capacity
from akacdn.mapping.maps import LowMap, RegionServers, Server


def test_one_or_two_failures_are_never_damped() -> None:
    d = Damping(penalty=1000, suppress=2000, reuse=750, half_life=30, max_suppress=300)
    assert not d.changed("e1", 0.0)  # down (and back)
    assert not d.changed("e1", 5.0)  # down again: 1000*0.89 + 1000 < 2000
    assert not d.damped("e1", 5.0)


def test_a_flapping_machine_is_held_out_then_reused_after_decay() -> None:
    d = Damping(penalty=1000, suppress=2000, reuse=750, half_life=30, max_suppress=300)
    for t in (0.0, 1.0, 2.0):
        d.changed("e1", t)
    assert d.damped("e1", 3.0)
    # ~2970 at t=2; below 750 after two half-lives more than log2(2970/750) = 1.99 of 30 s
    assert d.damped("e1", 60.0) and not d.damped("e1", 62.0)
    assert not d.damped("e2", 3.0)  # the others are not concerned


def test_suppression_never_outlasts_max_suppress_after_the_last_flap() -> None:
    d = Damping(penalty=1000, suppress=2000, reuse=750, half_life=30, max_suppress=120)
    for t in range(100):
        d.changed("e1", float(t))
    assert d.damped("e1", 100.0)
    assert not d.damped("e1", 99.0 + 120.0 + 0.5)


@given(flaps=st.lists(st.floats(0, 1000), max_size=50))
def test_damped_only_after_enough_recent_flaps(flaps: list[float]) -> None:
    d = Damping()
    for t in sorted(flaps):
        d.changed("x", t)
        assert d.penalty_of("x", t) <= d.ceiling + 1e-6
    if len(flaps) < 3:
        assert not d.damped("x", max(flaps, default=0.0))  # two flaps never suppress (< 2000)


def test_forget_bounds_the_table() -> None:
    d = Damping(half_life=1.0)
    d.changed("e1", 0.0)
    d.forget(100.0)
    assert d.penalty_of("e1", 100.0) == 0.0 and not d._m


def test_settings_checked() -> None:
    with pytest.raises(ValueError):
        Damping(suppress=500, reuse=750)


def _low(*regions: tuple[str, int, int]) -> LowMap:
    """(region, live edges, capacity each)."""
    rs = tuple(
        RegionServers(r, tuple(Server(f"{r}-e{i}", r, f"198.18.0.{i}", cap) for i in range(n)), n >= 2)
        for r, n, cap in regions
    )
    return LowMap((1, 1), 0.0, rs)


def test_guard_refuses_a_map_that_leaves_no_edge_and_takes_one_with_any() -> None:
    g = MapGuard()
    assert g.check(0.0, _low(("r1", 0, 100), ("r2", 0, 100)), None) == "no edge would be left to serve"
    assert g.check(0.0, _low(("r1", 1, 100), ("r2", 0, 100)), None) is None  # the LLNS's last resort serves
    assert g.check(0.0, _low(("r1", 2, 100)), None) is None


def test_guard_holds_a_big_capacity_drop_until_it_lasts() -> None:
    g = MapGuard(max_drop=0.5, confirm=10.0)
    last = _low(("r1", 3, 100), ("r2", 3, 100))  # 600
    small = _low(("r1", 2, 100))  # 200: a 67 % drop
    assert capacity(last) == 600
    assert "capacity 200" in (g.check(0.0, small, last) or "")
    assert g.check(9.0, small, last) is not None
    assert g.check(10.0, small, last) is None  # lasted: real
    # a drop that goes away resets the clock
    g2 = MapGuard(max_drop=0.5, confirm=10.0)
    assert g2.check(0.0, small, last) is not None
    assert g2.check(5.0, last, last) is None
    assert g2.check(6.0, small, last) is not None and g2.check(15.0, small, last) is not None
    assert g.check(0.0, _low(("r1", 3, 100), ("r2", 2, 100)), last) is None  # a small drop passes


def test_guard_holds_a_big_drop_that_comes_in_small_steps() -> None:
    # six edges of nine die within a few hundred ms: one map per expiry, each step small
    g = MapGuard(max_drop=0.5, confirm=10.0)
    full = _low(("r1", 3, 100), ("r2", 3, 100), ("r3", 3, 100))  # 900
    eight = _low(("r1", 2, 100), ("r2", 3, 100), ("r3", 3, 100))  # 800: passes (11 %)
    four = _low(("r2", 1, 100), ("r3", 3, 100))  # 400 of the 900 published just before: held
    assert g.check(0.0, eight, full) is None
    assert "capacity 400" in (g.check(0.2, four, eight) or "")
    assert g.check(10.2, four, eight) is None  # it lasted: real
