"""The shell every daemon runs under for recovery-oriented operation.

`Recovery` (one per process, `rt.recovery`):

- **Start gate** (`gate`): the roll log (`policy.RollLog`, `rolls-<component>.json` in the
  state directory) says whether the last run rolled and whether this one long-sleeps
  first. Asleep, the daemon serves nothing: it tells the centers (`RollNotice` "asleep",
  and heartbeats saying unhealthy until the wake time, so it is out of the maps), answers
  /healthz, and says why on /readyz; then it starts. Crash records the last run left are
  reported once the daemon's messaging client is up (`rt.publish_at_start`).
- **Faults** (`failed`): an unexpected error while serving one request or query. In the
  normal mode the daemon *rolls*: it writes a crash record (what it was doing: the
  serial, a summary of the request, the exception) and exits at once (exit code 70);
  systemd or the devnet restart it from its last known good state. While the leader
  says the network is in its *in-place* mode (too many machines rolling at once), the
  request fails alone (500, SERVFAIL), the centers are told, and a serial that faults
  `disable_after` times is disabled on this machine until the mode ends.
- **Stall watchdog**: a thread that rolls the daemon (with a crash record naming what it
  was serving) when the event loop has not turned for `stall_limit` seconds: a hang is
  a fault too.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec

from ..runtime import Runtime, atomic_write, read_file, sd_notify
from . import crash
from .policy import RollLog, RollPolicy, Start

ROLL_EXIT = 70  # EX_SOFTWARE: a roll, not a configuration error
_log_dec = msgspec.json.Decoder(RollLog)
_enc = msgspec.json.Encoder()


class Recovery:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.path = rt.state_dir / f"rolls-{rt.component}.json"
        log = None
        raw = read_file(self.path)
        if raw:
            try:
                log = _log_dec.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
                log = RollLog(running=True)  # unreadable: count it as a roll, never as healthy
        self.policy = RollPolicy(rt.net.recovery, log)
        self.started: Start | None = None
        self.in_place = False  # the network-wide mode, as the leader says
        self.faults: Counter[int] = Counter()  # in place: faults by serial
        self.disabled: dict[int, str] = {}  # in place: serials refused on this machine, and why
        # quarantined serials (the low-level map): the network knows their requests crash
        # servers, so a fault of theirs fails that request in place, whatever the mode: the
        # quarantine set keeps serving everyone else instead of rolling again and again
        self.contained: frozenset[int] = frozenset()
        self.publish: Callable[[str, bytes], object] | None = None
        self.bundle = ""  # the release bundle this machine runs ("": its local configuration)
        self.bundle_refused = ""  # "<id>: why", when it refused the one it was told to run
        self.awake = False  # the start gate let the daemon start
        self.on_mode: list[Callable[[str], object]] = []  # e.g. tell the worker processes
        self.serving: Any = None  # what the daemon serves now (a request or query), for the stall watchdog
        self.summary: Callable[[Any], tuple[str, int]] = lambda x: (repr(x)[:200], 0)
        self._beat = time.monotonic()
        self.rolls = rt.counter("akacdn_rolls", "Rolls noticed at start (the last run did not stop cleanly)")
        self.in_place_faults = rt.counter("akacdn_faults_in_place", "Requests failed in place instead of rolling")
        self.mode_gauge = rt.gauge("akacdn_in_place_mode", "1 while the network recovers in place")
        self.asleep_gauge = rt.gauge("akacdn_long_sleep_until", "Wall clock the long-sleep ends (0: awake)")
        rt.recovery = self

    # start -------------------------------------------------------------------------------
    def begin(self, now: float) -> Start:
        """Decide this run's start (persisted at once: a crash from here on is a roll)."""
        pending = crash.unreported(self.rt.state_dir, self.rt.component)
        start = self.policy.start(now, crashed=any(rec.at >= self.policy.log.started_at for _, rec in pending))
        self._save()
        self.started = start
        if start.rolled:
            self.rolls.inc()
        self._queue_reports(pending, start, now)
        return start

    def _queue_reports(self, pending: list[tuple[Any, crash.CrashRecord]], start: Start, now: float) -> None:
        from ..mapping.messages import ROLL_TOPIC, RollNotice

        m, component = self.rt.machine, self.rt.component
        notes = [RollNotice(m.id, component, "rolled", rec.at, start.rolls, crash=rec) for _, rec in pending]
        if start.rolled and not pending:  # killed, or died without a record
            notes.append(RollNotice(m.id, component, "rolled", now, start.rolls))
        for note in notes:
            self.rt.publish_at_start.append((ROLL_TOPIC, msgspec.msgpack.encode(note)))
            self.rt.record("rolled", rolls=start.rolls, error=note.crash.error if note.crash else "no crash record")
        for path, rec in pending:
            crash.mark_reported(path, rec)

    def _save(self) -> None:
        try:
            atomic_write(self.path, _enc.encode(self.policy.log))
        except OSError as e:
            self.rt.log.limited("roll_log_unwritable", error=str(e))

    def stopped(self) -> None:
        """A clean stop: not a roll next time."""
        self.policy.stopped()
        self._save()

    async def watch(self) -> None:
        """While serving: the healthy reset, the loop's heartbeat for the stall watchdog."""
        stall = self.rt.net.recovery.stall_limit
        if stall:
            threading.Thread(target=self._watchdog, args=(stall,), daemon=True, name="stall-watchdog").start()
        while True:
            self._beat = time.monotonic()
            if self.policy.serving(time.time()):
                self._save()
                self.rt.record("roll_count_reset", after=self.rt.net.recovery.healthy_reset)
            await asyncio.sleep(0.25)

    def _watchdog(self, stall: float) -> None:
        while True:
            time.sleep(min(1.0, stall / 4))
            stuck = time.monotonic() - self._beat
            if stuck > stall:
                self.roll(TimeoutError(f"event loop stalled for {stuck:.1f}s"), self.serving)

    # faults ------------------------------------------------------------------------------
    def failed(self, e: BaseException, work: Any = None) -> None:
        """An unexpected error serving `work` (a request or query). Rolls, unless the
        network recovers in place: then it returns and the caller fails just this one."""
        context, serial = self._summary(work)
        contained = serial in self.contained
        if not self.in_place and not contained:
            self.roll(e, work)
        self.in_place_faults.inc()
        self.faults[serial] += 1
        disabled = False
        limit = self.rt.net.recovery.disable_after
        if serial and not contained and serial not in self.disabled and self.faults[serial] >= limit:
            self.disabled[serial] = f"disabled in place after {self.faults[serial]} faults"
            disabled = True
            self.rt.record("serial_disabled", serial=serial, faults=self.faults[serial], error=repr(e)[:200])
        self.rt.log.limited("failed_in_place", serial=serial, context=context, error=repr(e)[:200])
        if self.publish is not None:
            from ..mapping.messages import ROLL_TOPIC, RollNotice

            m = self.rt.machine
            note = RollNotice(m.id, self.rt.component, "in_place", time.time(), serial=serial, disabled=disabled)
            self.publish(ROLL_TOPIC, msgspec.msgpack.encode(note))

    def _summary(self, work: Any) -> tuple[str, int]:
        if work is None:
            return "", 0
        try:
            return self.summary(work)
        except Exception:  # a summary must never stop a roll
            return "unsummarisable", 0

    def roll(self, e: BaseException, work: Any = None) -> None:
        """Write the crash record and end the process now (the supervisor restarts it)."""
        context, serial = self._summary(work)
        try:
            rec = crash.record(self.rt.state_dir, self.rt.machine.id, self.rt.component, e, context, serial)
            self.rt.log.error("rolling", error=rec.error, serial=serial, context=context, trace=rec.trace)
            self._tell(rec)
        except OSError as err:
            self.rt.log.error("rolling", error=repr(e), crash_record_failed=str(err))
        os._exit(ROLL_EXIT)

    def _tell(self, rec: crash.CrashRecord) -> None:
        """The crash record to the centers now, best effort (one datagram per path, sent
        before the exit), so a quarantine need not wait for the restart; the restarted
        daemon reports it again (the centers drop the copy)."""
        if self.publish is None or threading.current_thread() is not threading.main_thread():
            return  # no client yet, or the stall watchdog's thread: the restart reports it
        from ..mapping.messages import ROLL_TOPIC, RollNotice

        m = self.rt.machine
        note = RollNotice(m.id, self.rt.component, "rolled", rec.at, len(self.policy.log.rolls) + 1, crash=rec)
        try:
            self.publish(ROLL_TOPIC, msgspec.msgpack.encode(note))
        except Exception:  # the roll goes on whatever happens here
            pass

    def set_mode(self, mode: str) -> None:
        """The leader's mode: "in_place", or "" (roll)."""
        in_place = mode == "in_place"
        if in_place == self.in_place:
            return
        self.in_place = in_place
        for tell in self.on_mode:
            tell(mode)
        self.mode_gauge.set(1 if in_place else 0)
        self.rt.record("recovery_mode", mode=mode or "roll", disabled=sorted(self.disabled))
        if not in_place:  # back to rolling: serials disabled in place serve again
            self.disabled.clear()
            self.faults.clear()


async def gate(rt: Runtime, rec: Recovery) -> None:
    """The start gate: decide the start; long-sleep first when the policy says so (out of
    the maps: the centers are told, heartbeats say unhealthy until the wake time)."""
    from ..mapping.messages import HEARTBEAT_TOPIC, ROLL_TOPIC, Heartbeat, RollNotice
    from ..messaging.client import MessagingClient

    now = time.time()
    start = rec.begin(now)
    if start.sleep <= 0:
        rec.awake = True
        return
    until = now + start.sleep
    m = rt.machine
    rt.record("long_sleep", seconds=start.sleep, rolls=start.rolls, reason=start.reason, until=round(until, 3))
    rec.asleep_gauge.set(until)
    rt.not_ready("long_sleep", f"long-sleep for {start.sleep:g}s: {start.reason}")
    client = MessagingClient(rt, [], lambda _: None)
    await client.start()  # publishes the last run's crash records
    note = RollNotice(m.id, rt.component, "asleep", now, start.rolls, sleep_until=until)
    client.publish(ROLL_TOPIC, msgspec.msgpack.encode(note))

    async def systemd() -> None:
        # a long sleep is a deliberate start, not a hung one: keep systemd's start timeout
        # and watchdog from killing it (EXTEND_TIMEOUT_USEC: systemd >= 236)
        while True:
            left = max(0.0, until - time.time())
            sd_notify(f"EXTEND_TIMEOUT_USEC={int((left + 30) * 1e6)}\nWATCHDOG=1\nSTATUS=long-sleep: {start.reason}")
            await asyncio.sleep(5.0)

    async def heartbeats() -> None:
        detail = f"long-sleep until {time.strftime('%H:%M:%S', time.localtime(until))}: {start.reason}"
        hb = Heartbeat(m.id, m.role, m.region, False, 0.0, detail, asleep_until=until, rolls=start.rolls)
        while True:
            if m.role in ("edge", "llns", "tlns"):
                client.publish(HEARTBEAT_TOPIC, msgspec.msgpack.encode(hb))
            await asyncio.sleep(rt.net.timing.heartbeat_interval)

    try:
        async with asyncio.timeout(start.sleep):
            async with asyncio.TaskGroup() as tg:
                tg.create_task(client.run())
                tg.create_task(rt.serve_management())
                tg.create_task(heartbeats())
                tg.create_task(systemd())
    except TimeoutError:
        pass
    finally:
        client.close()
    rec.asleep_gauge.set(0)
    rt.forget("long_sleep")
    rt.record("awake", slept=start.sleep)
    rec.awake = True
