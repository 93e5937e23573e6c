"""When a daemon that keeps rolling goes to long-sleep (pure; wall-clock time passed in).

Theory of operation. A *roll* is a run that ended without a clean stop: a crash record
was written, or the process was killed (its `running` mark was still set at the next
start). Rolling is cheap and is how a daemon gets back to its last known good state, so
the first rolls restart at once (a nameserver serves again within a fraction of a
second). A daemon that rolled `roll_limit` times within `roll_window` is not getting
better by restarting: it goes to *long-sleep* for `long_sleep` seconds, out of the maps
(it tells the centers), then tries again on *probation*: a roll while on probation sends
it back to sleep for twice as long (up to `long_sleep_max`), like Kubernetes'
CrashLoopBackOff. Serving for `healthy_reset` without a roll forgets the past rolls and
sleeps.

The policy lives in the daemon, not in the supervisor: systemd (any version), the
devnet's supervisor or a lab's script only restart the process; the daemon decides
whether it sleeps first. The state is a small `RollLog` the shell persists per
component in the state directory.
"""

from __future__ import annotations

import msgspec

from ..config import RecoverySettings


class RollLog(msgspec.Struct):
    running: bool = False  # set while a run is in progress: still set at a start = that run rolled
    rolls: list[float] = []  # when the recent rolls were noticed (wall clock), within roll_window
    sleeps: int = 0  # long sleeps since the last healthy reset
    woke_at: float = 0.0  # end of the last long sleep (0: none since the reset)
    started_at: float = 0.0  # the current run's start


class Start(msgspec.Struct, frozen=True):
    rolled: bool  # the last run rolled
    sleep: float  # seconds of long-sleep before serving (0: serve now)
    rolls: int  # rolls within the window, this one included
    reason: str = ""


class RollPolicy:
    def __init__(self, settings: RecoverySettings, log: RollLog | None = None) -> None:
        self.s = settings
        self.log = log or RollLog()

    def start(self, now: float, crashed: bool = False) -> Start:
        """A run starts: was the last one a roll, and must this one sleep first?
        `crashed`: a crash record the last run wrote (a roll even if it cleared `running`)."""
        s, log = self.s, self.log
        rolled = log.running or crashed
        log.rolls = [t for t in log.rolls if now - t <= s.roll_window]
        if rolled:
            log.rolls.append(now)
        sleep, reason = 0.0, ""
        if rolled and log.sleeps and now - log.woke_at < s.healthy_reset:
            sleep, reason = self._sleep(), "rolled on probation after a long sleep"
        elif rolled and len(log.rolls) >= s.roll_limit:
            sleep, reason = self._sleep(), f"{len(log.rolls)} rolls within {s.roll_window:g}s"
        rolls = len(log.rolls)
        if sleep:
            log.sleeps += 1
            log.woke_at = now + sleep
            log.rolls = []  # the count starts afresh after the sleep (probation covers what follows)
        log.running = True
        log.started_at = now + sleep
        return Start(rolled, sleep, rolls, reason)

    def _sleep(self) -> float:
        return min(self.s.long_sleep * 2.0**self.log.sleeps, self.s.long_sleep_max)

    def serving(self, now: float) -> bool:
        """Called now and then while serving: after `healthy_reset` without a roll the past
        is forgotten. True when that happened now."""
        log = self.log
        if (log.rolls or log.sleeps) and now - log.started_at >= self.s.healthy_reset:
            log.rolls, log.sleeps, log.woke_at = [], 0, 0.0
            return True
        return False

    def stopped(self) -> None:
        """A clean stop (SIGTERM): not a roll."""
        self.log.running = False
