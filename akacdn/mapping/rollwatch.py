"""A center's shell around `faults.FaultWatch`: the daemons' roll notices in, the mode,
quarantines (persisted, carried in the leader's status) and alarms out."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import msgspec

from ..messaging.client import Message
from ..runtime import Runtime, atomic_write, read_file
from .faults import FaultWatch, Quarantined
from .maps import Quarantine
from .messages import CenterStatus, RollNotice

_roll = msgspec.msgpack.Decoder(RollNotice)


class _Saved(msgspec.Struct):
    version: tuple[int, int]
    items: list[Quarantined]


_save_dec = msgspec.json.Decoder(_Saved)


class RollWatch:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.core = FaultWatch(rt.net)
        rt.on_reload(self.core.configure)
        self.path = rt.state_dir / "quarantines.json"
        raw = read_file(self.path)
        if raw:
            try:
                saved = _save_dec.decode(raw)
                self.core.adopt(saved.version, saved.items)
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
                pass  # the leader's set comes with its status
        self.saved = self.core.version
        self.recent: deque[dict[str, Any]] = deque(maxlen=50)  # the newest notices, for operators
        self._seen: dict[tuple[str, float], None] = {}  # crash records heard (machine, time), oldest first
        self.heard = rt.counter("akacdn_roll_notices", "Roll notices heard from daemons", ("kind",))
        self.refused = rt.counter("akacdn_roll_notices_refused", "Roll notices refused", ("reason",))
        self.mode_gauge = rt.gauge("akacdn_network_in_place", "1 while the network recovers in place (an alarm)")
        self.quarantined_gauge = rt.gauge("akacdn_quarantined_serials", "Serials quarantined")

    def on_roll(self, env: Message) -> RollNotice | None:
        """A daemon's notice (None when refused); the maps may change (rebuild)."""
        try:
            note = _roll.decode(env.body)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            self.refused.labels("malformed").inc()
            return None
        if note.machine != env.sender or note.machine not in self.known():
            self.refused.labels("sender_mismatch").inc()
            return None
        if note.crash is not None:  # told as it rolled, and again after its restart: once
            key = (note.machine, note.crash.at)
            if key in self._seen:
                self.heard.labels("duplicate").inc()
                return None
            self._seen[key] = None
            if len(self._seen) > 10_000:
                del self._seen[next(iter(self._seen))]
        now = time.time()
        self.heard.labels(note.kind).inc()
        entry: dict[str, Any] = {"at": round(note.at, 3), "machine": note.machine, "component": note.component,
                                 "kind": note.kind}  # fmt: skip
        if note.kind == "rolled":
            serial = note.crash.serial if note.crash else 0
            self.core.rolled(note.machine, now, serial)
            entry |= {"rolls": note.rolls, "serial": serial}
            if note.crash:
                entry |= {"error": note.crash.error, "context": note.crash.context}
            self.rt.record("machine_rolled", **{k: v for k, v in entry.items() if k != "at"})
        elif note.kind == "asleep":
            self.core.sleeping(note.machine, note.sleep_until)
            entry |= {"until": round(note.sleep_until, 3), "rolls": note.rolls}
            self.rt.record("machine_long_sleep", machine=note.machine, until=round(note.sleep_until, 3))
        else:
            self.core.failed_in_place(note.machine, now, note.serial)
            entry |= {"serial": note.serial, "disabled": note.disabled}
        self.recent.append(entry)
        return note

    def known(self) -> set[str]:
        return {m.id for m in self.rt.net.machines}

    def decide(self, term: int | None) -> None:
        """While leading (`term`): mode and quarantine decisions, alarms; always: persist a
        changed set, gauges."""
        if term is not None:
            for event, fields in self.core.decide(time.time(), term):
                self.rt.record(event, **fields)
                if event == "in_place_mode":
                    self.rt.log.error("alarm", reason=f"network in place: {fields['reason']}")
        self.mode_gauge.set(1 if self.core.in_place else 0)
        self.quarantined_gauge.set(len(self.core.quarantines))
        if self.core.version != self.saved:
            atomic_write(self.path, msgspec.json.encode(_Saved(self.core.version, self.core.listed())))
            self.saved = self.core.version

    def quarantines(self) -> tuple[Quarantine, ...]:
        return tuple(Quarantine(q.serial, q.servers, q.until, q.reason) for q in self.core.listed())

    def adopt(self, cs: CenterStatus) -> None:
        if self.core.adopt(cs.quarantines_version, cs.quarantines):
            self.rt.record("quarantines_adopted", version=list(cs.quarantines_version), by=cs.status.center)
            self.decide(None)

    def status_extra(self) -> dict[str, Any]:
        return {"quarantines_version": self.core.version, "quarantines": self.core.listed()}

    def doc(self) -> dict[str, Any]:
        c = self.core
        return {
            "mode": "in_place" if c.in_place else "roll",
            "mode_reason": c.mode_reason,
            "quarantines": [msgspec.to_builtins(q) for q in c.listed()],
            "quarantines_version": list(c.version),
            "asleep": {m: round(t, 3) for m, t in c.asleep.items() if t > time.time()},
            "rolls": list(self.recent),
        }
