"""Zoned releases: phases of a good release, each abort rule, freezing, Table 1 durations, the
zones `plan` picks, and properties over random sequences of reports and ticks. No real time."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from akacdn.mapping.assign import score
from akacdn.mapping.rollout import TABLE1, Order, Release, Rollout, Settings, Target, plan

S = Settings(time_scale=0.01)  # customer: phase one 9 s, phase two 12 s
REGIONS = ("r1", "r2", "r3")
TARGETS = [
    *(Target(f"{r}-e{i}", "edge", r) for r in REGIONS for i in range(1, 4)),
    *(Target(f"{r}-ns", "llns", r) for r in REGIONS),
    Target("tlns1", "tlns", ""),
    Target("tlns2", "tlns", ""),
]
ALL = [t.machine for t in TARGETS]
EDGES = [t.machine for t in TARGETS if t.role == "edge"]
ROLE = {t.machine: t.role for t in TARGETS}
REGION = {t.machine: t.region for t in TARGETS}


def new(kind: str = "customer", s: Settings = S, targets: list[Target] = TARGETS) -> Rollout:
    ro = Rollout(plan("b2", "b1", kind, "v2", targets, [t.machine for t in targets], 0.0, s), s)
    ro.start(0.0)
    return ro


def apply(ro: Rollout, machines: list[str], now: float) -> None:
    for m in machines:
        ro.running(m, "b2", now)


def baseline(ro: Rollout) -> list[str]:
    started = {m for p in ro.release.phases if p.started_at is not None for m in p.machines}
    return [m for m in EDGES if m not in started]


def traffic(ro: Rollout, machines: list[str], requests: int = 50, errors: int = 0) -> None:
    for m in machines:
        if ROLE[m] == "edge":
            ro.reported(m, requests, errors)


def healthy(ro: Rollout, now: float) -> None:
    """The current phase's machines apply the bundle, and everyone serves error-free traffic."""
    apply(ro, ro.release.phases[ro.release.phase].machines, now)
    traffic(ro, ro.release.phases[ro.release.phase].machines)
    traffic(ro, baseline(ro))


def before(t: float) -> float:
    return math.nextafter(t, -math.inf)


# --- a good release ------------------------------------------------------------------------


def test_good_release_goes_phase_by_phase_to_done() -> None:
    ro = new()
    p1, p2, world = ro.release.phases
    first = p1.machines[0]
    assert ro.order() == Order("b2", "b1", (first,), False)
    assert ro.order().bundle_for(first) == "b2"
    assert ro.order().bundle_for(p2.machines[0]) == "b1"
    assert ro.order().bundle_for("tlns1") == "b1"

    healthy(ro, 1.0)
    assert ro.tick(before(p1.min_duration)) == []
    assert p2.started_at is None
    events = ro.tick(p1.min_duration)
    assert [e.kind for e in events] == ["phase_passed", "phase_started"]
    assert (p1.verdict, p1.ended_at, p2.started_at) == ("passed", 9.0, 9.0)
    order = ro.order()
    assert order.zone == (first, *p2.machines) and not order.world
    assert order.bundle_for(first) == "b2" and order.bundle_for(p2.machines[-1]) == "b2"
    assert order.bundle_for("tlns1") == "b1" and order.bundle_for(world.machines[0]) == "b1"

    healthy(ro, 10.0)
    assert ro.tick(before(9.0 + p2.min_duration)) == []
    events = ro.tick(9.0 + p2.min_duration)
    assert [e.kind for e in events] == ["phase_passed", "phase_started"]
    assert ro.order().world and ro.order().bundle_for("tlns1") == "b2"
    assert ro.tick(22.0) == []  # the world has not applied yet
    apply(ro, world.machines, 22.5)
    assert [e.kind for e in ro.tick(23.0)] == ["phase_passed", "done"]
    assert (ro.release.state, ro.release.ended_at, ro.next_deadline()) == ("done", 23.0, None)
    assert all(ro.order().bundle_for(m) == "b2" for m in ALL)
    lines = ro.timeline()
    assert lines[0] == f"phase one machine [{first}]: 0.0 -> 9.0 passed"
    assert lines[2].startswith("phase world [") and lines[2].endswith("21.0 -> 23.0 passed")
    assert lines[-1] == "release b2 (customer v2): done"


def test_persisted_release_resumes_after_a_restart() -> None:
    ro = new()
    healthy(ro, 1.0)
    ro.tick(9.0)
    saved = msgspec.json.encode(ro.release)
    again = Rollout(msgspec.json.decode(saved, type=Release), S)
    assert again.start(9.5) == [] and again.release.phases[1].started_at == 9.0  # start is idempotent
    healthy(again, 10.0)
    assert [e.kind for e in again.tick(21.0)] == ["phase_passed", "phase_started"]


def test_the_shell_sleeping_on_next_deadline_reaches_done() -> None:
    ro = new()
    assert ro.next_deadline() == 9.0  # phase one's minimum comes before the apply timeout
    now, wakeups = 0.0, []
    while True:
        healthy(ro, now)  # machines answer at once
        if ro.tick(now):
            continue  # a new order: the machines answer it, then the shell ticks again
        deadline = ro.next_deadline()
        if deadline is None:
            break
        now = deadline
        wakeups.append(now)
    assert wakeups == [9.0, 21.0]
    assert ro.release.state == "done" and ro.release.phases[2].started_at == 21.0


def test_next_deadline_moves_to_the_data_wait_then_the_apply_timeout() -> None:
    ro = new()
    ro.tick(9.0)  # the minimum is over, but nothing applied and no data
    assert ro.next_deadline() == 27.0  # 9 s * data_wait 3
    first = ro.release.phases[0].machines[0]
    ro.running(first, "b2", 10.0)
    ro.tick(10.0)
    assert ro.next_deadline() == 27.0
    ro.running(first, "b1", 11.0)  # went back to the old bundle
    ro.tick(11.0)
    assert ro.next_deadline() == 27.0
    ro.tick(27.0)
    assert ro.release.state == "aborted" and ro.next_deadline() is None


# --- aborts --------------------------------------------------------------------------------


def test_a_roll_in_phase_one_aborts_and_everyone_goes_back() -> None:
    ro = new()
    first = ro.release.phases[0].machines[0]
    healthy(ro, 1.0)
    ro.rolled(baseline(ro)[0], 2.0)  # not in the zone: not the release's doing
    assert ro.tick(2.0) == []
    ro.rolled(first, 3.0)
    events = ro.tick(3.0)
    assert [e.kind for e in events] == ["aborted"] and first in events[0].detail
    assert ro.release.state == "aborted" and "rolled" in ro.release.reason
    assert ro.order() == Order("b1", "b1", (), True)
    assert all(ro.order().bundle_for(m) == "b1" for m in ALL)
    healthy(ro, 4.0)
    assert ro.tick(100.0) == [] and ro.release.phases[1].started_at is None
    lines = ro.timeline()
    assert lines[0] == f"phase one machine [{first}]: 0.0 -> 3.0 {ro.release.reason}"
    assert lines[1].endswith("not started") and "rolled" in lines[-1] and "back to b1" in lines[-1]


def test_a_roll_of_a_phase_one_machine_aborts_phase_two() -> None:
    ro = new()
    healthy(ro, 1.0)
    ro.tick(9.0)
    ro.rolled(ro.release.phases[1].machines[0], 8.5)  # stamped before its phase started
    assert ro.tick(10.0) == [] and ro.ignored["not in zone"] == 1
    ro.rolled(ro.release.phases[0].machines[0], 10.0)
    assert [e.kind for e in ro.tick(10.0)] == ["aborted"]
    assert ro.release.phases[1].verdict.endswith("rolled during phase one region")
    assert ro.release.phases[0].verdict == "passed" and ro.release.phases[2].started_at is None


@pytest.mark.parametrize(
    ("zone", "base", "aborts"),
    [
        ((100, 10), (1000, 10), True),  # 10% vs 1%: over 1% + 1%
        ((100, 1), (1000, 10), False),  # 1% vs 1%
        ((100, 8), (1000, 50), False),  # 8% vs 5%: under 5% + 5%
        ((100, 11), (1000, 50), True),
        ((100, 2), (0, 0), True),  # no baseline data: rate 0, gap 1%
        ((100, 5), (10, 5), True),  # a baseline under min_requests counts as rate 0, not 50%
        ((10, 10), (1000, 0), False),  # under min_requests: no verdict yet
    ],
)
def test_error_rate_against_the_baseline(zone: tuple[int, int], base: tuple[int, int], aborts: bool) -> None:
    ro = new()
    first = ro.release.phases[0].machines[0]
    ro.running(first, "b2", 1.0)
    ro.reported(first, *zone)
    ro.reported(baseline(ro)[0], *base)
    ro.tick(2.0)
    assert (ro.release.state == "aborted") == aborts
    if aborts:
        assert ro.release.reason.startswith(f"error rate {zone[1] / zone[0]:.2%} over {zone[0]} requests")


def test_the_baseline_counts_from_the_phase_start() -> None:
    ro = new()
    healthy(ro, 1.0)
    traffic(ro, baseline(ro), 1000, 500)  # a bad baseline during phase one
    ro.tick(9.0)
    zone = ro.release.phases[1].machines
    apply(ro, zone, 10.0)
    traffic(ro, baseline(ro), 1000, 0)
    traffic(ro, zone, 100, 10)  # 10% against a clean baseline in this phase
    assert ro.tick(11.0)[0].kind == "aborted" and "baseline 0.00%" in ro.release.reason


def test_zone_traffic_counts_only_once_it_runs_the_bundle() -> None:
    ro = new()
    first = ro.release.phases[0].machines[0]
    ro.reported(first, 100, 100)  # still on the old bundle
    ro.running(first, "b2", 1.0)
    assert ro.tick(2.0) == [] and ro.ignored["not yet on bundle"] == 1


def test_a_zone_without_enough_data_waits_then_aborts() -> None:
    ro = new()
    first = ro.release.phases[0].machines[0]
    ro.running(first, "b2", 1.0)
    ro.reported(first, 5, 0)
    traffic(ro, baseline(ro))
    assert ro.tick(9.0) == [] and ro.release.phase == 0
    assert ro.tick(before(27.0)) == []
    assert [e.kind for e in ro.tick(27.0)] == ["aborted"]
    assert ro.release.reason.startswith("not enough data: 5 of 20 requests")


def test_a_machine_not_applying_in_time_aborts() -> None:
    ro = new(s=Settings(time_scale=0.01, apply_timeout=5.0))
    first = ro.release.phases[0].machines[0]
    ro.running(first, "b1", 1.0)
    assert ro.tick(before(5.0)) == []
    assert [e.kind for e in ro.tick(5.0)] == ["aborted"]
    assert ro.release.reason == f"{first} not running b2 5 s after phase one machine started"


def test_a_late_machine_in_phase_two_aborts_unscaled() -> None:
    ro = new(s=Settings(time_scale=0.01, apply_timeout=5.0))
    healthy(ro, 1.0)
    ro.tick(9.0)
    late = ro.release.phases[1].machines[0]
    apply(ro, ro.release.phases[1].machines[1:], 10.0)
    assert ro.tick(before(14.0)) == []
    assert ro.tick(14.0)[0].kind == "aborted" and ro.release.reason.startswith(f"{late} not running b2 5 s")


def test_a_refusal_aborts_with_its_reason() -> None:
    ro = new()
    first = ro.release.phases[0].machines[0]
    ro.refused("tlns1", "bad signature", 1.0)  # not in the zone: it was not asked
    assert ro.tick(1.0) == []
    ro.refused(first, "bad signature", 1.0)
    assert ro.tick(1.0)[0].kind == "aborted"
    assert ro.release.reason == f"{first} refused b2: bad signature"
    assert "bad signature" in ro.timeline()[0]


def test_inputs_are_never_rejected_by_raising() -> None:
    ro = new()
    ro.reported("nobody", 10, 0)
    ro.rolled("nobody", 1.0)
    ro.running("nobody", "b2", 1.0)
    ro.refused("nobody", "x", 1.0)
    ro.reported(EDGES[0], 5, 6)
    ro.reported(EDGES[0], -1, 0)
    assert ro.ignored["unknown"] == 4 and ro.ignored["bad report"] == 2
    assert ro.tick(1.0) == [] and ro.release.state == "running"


# --- freezing ------------------------------------------------------------------------------


def test_frozen_nothing_advances_then_it_does() -> None:
    ro = new()
    healthy(ro, 1.0)
    assert ro.tick(2.0, frozen=True) == []
    assert ro.next_deadline() is None  # the phase clock stopped; the machine has applied
    assert ro.tick(12.0, frozen=True) == []  # 12 s > 9 s, but frozen
    assert ro.tick(12.0) == []  # 10 s frozen: the phase clock says 2 s
    assert ro.next_deadline() == 19.0
    assert ro.tick(before(19.0)) == []
    assert [e.kind for e in ro.tick(19.0)] == ["phase_passed", "phase_started"]
    assert ro.release.phases[0].paused == 10.0 and ro.release.phases[1].started_at == 19.0
    assert "(frozen 10.0 s)" in ro.timeline()[0]


def test_frozen_a_phase_past_its_minimum_waits() -> None:
    ro = new()
    first = ro.release.phases[0].machines[0]
    assert ro.tick(10.0) == []  # the minimum is over, but the machine has not applied
    ro.running(first, "b2", 10.5)
    traffic(ro, [first, *baseline(ro)])
    assert ro.tick(11.0, frozen=True) == [] and ro.release.phase == 0
    assert [e.kind for e in ro.tick(15.0)] == ["phase_passed", "phase_started"]


def test_frozen_aborts_still_happen() -> None:
    ro = new()
    healthy(ro, 1.0)
    ro.tick(2.0, frozen=True)
    ro.rolled(ro.release.phases[0].machines[0], 3.0)
    assert [e.kind for e in ro.tick(3.0, frozen=True)] == ["aborted"]


# --- the plan ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["customer", "system", "software"])
def test_table1_durations_scaled(kind: str) -> None:
    s = Settings(time_scale=0.5, world_min=100.0)
    p1, p2, world = new(kind, s).release.phases
    assert (p1.min_duration, p2.min_duration, world.min_duration) == (
        TABLE1[kind][0] * 0.5,
        TABLE1[kind][1] * 0.5,
        50.0,
    )
    assert [p.name for p in (p1, p2, world)] == ["one machine", "one region", "world"]


def test_table1_values() -> None:
    assert TABLE1 == {"customer": (900.0, 1200.0), "system": (1800.0, 7200.0), "software": (86400.0, 86400.0)}


def test_plan_refuses_only_bad_types_and_no_live_edge() -> None:
    with pytest.raises(ValueError):
        plan("b2", "b1", "firmware", "v", TARGETS, ALL, 0.0, S)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        plan("b2", "b1", "customer", "v", TARGETS, ["r1-ns", "tlns1", "r1-e9"], 0.0, S)


def test_zones_one_edge_then_its_region_then_everyone() -> None:
    p1, p2, world = plan("b2", "b1", "customer", "v", TARGETS, ALL, 0.0, S).phases
    (first,) = p1.machines
    assert first == max(EDGES, key=lambda m: score("b2", m))
    assert p2.machines == sorted(m for m in ALL if REGION[m] == REGION[first] and m != first)
    assert {ROLE[m] for m in p2.machines} == {"edge", "llns"}
    assert {"tlns1", "tlns2"} <= set(world.machines)
    assert sorted(p1.machines + p2.machines + world.machines) == sorted(ALL)
    assert plan("b2", "b1", "customer", "v", TARGETS, ALL, 5.0, S).phases == [p1, p2, world]  # deterministic


def test_phase_one_is_live_and_phase_two_takes_live_or_not() -> None:
    top = plan("b2", "b1", "customer", "v", TARGETS, ALL, 0.0, S).phases[0].machines[0]
    p1 = plan("b2", "b1", "customer", "v", TARGETS, [m for m in ALL if m != top], 0.0, S).phases[0]
    assert p1.machines != [top] and p1.machines[0] in EDGES
    p1, p2, _ = plan("b2", "b1", "customer", "v", TARGETS, [top], 0.0, S).phases
    assert p1.machines == [top]
    assert p2.machines == sorted(m for m in ALL if REGION[m] == REGION[top] and m != top)  # down ones too


def test_a_lone_edge_region_hands_phase_two_to_the_next_region() -> None:
    top = plan("b2", "b1", "customer", "v", TARGETS, ALL, 0.0, S).phases[0].machines[0]
    alone = [t for t in TARGETS if t.region != REGION[top] or t.machine == top]
    p1, p2, world = plan("b2", "b1", "customer", "v", alone, ALL, 0.0, S).phases
    nxt = max((r for r in REGIONS if r != REGION[top]), key=lambda r: score("b2", r))
    assert p1.machines == [top]
    assert p2.machines == sorted(m for m in ALL if REGION[m] == nxt)


def test_phase_two_never_takes_tlnses() -> None:
    top = plan("b2", "b1", "customer", "v", TARGETS, ALL, 0.0, S).phases[0].machines[0]
    alone = [t for t in TARGETS if t.machine == top or t.role == "tlns"]
    p1, p2, world = plan("b2", "b1", "customer", "v", alone, ALL, 0.0, S).phases
    assert (p1.machines, p2.machines, world.machines) == ([top], [], ["tlns1", "tlns2"])


def test_an_empty_world_finishes_in_the_tick_that_passes_phase_two() -> None:
    ro = new(targets=[Target("r1-e1", "edge", "r1"), Target("r1-e2", "edge", "r1")])
    healthy(ro, 1.0)
    ro.tick(9.0)
    healthy(ro, 10.0)
    assert [e.kind for e in ro.tick(21.0)] == ["phase_passed", "phase_started", "phase_passed", "done"]
    assert ro.tick(21.0) == []


def test_a_nameserver_only_phase_passes_on_application() -> None:
    small = [Target("r1-e1", "edge", "r1"), Target("r1-ns", "llns", "r1"), Target("tlns1", "tlns", "")]
    ro = new(targets=small)
    assert ro.release.phases[1].machines == ["r1-ns"]
    ro.running("r1-e1", "b2", 1.0)
    ro.reported("r1-e1", 30, 0)
    ro.tick(9.0)
    ro.running("r1-ns", "b2", 10.0)
    assert [e.kind for e in ro.tick(21.0)] == ["phase_passed", "phase_started"]  # no traffic needed


# --- properties ----------------------------------------------------------------------------

SMALL = [
    Target("r1-e1", "edge", "r1"),
    Target("r1-e2", "edge", "r1"),
    Target("r1-ns", "llns", "r1"),
    Target("r2-e1", "edge", "r2"),
    Target("r2-ns", "llns", "r2"),
    Target("tlns1", "tlns", ""),
]
SMALL_IDS = [t.machine for t in SMALL]
machine = st.sampled_from([*SMALL_IDS, "nobody"])
healthy_step = st.tuples(st.just("healthy"), st.floats(0.0, 15.0))  # weighted up: releases get far
op = st.one_of(
    healthy_step,
    healthy_step,
    healthy_step,
    healthy_step,
    st.tuples(st.just("wait"), st.floats(0.0, 15.0), st.booleans()),
    st.tuples(st.just("apply")),
    st.tuples(st.just("traffic"), st.sampled_from([0, 1, 15])),
    st.tuples(st.sampled_from(["roll", "refuse"]), machine),
    st.tuples(st.just("run"), machine, st.sampled_from(["b1", "b2"])),
    st.tuples(st.just("report"), machine, st.integers(-2, 40), st.integers(-1, 40)),
)


def check(ro: Rollout) -> None:
    r, order = ro.release, ro.order()
    phases = r.phases
    for i, p in enumerate(phases):
        if i > r.phase:
            assert p.started_at is None
        if p.started_at is not None and i + 1 < len(phases) and phases[i + 1].started_at is not None:
            assert p.verdict == "passed" and p.ended_at is not None and p.ended_at <= phases[i + 1].started_at
        if p.verdict == "passed":
            assert p.ended_at is not None and p.started_at is not None
            assert p.ended_at - p.started_at - p.paused >= p.min_duration - 1e-9
    started = {m for p in phases if p.started_at is not None for m in p.machines}
    for m in SMALL_IDS:
        if order.bundle_for(m) == r.bundle:
            assert order.world or m in started
    assert order.world == (r.state != "running" or phases[-1].started_at is not None)
    if r.state == "aborted":
        assert r.reason and all(order.bundle_for(m) == r.previous for m in SMALL_IDS)
    if r.state == "done":
        assert all(p.verdict == "passed" for p in phases)


@settings(max_examples=150, deadline=None)
@given(st.lists(op, min_size=10, max_size=40))
def test_random_sequences_keep_the_invariants(ops: list[tuple]) -> None:
    s = Settings(time_scale=0.01, apply_timeout=20.0)
    ro = Rollout(plan("b2", "b1", "customer", "v", SMALL, SMALL_IDS, 0.0, s), s)
    ro.start(0.0)
    now, final = 0.0, None
    for o in ops:
        if o[0] == "wait":
            now += o[1]
            ro.tick(now, o[2])
            snap = msgspec.json.encode(ro.release)
            assert ro.tick(now, o[2]) == [] and msgspec.json.encode(ro.release) == snap  # idempotent
        elif o[0] == "healthy":
            apply(ro, [m for m in SMALL_IDS if ro.order().bundle_for(m) == "b2"], now)
            for m in ("r1-e1", "r1-e2", "r2-e1"):
                ro.reported(m, 30, 0)
            now += o[1]
            ro.tick(now)
        elif o[0] == "apply":
            apply(ro, [m for m in SMALL_IDS if ro.order().bundle_for(m) == "b2"], now)
        elif o[0] == "traffic":
            for m in ("r1-e1", "r1-e2", "r2-e1"):
                ro.reported(m, 30, o[1])
        elif o[0] == "roll":
            ro.rolled(o[1], now)
        elif o[0] == "refuse":
            ro.refused(o[1], "no", now)
        elif o[0] == "run":
            ro.running(o[1], o[2], now)
        else:
            ro.reported(o[1], o[2], o[3])
        check(ro)
        if final is not None:
            assert msgspec.json.encode(ro.release) == final, "a finished release changed"
        elif ro.release.state != "running":
            final = msgspec.json.encode(ro.release)


def test_without_a_data_guard_a_phase_without_traffic_passes_on_application_and_time() -> None:
    # min_requests 0 (a devnet nobody sends traffic to): no error-rate verdict on nothing
    ro = new(s=Settings(time_scale=0.01, min_requests=0))
    p1 = ro.release.phases[0]
    apply(ro, p1.machines, 1.0)
    assert ro.tick(p1.min_duration * 10) and p1.verdict == "passed"
    assert ro.release.state == "running" and ro.release.phase == 1
