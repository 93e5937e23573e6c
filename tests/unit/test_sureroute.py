"""SureRoute decisions (pure): races, hysteresis, failover order, failures, map changes."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from akacdn.edge.sureroute import DIRECT, Decision, Path, RaceSettings, Routes

S = RaceSettings()  # interval 1800, after_failure 5, width 3, margins 20 % and 10 ms, retry_failed 30
R1, R2, R3, R4 = (Path(f"r{i}") for i in range(1, 5))
ALL = [DIRECT, R1, R2, R3, R4]
PROPS = settings(max_examples=150, deadline=None)


def routes(candidates: list[Path] | None = None, s: RaceSettings = S) -> Routes:
    return Routes(ALL if candidates is None else candidates, s)


def race(r: Routes, now: float, times: dict[Path, float | None]) -> Decision:
    """Start a race and report `times` for the paths it races (unlisted ones take 10 s)."""
    paths = r.start_race(now)
    return r.raced(now, {p: times.get(p, 10.0) for p in paths})


def settled(primary: Path, now: float = 0.0) -> Routes:
    """Routes whose first race `primary` won at `now` with 0.100 s (the others raced took 1 s)."""
    r = routes()
    paths = r.start_race(now)
    results: dict[Path, float | None] = {p: 1.0 for p in paths}
    results[primary] = 0.100
    assert r.raced(now, results).primary == primary
    return r


# --- values ----------------------------------------------------------------------------


def test_path_labels_and_settings_validation() -> None:
    assert DIRECT.label == "direct" and Path(None) == DIRECT
    assert R1.label == "via r1" and len({Path("r1"), R1}) == 1
    for bad in (
        {"width": 1},
        {"after_failure": 0.0},
        {"after_failure": 2000.0},
        {"margin": -0.1},
        {"margin_abs": -1.0},
        {"race_timeout": 0.0},
    ):
        with pytest.raises(ValueError):
            RaceSettings(**bad)  # type: ignore[arg-type]


def test_direct_is_always_a_candidate_and_duplicates_go() -> None:
    r = Routes([R2, R1, R2])
    assert r.candidates == (DIRECT, R2, R1)
    assert r.primary == DIRECT


# --- races -----------------------------------------------------------------------------


def test_a_race_is_due_at_once_then_not_until_the_interval_passes() -> None:
    r = routes()
    assert r.race_due(-1e9) and r.next_deadline() < -1e9
    race(r, 100.0, {R2: 0.050})
    assert r.next_deadline() == 100.0 + S.interval
    assert not r.race_due(100.0 + S.interval - 0.001)
    assert r.race_due(100.0 + S.interval)


def test_a_started_race_is_not_due_again_until_it_reports_or_times_out() -> None:
    r = routes()
    r.start_race(0.0)
    assert not r.race_due(S.race_timeout - 0.001)
    assert r.race_due(S.race_timeout)  # the race never reported: race again
    r.start_race(S.race_timeout)
    r.raced(S.race_timeout + 1.0, {DIRECT: 0.2, R1: 0.1})
    assert not r.race_due(S.race_timeout + 2 * S.race_timeout)


def test_the_fastest_path_wins_the_first_race_and_direct_is_raced() -> None:
    r = routes()
    paths = r.start_race(0.0)
    assert paths == [DIRECT, R1, R2]  # direct, then the rank (nothing measured yet), width 3
    d = r.raced(0.0, {DIRECT: 0.300, R1: 0.120, R2: 0.080})
    assert d == Decision(R2, DIRECT, True, d.reason) and "beat direct" in d.reason
    assert r.primary == R2


def test_a_region_must_beat_working_direct_by_the_margins() -> None:
    r = routes()
    d = r.raced(0.0, {DIRECT: 0.100, R1: 0.099})  # 1 ms faster: well within the margins
    assert not d.changed and r.primary == DIRECT
    d = r.raced(S.interval, {DIRECT: 0.100, R1: 0.085})  # 15 ms but only 15 %
    assert not d.changed and r.primary == DIRECT
    d = r.raced(2 * S.interval, {DIRECT: 0.100, R1: 0.079})
    assert d.changed and r.primary == R1


def test_without_direct_the_first_race_has_no_hysteresis() -> None:
    r = routes()
    d = r.raced(0.0, {DIRECT: None, R1: 0.100, R2: 0.099})  # 1 ms faster: well within the margins
    assert d.changed and r.primary == R2


def test_the_route_returns_to_direct_once_it_works_and_no_region_beats_it() -> None:
    r = routes(s=RaceSettings(retry_failed=30.0))
    r.raced(0.0, {DIRECT: None, R1: 0.100})
    assert r.primary == R1
    d = r.raced(10.0, {DIRECT: 0.090, R1: 0.100})  # direct works again, but it failed 10 s ago: avoided
    assert not d.changed and r.primary == R1
    d = r.raced(40.0, {DIRECT: 0.090, R1: 0.100})  # no longer avoided: back to direct
    assert d == Decision(DIRECT, R1, True, d.reason) and "direct works" in d.reason


def test_equal_times_go_to_the_better_ranked_path() -> None:
    r = Routes([R2, DIRECT, R1])
    r.raced(0.0, {DIRECT: None, R1: 0.05, R2: 0.05})
    assert r.primary == R2


@pytest.mark.parametrize("width", [2, 3, 4, 5])
def test_width_is_respected_and_direct_and_the_primary_are_always_raced(width: int) -> None:
    r = routes(s=RaceSettings(width=width))
    r.raced(0.0, {DIRECT: None, R1: 0.5, R2: 0.4, R3: 0.3, R4: 0.1})  # direct failed, r4 won
    paths = r.start_race(S.interval)
    assert len(paths) == min(width, len(ALL)) and len(set(paths)) == len(paths)
    assert paths[:2] == [DIRECT, R4]  # direct although it failed last time
    assert paths[2:] == [R3, R2, R1][: width - 2]  # the others by their last result


def test_races_prefer_measured_paths_then_the_rank() -> None:
    r = routes()
    r.raced(0.0, {DIRECT: 0.1, R3: 0.2})
    assert r.start_race(S.interval) == [DIRECT, R3, R1]  # r3 measured; r1 ranks before r2, r4


def test_results_for_paths_that_are_not_candidates_or_not_times_are_ignored() -> None:
    r = routes([DIRECT, R1])
    r.raced(0.0, {DIRECT: 0.2, R1: 0.1, R4: 0.001, Path("x"): math.nan})
    assert r.primary == R1
    r2 = routes([DIRECT, R1])
    d = r2.raced(0.0, {R1: math.nan, DIRECT: -1.0})
    assert not d.changed and r2.primary == DIRECT and r2.race_due(S.after_failure)


# --- hysteresis ------------------------------------------------------------------------


def test_a_challenger_within_the_relative_margin_does_not_replace_the_primary() -> None:
    r = settled(R1)
    d = race(r, S.interval, {R1: 0.100, R2: 0.085})  # 15 ms (> 10 ms) but only 15 % (< 20 %) faster
    assert not d.changed and r.primary == R1 and "within the margins" in d.reason


def test_a_challenger_beyond_both_margins_replaces_the_primary() -> None:
    r = settled(R1)
    d = race(r, S.interval, {R1: 0.100, R2: 0.079})  # 21 ms and 21 % faster
    assert d == Decision(R2, R1, True, d.reason)
    assert r.primary == R2


def test_the_absolute_margin_is_also_required() -> None:
    r = settled(R1)
    d = race(r, S.interval, {R1: 0.030, R2: 0.022})  # 27 % but only 8 ms faster
    assert not d.changed and r.primary == R1
    d = race(r, 2 * S.interval, {R1: 0.030, R2: 0.018})  # 40 % and 12 ms faster
    assert d.changed and r.primary == R2


def test_the_relative_margin_is_also_required_for_slow_paths() -> None:
    r = settled(R1)
    assert not race(r, S.interval, {R1: 2.0, R2: 1.7}).changed  # 300 ms but only 15 % faster
    assert race(r, 2 * S.interval, {R1: 2.0, R2: 1.5}).changed  # 25 %


def test_a_primary_left_out_of_a_race_is_judged_on_its_last_result() -> None:
    r = settled(R1)  # r1 took 0.100 s
    d = r.raced(S.interval, {DIRECT: 0.5, R2: 0.090})  # the shell did not race r1: noise does not move it
    assert not d.changed and r.primary == R1
    d = r.raced(2 * S.interval, {DIRECT: 0.050})
    assert d.changed and r.primary == DIRECT


# --- failing races ---------------------------------------------------------------------


def test_a_primary_that_fails_a_race_is_replaced_at_once() -> None:
    r = settled(R1)
    d = race(r, S.interval, {R1: None, DIRECT: None, R2: 0.199})  # the fastest working path wins
    assert d == Decision(R2, R1, True, d.reason) and "failed the race" in d.reason
    assert set(r.order(S.interval)[-2:]) == {R1, DIRECT}  # and the failed paths are avoided
    r = settled(R1)
    d = race(r, S.interval, {R1: None, DIRECT: 0.200, R2: 0.199})  # direct works: it takes the route
    assert d == Decision(DIRECT, R1, True, d.reason)


def test_all_paths_failing_a_race_keeps_the_primary_and_says_so() -> None:
    r = settled(R1)
    t = S.interval
    d = race(r, t, {DIRECT: None, R1: None, R2: None})
    assert d == Decision(R1, R1, False, d.reason) and "no raced path worked" in d.reason
    assert not r.race_due(t + S.after_failure - 0.001) and r.race_due(t + S.after_failure)
    assert sorted(r.order(t), key=ALL.index) == ALL


def test_a_recently_failed_path_is_made_primary_only_if_nothing_else_works() -> None:
    r = settled(DIRECT)
    r.failed(10.0, DIRECT)  # routes around to r1 (raced, 1 s)
    assert r.primary == R1
    d = race(r, 15.0, {DIRECT: 0.010, R1: 0.500})  # direct works again, much faster, but failed 5 s ago
    assert not d.changed and r.primary == R1
    d = race(r, 16.0, {DIRECT: 0.010, R1: None, R2: None})  # nothing else works: direct after all
    assert d.changed and r.primary == DIRECT


def test_a_failed_path_competes_again_after_retry_failed() -> None:
    r = settled(DIRECT)
    r.failed(10.0, DIRECT)
    race(r, 15.0, {DIRECT: 0.010, R1: 0.500})
    assert r.primary == R1
    d = race(r, 10.0 + S.retry_failed, {DIRECT: 0.010, R1: 0.500})
    assert d.changed and r.primary == DIRECT


# --- request failures ------------------------------------------------------------------


def test_failed_on_the_primary_moves_to_the_next_path_at_once_and_schedules_a_race() -> None:
    r = settled(R1)
    r.raced(1.0, {DIRECT: 0.5, R1: 0.1, R2: 0.3, R3: 0.4})  # order: r1, r2, r3, direct, r4
    assert r.order(2.0) == [R1, R2, R3, DIRECT, R4]
    d = r.failed(100.0, R1)
    assert d is not None and d == Decision(R2, R1, True, d.reason)
    assert r.primary == R2 and r.order(100.0) == [R2, R3, DIRECT, R4, R1]
    assert r.next_deadline() == 100.0 + S.after_failure
    assert not r.race_due(100.0 + S.after_failure - 0.001) and r.race_due(100.0 + S.after_failure)


def test_failed_never_postpones_a_race_due_sooner() -> None:
    r = settled(R1, now=0.0)
    r.failed(S.interval - 1.0, R1)
    assert r.next_deadline() == S.interval  # the scheduled race, not 4 s after it
    r2 = routes()
    r2.failed(50.0, DIRECT)  # no race yet: still due at once
    assert r2.race_due(50.0)


def test_failures_elsewhere_do_not_move_the_primary_or_the_race() -> None:
    r = settled(R1)
    due = r.next_deadline()
    assert r.failed(5.0, R2) is None and r.failed(5.0, Path("gone")) is None
    assert r.primary == R1 and r.next_deadline() == due
    assert r.order(5.0)[-1] == R2


def test_late_failures_on_the_old_primary_move_the_primary_only_once() -> None:
    r = settled(R1)
    assert r.failed(10.0, R1) is not None
    new = r.primary
    for t in (10.1, 10.2, 10.5):  # requests that were in flight on r1
        assert r.failed(t, R1) is None
    assert r.primary == new


def test_failed_with_no_other_path_keeps_the_primary_and_says_so() -> None:
    r = routes([DIRECT])
    d = r.failed(3.0, DIRECT)
    assert d is not None and not d.changed and "no other path" in d.reason
    assert r.primary == DIRECT and r.order(3.0) == [DIRECT]


def test_all_paths_failing_requests_rotate_oldest_failure_first() -> None:
    r = routes([DIRECT, R1, R2])
    seen = [r.primary]
    for t in range(1, 7):
        r.failed(float(t), r.primary)
        seen.append(r.primary)
    assert seen == [DIRECT, R1, R2, DIRECT, R1, R2, DIRECT]


def test_a_success_clears_a_failure_only_if_the_request_started_after_it() -> None:
    r = settled(R1)
    r.raced(1.0, {DIRECT: 0.5, R1: 0.1, R2: 0.3})
    r.failed(10.0, R2)
    r.succeeded(11.0, R2, 2.0)  # started at 9, before the failure: proves nothing
    assert r.order(11.0)[-1] == R2
    r.succeeded(12.0, R2, 1.0)  # started at 11
    assert r.order(12.0) == [R1, R2, DIRECT, R3, R4]
    assert r.primary == R1  # and a success never moves the primary
    r.succeeded(13.0, R3, 0.001)
    assert r.primary == R1


# --- order -----------------------------------------------------------------------------


def test_order_is_a_permutation_with_the_primary_first_and_recent_failures_last() -> None:
    r = settled(R2)
    r.raced(1.0, {DIRECT: 0.3, R1: None, R2: 0.1, R3: 0.2})
    o = r.order(2.0)
    assert o == [R2, R3, DIRECT, R4, R1]  # measured by time, never raced, failed last
    r.failed(3.0, R3)
    r.failed(4.0, DIRECT)
    assert r.order(5.0) == [R2, R4, R1, R3, DIRECT]  # recent failures last, oldest first
    assert r.order(4.0 + S.retry_failed) == [R2, R3, DIRECT, R4, R1]  # the marks expired; r1 failed its race


# --- map changes -----------------------------------------------------------------------


def test_set_candidates_keeps_results_and_adds_direct() -> None:
    r = settled(R1)
    r.raced(1.0, {DIRECT: 0.5, R1: 0.1, R2: 0.3, R3: 0.2})
    assert r.set_candidates(2.0, [R4, R3, R2, R1]) is None  # the primary stays
    assert r.candidates == (DIRECT, R4, R3, R2, R1)
    assert r.order(2.0) == [R1, R3, R2, DIRECT, R4]  # results kept, r4 unmeasured


def test_set_candidates_replaces_a_vanished_primary_with_the_best_remaining() -> None:
    r = settled(R1)
    r.raced(1.0, {DIRECT: 0.5, R1: 0.1, R2: 0.3, R3: 0.2})
    d = r.set_candidates(50.0, [DIRECT, R2, R3])
    assert d is not None and d == Decision(R3, R1, True, d.reason)
    assert r.order(50.0) == [R3, R2, DIRECT]
    assert r.next_deadline() == 50.0 + S.after_failure
    r.set_candidates(60.0, [R1, R2, R3])  # r1 is back, unmeasured: its old result was dropped
    assert r.order(60.0) == [R3, R2, DIRECT, R1]


def test_status_reports_the_primary_and_each_path() -> None:
    r = settled(R1, now=7.0)
    r.failed(8.0, R2)
    info = r.status(9.0)
    assert info["primary"] == "via r1" and info["last_race_ago"] == 2.0 and not info["racing"]
    assert info["next_race_in"] == pytest.approx(7.0 + S.interval - 9.0)
    assert list(info["paths"]) == [p.label for p in r.order(9.0)]
    assert info["paths"]["via r1"]["seconds"] == 0.100
    assert info["paths"]["via r2"]["avoided"] and info["paths"]["via r2"]["failed_ago"] == 1.0
    assert info["paths"]["via r4"] == {"seconds": None, "raced_ago": None, "failed_ago": None, "avoided": False}


# --- properties ------------------------------------------------------------------------


@PROPS
@given(
    margin=st.floats(0.01, 0.5),
    margin_abs=st.floats(0.001, 0.1),
    width=st.integers(2, 5),
    races=st.lists(
        st.tuples(st.floats(0.001, 5.0), st.lists(st.floats(0.0, 0.99), min_size=5, max_size=5)),
        min_size=2,
        max_size=12,
    ),
)
def test_noise_within_the_margins_never_moves_the_primary_after_the_first_race(
    margin: float, margin_abs: float, width: int, races: list[tuple[float, list[float]]]
) -> None:
    s = RaceSettings(margin=margin, margin_abs=margin_abs, width=width)
    r = routes(s=s)
    first: Path | None = None
    for i, (base, noise) in enumerate(races):
        band = max(margin * base, margin_abs)  # every pair of times differs by < the margins
        now = i * s.interval
        assert r.race_due(now)
        paths = r.start_race(now)
        d = r.raced(now, {p: base + noise[ALL.index(p)] * band for p in paths})
        if first is None:
            first = d.primary
        else:
            assert not d.changed and r.primary == first, d.reason


REGIONS = [Path(f"r{i}") for i in range(1, 7)]
EVENTS = st.one_of(
    st.tuples(st.just("advance"), st.floats(0.0, 4000.0)),
    st.tuples(st.just("race"), st.lists(st.one_of(st.none(), st.floats(0.0, 3.0)), min_size=6, max_size=6)),
    st.tuples(st.just("lost_race"), st.none()),
    st.tuples(st.just("failed"), st.integers(0, 6)),
    st.tuples(st.just("succeeded"), st.tuples(st.integers(0, 6), st.floats(0.0, 60.0))),
    st.tuples(st.just("candidates"), st.permutations([DIRECT, *REGIONS]).map(lambda p: p[:4])),
    st.tuples(st.just("candidates"), st.lists(st.sampled_from(REGIONS), max_size=6)),
)


@PROPS
@given(
    width=st.integers(2, 4),
    retry_failed=st.sampled_from([0.0, 30.0, 600.0]),
    events=st.lists(EVENTS, max_size=60),
)
def test_invariants_hold_for_any_sequence_of_events(
    width: int, retry_failed: float, events: list[tuple[str, Any]]
) -> None:
    s = RaceSettings(width=width, retry_failed=retry_failed)
    r = Routes([DIRECT, *REGIONS[:3]], s)
    now = 0.0
    for kind, arg in events:
        d: Decision | None = None
        if kind == "advance":
            now += arg
        elif kind == "race":
            paths = r.start_race(now)
            assert paths[0] == DIRECT and r.primary in paths and len(set(paths)) == len(paths) <= width
            assert set(paths) <= set(r.candidates)
            d = r.raced(now, dict(zip(paths, arg, strict=False)))
            assert now <= r.next_deadline() <= now + s.interval
        elif kind == "lost_race":
            r.start_race(now)
            assert not r.race_due(now) and r.race_due(now + s.race_timeout)
        elif kind == "failed":
            path = ([DIRECT, *REGIONS])[arg]
            before = r.primary
            d = r.failed(now, path)
            if path != before:
                assert d is None and r.primary == before
            else:
                assert d is not None and r.next_deadline() <= now + s.after_failure
                assert d.changed == (len(r.candidates) > 1)
        elif kind == "succeeded":
            before = r.primary
            r.succeeded(now, ([DIRECT, *REGIONS])[arg[0]], arg[1])
            assert r.primary == before
        else:
            d = r.set_candidates(now, arg)
            assert DIRECT in r.candidates and set(r.candidates) == {DIRECT, *arg}
        if d is not None:
            assert d.primary == r.primary and d.changed == (d.primary != d.previous) and d.reason
        assert r.primary in r.candidates
        order = r.order(now)
        assert order[0] == r.primary and sorted(order, key=str) == sorted(r.candidates, key=str)
        assert r.next_deadline() <= now + max(s.interval, s.race_timeout)
        r.status(now)
