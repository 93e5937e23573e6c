"""What the mapping centers make of the daemons' rolls (pure; wall-clock time passed in):
the network-wide recovery mode, and quarantines.

Theory of operation. Every daemon tells the centers when it rolled (with its crash
record: the serial and the request it was serving), when it went to long-sleep, and,
in the in-place mode, each request it failed in place (`RollNotice`).

- **Mode.** A roll is cheap when a few machines roll; when many roll at once, restarting
  is what takes the network down (the paper's §5: "perhaps even shut down problematic
  software modules"). When more than `in_place_fraction` of the serving machines of the
  network, or of one region, rolled within `mode_window`, the network enters the
  *in-place* mode (at least `in_place_min_machines` of them: two machines of a small
  region say little): the leader tells every daemon (in its `Announce`) to fail single
  requests and disable the serial that faults instead of rolling. It is an alarm. The
  mode ends `mode_window` after the last roll or in-place fault (the trouble has
  stopped, not merely the rolling, which the mode itself stops). Rolls and faults of a
  quarantined serial do not count: the quarantine already bounds what they take down.
- **Quarantine.** A crash record names the serial it was serving. A serial that crashed
  `quarantine_after` distinct machines within `quarantine_window` is quarantined: the
  low-level map constrains it to `quarantine_servers` edges per region, so its requests
  of death take out at most that set while every other serial is served. The set is
  shuffle-sharded (rendezvous on the serial over the region's configured edges, live or
  not, so it does not wander onto fresh machines as its own ones roll or sleep): two
  quarantined serials rarely share a server. A quarantine lasts `quarantine_hold` after
  its last crash; operators add, extend and lift them.

Quarantines are versioned (leader term, change count) like the suspensions: the leader
carries them in its status and every center adopts the newest set, so they survive a
change of leader. Followers watch the rolls too (hot standby) but change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from ..config import Network, RecoverySettings
from .assign import score

Version = tuple[int, int]


class Quarantined(msgspec.Struct, frozen=True):
    serial: int
    servers: tuple[str, ...]
    since: float
    until: float
    reason: str
    by: str = "auto"  # "auto" (crash records) or "operator"
    crashed: tuple[str, ...] = ()  # machines its requests crashed


def shard(serial: int, edges_by_region: dict[str, list[str]], per_region: int) -> tuple[str, ...]:
    """The few edges per region a quarantined serial keeps (shuffle sharding by rendezvous)."""
    out: list[str] = []
    for region in sorted(edges_by_region):
        ranked = sorted(edges_by_region[region], key=lambda m: score(f"quarantine:{serial}", m), reverse=True)
        out += ranked[:per_region]
    return tuple(out)


class FaultWatch:
    def __init__(self, net: Network) -> None:
        self.version: Version = (0, 0)
        self.quarantines: dict[int, Quarantined] = {}
        self.in_place = False
        self.mode_reason = ""
        self.mode_since = 0.0
        self._rolls: dict[str, tuple[float, int]] = {}  # machine -> its last roll, and the serial it named
        self._last_trouble = 0.0  # the last roll or in-place fault
        self._crashes: dict[int, dict[str, float]] = {}  # serial -> machine -> last crash
        self.asleep: dict[str, float] = {}  # machine -> long-sleep until
        self.configure(net)

    def configure(self, net: Network) -> None:
        self.s: RecoverySettings = net.recovery
        self.region_of = {m.id: m.region for m in net.machines if m.role in ("edge", "llns", "tlns")}
        self.edges: dict[str, list[str]] = {}
        for m in net.by_role("edge"):
            self.edges.setdefault(m.region, []).append(m.id)
        self.serials = {c.serial for c in net.customers}

    # inputs ------------------------------------------------------------------------------
    def rolled(self, machine: str, now: float, serial: int = 0) -> None:
        """A daemon of `machine` rolled (its crash record named `serial`, 0: none)."""
        self.asleep.pop(machine, None)
        if serial:
            self._crashed(serial, machine, now)
        if serial in self.quarantines:
            return  # contained: the quarantine bounds what it takes down, it is no network trouble
        self._rolls[machine] = (now, serial)
        self._last_trouble = max(self._last_trouble, now)

    def failed_in_place(self, machine: str, now: float, serial: int = 0) -> None:
        if serial:
            self._crashed(serial, machine, now)
        if serial not in self.quarantines:
            self._last_trouble = max(self._last_trouble, now)

    def sleeping(self, machine: str, until: float) -> None:
        self.asleep[machine] = until

    def _crashed(self, serial: int, machine: str, now: float) -> None:
        if serial not in self.serials:
            return
        seen = self._crashes.setdefault(serial, {})
        seen[machine] = now
        for m, t in list(seen.items()):
            if now - t > self.s.quarantine_window:
                del seen[m]

    # decisions (the leader's) ------------------------------------------------------------
    def decide(self, now: float, term: int) -> list[tuple[str, dict[str, object]]]:
        """Mode changes, new and extended quarantines, expiries; returns the events. Only
        the leader calls this (it changes the versioned quarantines)."""
        events: list[tuple[str, dict[str, object]]] = []
        for serial, seen in self._crashes.items():
            recent = sorted(m for m, t in seen.items() if now - t <= self.s.quarantine_window)
            q = self.quarantines.get(serial)
            if q is None and len(recent) >= self.s.quarantine_after:
                servers = shard(serial, self.edges, self.s.quarantine_servers)
                why = f"its requests crashed {len(recent)} machines within {self.s.quarantine_window:g}s"
                until = now + self.s.quarantine_hold
                self.quarantines[serial] = Quarantined(serial, servers, now, until, why, "auto", tuple(recent))
                self._bump(term)
                events.append(("quarantined", {"serial": serial, "servers": list(servers), "reason": why}))
            elif q is not None and recent and max(seen[m] for m in recent) + self.s.quarantine_hold > q.until + 1:
                last = max(seen[m] for m in recent)
                crashed = tuple(sorted(set(q.crashed) | set(recent)))
                until = last + self.s.quarantine_hold
                self.quarantines[serial] = msgspec.structs.replace(q, until=until, crashed=crashed)
                self._bump(term)
        for serial, q in list(self.quarantines.items()):
            if q.until <= now:
                del self.quarantines[serial]
                self._crashes.pop(serial, None)
                self._bump(term)
                events.append(("quarantine_ended", {"serial": serial}))
        # after the quarantines: rolls of a serial quarantined just now are no network alarm
        return events + self._mode(now)

    def _mode(self, now: float) -> list[tuple[str, dict[str, object]]]:
        window = self.s.mode_window
        rolling = {
            m
            for m, (t, serial) in self._rolls.items()
            if now - t <= window and m in self.region_of and serial not in self.quarantines
        }
        share, where = self._worst_share(rolling)
        if not self.in_place and share > self.s.in_place_fraction and len(rolling) >= self.s.in_place_min_machines:
            self.in_place, self.mode_since = True, now
            self.mode_reason = f"{len(rolling)} machines rolled within {window:g}s ({share:.0%} of {where})"
            return [("in_place_mode", {"reason": self.mode_reason, "rolling": sorted(rolling)})]
        if self.in_place and now - self._last_trouble > window:
            self.in_place, self.mode_reason = False, ""
            return [("rolling_mode", {"after": round(now - self.mode_since, 1)})]
        return []

    def _worst_share(self, rolling: Iterable[str]) -> tuple[float, str]:
        """The largest share of machines rolling: of the network, or of one region."""
        total = len(self.region_of)
        rolling = list(rolling)
        best, where = (len(rolling) / total if total else 0.0), "the network"
        by_region: dict[str, int] = {}
        for m in rolling:
            by_region[self.region_of[m]] = by_region.get(self.region_of[m], 0) + 1
        for region, n in by_region.items():
            size = sum(1 for r in self.region_of.values() if r == region)
            if region and size >= 3 and n / size > best:  # a region of 1-2 machines says little
                best, where = n / size, f"region {region}"
        return best, where

    def next_deadline(self) -> float | None:
        times = [q.until for q in self.quarantines.values()]
        if self.in_place:
            times.append(self._last_trouble + self.s.mode_window + 0.01)
        return min(times) if times else None

    # operators and followers -------------------------------------------------------------
    def order(self, action: str, serial: int, now: float, term: int, seconds: float = 0.0, reason: str = "") -> str:
        """An operator's quarantine order ("add", "extend", "lift"); "" or why it was refused."""
        q = self.quarantines.get(serial)
        if serial not in self.serials:
            return f"no customer has serial {serial}"
        hold = seconds or self.s.quarantine_hold
        if action == "add":
            servers = shard(serial, self.edges, self.s.quarantine_servers)
            self.quarantines[serial] = Quarantined(serial, servers, now, now + hold, reason or "operator", "operator")
        elif action == "extend":
            if q is None:
                return f"serial {serial} is not quarantined"
            self.quarantines[serial] = msgspec.structs.replace(q, until=max(q.until, now) + hold)
        elif action == "lift":
            if q is None:
                return f"serial {serial} is not quarantined"
            del self.quarantines[serial]
            self._crashes.pop(serial, None)  # new crashes quarantine it again
        else:
            return f"unknown action {action!r}"
        self._bump(term)
        return ""

    def adopt(self, version: Version, items: list[Quarantined]) -> bool:
        """A leader's set, when newer than ours."""
        if tuple(version) <= tuple(self.version):
            return False
        self.version = (version[0], version[1])
        self.quarantines = {q.serial: q for q in items}
        return True

    def _bump(self, term: int) -> None:
        self.version = (term, self.version[1] + 1 if self.version[0] == term else 1)

    def listed(self) -> list[Quarantined]:
        return [self.quarantines[s] for s in sorted(self.quarantines)]
