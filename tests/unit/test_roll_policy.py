"""The roll policy (pure, wall-clock time passed in): first rolls restart at once, the
`roll_limit`-th roll within `roll_window` long-sleeps, a roll on probation sleeps twice as
long (capped), `healthy_reset` of serving forgets it all, a clean stop is no roll."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from akacdn.config import RecoverySettings
from akacdn.recovery.policy import RollLog, RollPolicy, Start

S = RecoverySettings(roll_limit=3, roll_window=100.0, long_sleep=10.0, long_sleep_max=35.0, healthy_reset=200.0)
PROPS = settings(max_examples=200, deadline=None)


def asleep_at_3() -> RollPolicy:
    """A daemon that started cleanly at 0 and rolled at 1, 2 and 3: the third roll sleeps 10 s."""
    p = RollPolicy(S)
    p.start(0.0)
    p.start(1.0)
    p.start(2.0)
    assert p.start(3.0).sleep == 10.0
    return p


def test_a_first_start_is_no_roll_and_marks_the_run() -> None:
    p = RollPolicy(S)
    assert p.start(50.0) == Start(rolled=False, sleep=0.0, rolls=0)
    assert p.log.running and p.log.started_at == 50.0 and p.log.rolls == []


def test_first_rolls_restart_at_once_and_the_limit_th_within_the_window_long_sleeps() -> None:
    p = RollPolicy(S)
    p.start(0.0)
    # `running` is still set at the next start: the last run rolled
    assert p.start(1.0) == Start(rolled=True, sleep=0.0, rolls=1)
    assert p.start(2.0) == Start(rolled=True, sleep=0.0, rolls=2)
    third = p.start(3.0)
    assert (third.rolled, third.sleep, third.rolls) == (True, S.long_sleep, 3)
    assert "3 rolls within 100s" in third.reason
    log = p.log
    assert log.sleeps == 1 and log.woke_at == 13.0 and log.started_at == 13.0  # the run starts when it wakes
    assert log.rolls == []  # counted afresh after the sleep


def test_a_roll_on_probation_sleeps_twice_as_long_capped_at_long_sleep_max() -> None:
    p = asleep_at_3()  # woke at 13
    second = p.start(20.0)  # a single roll, but on probation
    assert (second.rolled, second.sleep, second.rolls) == (True, 20.0, 1)
    assert "probation" in second.reason
    assert p.log.woke_at == 40.0
    assert p.start(41.0).sleep == 35.0  # 40, capped
    assert p.start(77.0).sleep == 35.0  # stays at the cap
    assert p.log.sleeps == 4


def test_probation_lasts_healthy_reset_after_waking() -> None:
    p = asleep_at_3()  # woke at 13
    assert p.start(13.0 + S.healthy_reset - 0.1).sleep == 20.0  # still on probation
    q = asleep_at_3()
    late = q.start(13.0 + S.healthy_reset)  # probation over: a single roll restarts at once
    assert late.rolled and late.sleep == 0.0 and late.rolls == 1


def test_rolls_outside_the_window_are_forgotten() -> None:
    p = RollPolicy(S)
    p.start(0.0)
    p.start(1.0)
    p.start(2.0)
    late = p.start(102.5)  # the rolls at 1 and 2 are more than 100 s old
    assert (late.rolled, late.sleep, late.rolls) == (True, 0.0, 1)
    assert p.log.rolls == [102.5]
    q = RollPolicy(S)
    q.start(0.0)
    q.start(1.0)
    q.start(2.0)
    edge = q.start(101.0)  # the roll at 1 is exactly roll_window old: still within it
    assert edge.rolls == 3 and edge.sleep == S.long_sleep


def test_serving_healthy_reset_forgets_sleeps() -> None:
    p = asleep_at_3()  # this run started (woke) at 13
    assert not p.serving(13.0 + S.healthy_reset - 0.1)
    assert p.log.sleeps == 1
    assert p.serving(13.0 + S.healthy_reset)
    assert (p.log.rolls, p.log.sleeps, p.log.woke_at) == ([], 0, 0.0)
    assert p.log.running  # still serving
    assert not p.serving(1000.0)  # nothing left to forget: "now" is False
    first = p.start(1001.0)
    assert first.rolled and first.sleep == 0.0 and first.rolls == 1  # no probation any more
    p.start(1002.0)
    assert p.start(1003.0).sleep == S.long_sleep  # the first length again, not 20


def test_serving_healthy_reset_forgets_rolls_still_within_the_window() -> None:
    s = msgspec.structs.replace(S, roll_window=1000.0)
    p = RollPolicy(s)
    p.start(0.0)
    p.start(1.0)
    p.start(2.0)  # two rolls, this run started at 2
    assert not p.serving(201.9)
    assert p.serving(202.0)
    nxt = p.start(203.0)  # without the reset this would be the third roll within the window
    assert nxt.rolls == 1 and nxt.sleep == 0.0


def test_serving_while_asleep_is_no_healthy_reset() -> None:
    p = asleep_at_3()  # asleep until 13
    assert not p.serving(12.0)
    assert p.log.sleeps == 1


def test_a_clean_stop_is_no_roll() -> None:
    p = RollPolicy(S)
    p.start(0.0)
    p.stopped()
    assert not p.log.running
    for t in range(1, 10):
        st_ = p.start(float(t))
        assert not st_.rolled and st_.sleep == 0.0 and st_.rolls == 0
        p.stopped()
    p.start(10.0)
    assert p.start(11.0).rolled  # not stopped this time


def test_a_crash_record_is_a_roll_even_when_running_was_cleared() -> None:
    p = RollPolicy(S)
    p.start(0.0)
    for t, n in ((1.0, 1), (2.0, 2)):
        p.stopped()  # e.g. the shell cleared the mark on its way out
        assert p.start(t, crashed=True) == Start(rolled=True, sleep=0.0, rolls=n)
    p.stopped()
    assert p.start(3.0, crashed=True).sleep == S.long_sleep


def test_the_log_persists_between_processes() -> None:
    """The shell stores the log as JSON per component: a new process continues the count."""
    enc, dec = msgspec.json.Encoder(), msgspec.json.Decoder(RollLog)
    p = RollPolicy(S)
    p.start(0.0)
    p.start(1.0)
    p.start(2.0)
    again = RollPolicy(S, dec.decode(enc.encode(p.log)))
    assert again.start(3.0).sleep == S.long_sleep


def test_fresh_policies_share_no_state() -> None:
    a, b = RollPolicy(S), RollPolicy(S)
    a.start(0.0)
    a.start(1.0)
    assert b.log.rolls == [] and not b.log.running


# --- properties over random histories ------------------------------------------------------

# a start after the last run was "clean" (stopped), "killed" (`running` left set) or
# "crashed" (a crash record, `running` cleared); or "serving" (the healthy-reset check)
EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["clean", "killed", "crashed", "serving"]),
        st.floats(min_value=0.0, max_value=400.0, allow_nan=False),
    ),
    max_size=60,
)


@st.composite
def recovery_settings(draw: st.DrawFn) -> RecoverySettings:
    long_sleep = draw(st.floats(min_value=1.0, max_value=50.0))
    return RecoverySettings(
        roll_limit=draw(st.integers(min_value=1, max_value=6)),
        roll_window=draw(st.floats(min_value=1.0, max_value=600.0)),
        long_sleep=long_sleep,
        long_sleep_max=long_sleep * draw(st.floats(min_value=1.0, max_value=40.0)),
        healthy_reset=draw(st.floats(min_value=1.0, max_value=600.0)),
    )


@PROPS
@given(recovery_settings(), EVENTS)
def test_sleeps_are_bounded_only_on_rolls_and_never_shrink_without_a_healthy_reset(
    s: RecoverySettings, events: list[tuple[str, float]]
) -> None:
    p = RollPolicy(s)
    now = 0.0
    assert not p.start(now).rolled
    last_sleep = 0.0  # since the last healthy reset
    woke: float | None = None  # end of the last sleep since the last healthy reset
    for kind, dt in events:
        now += dt
        if kind == "serving":
            if p.serving(now):
                last_sleep, woke = 0.0, None
            continue
        if kind != "killed":
            p.stopped()
        start = p.start(now, crashed=kind == "crashed")
        assert start.rolled == (kind != "clean")
        assert start.sleep == 0.0 or s.long_sleep <= start.sleep <= s.long_sleep_max
        if not start.rolled:
            assert start.sleep == 0.0 and not start.reason
            continue
        on_probation = woke is not None and now - woke < s.healthy_reset
        assert start.rolls >= 1
        if start.rolls >= s.roll_limit or on_probation:
            assert start.sleep > 0.0, (start, on_probation)
        else:
            assert start.sleep == 0.0, (start, woke, now)
        if start.sleep:
            assert start.reason
            assert start.sleep >= last_sleep  # never shorter without a healthy reset
            if last_sleep:
                assert start.sleep == min(2 * last_sleep, s.long_sleep_max)  # doubling, capped
            last_sleep, woke = start.sleep, now + start.sleep
            assert p.log.started_at == woke


@PROPS
@given(recovery_settings(), EVENTS)
def test_a_daemon_that_only_stops_cleanly_never_sleeps(s: RecoverySettings, events: list[tuple[str, float]]) -> None:
    p = RollPolicy(s)
    now = 0.0
    for _, dt in events:
        now += dt
        p.stopped()
        assert p.start(now) == Start(rolled=False, sleep=0.0, rolls=0)
