"""Zoned releases (pure): reports and time in, phase decisions and the order out.

"Zoning" (the Akamai reliability paper, §5): the leading mapping center rolls a signed
configuration bundle out in phases (one machine, then one region, then the world), each
lasting at least the paper's Table 1 minimum (times `Settings.time_scale` in labs), with
health checks between phases and an automatic abort back to the previous bundle. `plan`
fixes the zones; a `Rollout` wraps the persisted `Release`, is fed traffic reports,
rolls, applications and refusals, and ticks stamped with `now`; the shell publishes
`order()` to every machine and sleeps until `next_deadline()`. Inputs only record: call
`tick` after them.

Theory of operation.
- Zones accumulate: phase two is one region's edges and LLNSes without the phase-one
  machine, which keeps the bundle; the order's zone is every machine of every started
  phase. The world phase gives the bundle to everyone, TLNSes included.
- Baseline: the error rate of the current zone's edges is compared with that of the
  edges not yet in any started zone over the same interval (both counted from the phase
  start), as Kayenta compares a canary with a baseline running at the same time, not
  with history. Zone traffic counts once the machine reports running the bundle. The
  zone fails above baseline + max(gap, baseline): about twice the baseline, and never
  less than `max_error_rate_gap` above it.
- Enough data: verdicts on fewer than ~20 requests are mostly noise (suna, Kayenta), so
  the rate is judged from `min_requests` on (a baseline below that counts as rate 0, the
  strict side), and missing data is a failure: a phase still short of it at
  `min_duration * data_wait` aborts with "not enough data".
- Nameservers answer from maps, with no errors we could pin on a bundle, so they are
  judged by what they show: they apply the bundle within `apply_timeout` (unscaled) of
  their phase start, do not refuse it, and do not roll (crash, restart) afterwards. These
  checks hold for every zone machine, current phase or earlier, at every tick; a failure
  aborts at once. A down zone machine never applies, so it aborts its phase (phase two
  takes the region live or not). A nameserver-only phase, and the world phase (no
  baseline left), pass on these checks and the minimum duration alone.
- Pass: the minimum has elapsed on the phase clock, the data verdict (where it applies)
  is good, and every zone machine runs the bundle; the next phase starts in the same
  tick, and after the world phase the release is done. Frozen (in-place recovery
  mode): nothing passes or starts and the phase clock stops (`PhaseRecord.paused`);
  aborts still happen. Abort: the phase's verdict is the reason, later phases never
  start, the order sends everyone back to `previous`. A finished release never changes.

Nothing is rejected by raising (unknown machines, bad reports, inputs after the end are
counted in `ignored`); `plan` raises `ValueError` only for an unknown release type or no
live edge. Each tick runs the decisions to a fixed point: a second tick at the same
`now` changes nothing.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Collection, Sequence
from typing import Literal

import msgspec

from .assign import score

ReleaseType = Literal["customer", "system", "software"]
TABLE1: dict[str, tuple[float, float]] = {
    "customer": (900.0, 1200.0),
    "system": (1800.0, 7200.0),
    "software": (86400.0, 86400.0),
}
ZONED_ROLES = ("edge", "llns")  # the roles a region zone is made of (TLNSes have no region)


class Target(msgspec.Struct, frozen=True):
    machine: str
    role: str  # "edge", "llns" or "tlns"
    region: str  # "" for tlns


class Settings(msgspec.Struct, frozen=True):
    time_scale: float = 1.0
    min_requests: int = 20  # zone requests needed before an error-rate verdict
    max_error_rate_gap: float = 0.01  # fail when zone rate > baseline + max(this, baseline)
    apply_timeout: float = 30.0  # unscaled seconds a zone machine has to report running the bundle
    data_wait: float = 3.0  # a phase short of data aborts at min_duration * data_wait
    world_min: float = 0.0  # minimum world phase (seconds at time_scale 1)


class PhaseRecord(msgspec.Struct):
    name: str  # "one machine", "one region", "world"
    machines: list[str]  # the zone of this phase (new machines only)
    min_duration: float  # seconds, already scaled
    started_at: float | None = None
    ended_at: float | None = None
    verdict: str = ""  # "" running/not started, "passed", or the failure reason
    paused: float = 0.0  # frozen seconds, not counted on the phase clock


class Release(msgspec.Struct):
    bundle: str
    previous: str  # bundle in force before ("" = the machines' local config)
    type: ReleaseType
    version: str
    submitted_at: float
    phases: list[PhaseRecord]
    phase: int = 0
    state: str = "running"  # "running", "done", "aborted"
    reason: str = ""
    ended_at: float | None = None
    requests: dict[str, int] = {}  # per machine, since its phase (or, baseline, the current phase) started
    errors: dict[str, int] = {}
    rolls: dict[str, int] = {}
    running: dict[str, str] = {}  # machine -> bundle id it reports running
    refused: dict[str, str] = {}  # machine -> why it refused the bundle
    roles: dict[str, str] = {}  # machine -> role, from the targets
    frozen_since: float | None = None  # start of the current freeze


class Order(msgspec.Struct, frozen=True):
    bundle: str
    previous: str
    zone: tuple[str, ...]
    world: bool

    def bundle_for(self, machine: str) -> str:
        return self.bundle if self.world or machine in self.zone else self.previous


class Event(msgspec.Struct, frozen=True):
    at: float
    kind: str  # "phase_started", "phase_passed", "aborted", "done"
    detail: str


def plan(
    bundle: str,
    previous: str,
    type: ReleaseType,
    version: str,
    targets: Sequence[Target],
    live: Collection[str],
    now: float,
    settings: Settings,
) -> Release:
    """The phases of a release: one live edge, the rest of its region, then everyone."""
    if type not in TABLE1:
        raise ValueError(f"unknown release type {type!r} (one of {', '.join(TABLE1)})")
    uniq: dict[str, Target] = {}
    for t in targets:
        uniq.setdefault(t.machine, t)
    edges = [t for t in uniq.values() if t.role == "edge" and t.machine in live]
    if not edges:
        raise ValueError("no live edge among the targets")
    first = max(edges, key=lambda t: (score(bundle, t.machine), t.machine))

    zoned = [t for t in uniq.values() if t.role in ZONED_ROLES and t.machine != first.machine]
    two = sorted(t.machine for t in zoned if t.region == first.region)
    if not two:  # the phase-one machine is alone in its region: the next region by rank
        ranked = sorted({t.region for t in zoned}, key=lambda g: (score(bundle, g), g), reverse=True)
        two = sorted(t.machine for t in zoned if ranked and t.region == ranked[0])
    rest = sorted(m for m in uniq if m != first.machine and m not in two)
    one_min, two_min = TABLE1[type]
    scale = settings.time_scale
    phases = [
        PhaseRecord("one machine", [first.machine], one_min * scale),
        PhaseRecord("one region", two, two_min * scale),
        PhaseRecord("world", rest, settings.world_min * scale),
    ]
    roles = {m: t.role for m, t in uniq.items()}
    return Release(bundle, previous, type, version, now, phases, roles=roles)


class Rollout:
    """One release in progress. Single owner; the shell persists `release` after each call."""

    def __init__(self, release: Release, settings: Settings, history: int = 200) -> None:
        self.release = release
        self.settings = settings
        self.events: deque[Event] = deque(maxlen=history)
        self.ignored: Counter[str] = Counter()  # "unknown", "finished", "bad report", "not in zone", ...
        self._last = float("-inf")  # the latest `now` seen by start/tick

    # --- inputs ------------------------------------------------------------------------

    def start(self, now: float) -> list[Event]:
        """Start phase one (nothing if already started, e.g. after a restart, or finished)."""
        r = self.release
        self._last = max(self._last, now)
        if r.state != "running" or r.phases[0].started_at is not None:
            return []
        return self._start_phase(0, now)

    def reported(self, machine: str, requests: int, errors: int) -> None:
        """Traffic served by `machine` since its last report."""
        r = self.release
        if not self._known(machine):
            return
        if requests < 0 or not 0 <= errors <= requests:
            self.ignored["bad report"] += 1
        elif self._zone_phase(machine) is not None and r.running.get(machine) != r.bundle:
            self.ignored["not yet on bundle"] += 1  # the old bundle's traffic is not the zone's
        else:
            r.requests[machine] = r.requests.get(machine, 0) + requests
            r.errors[machine] = r.errors.get(machine, 0) + errors

    def rolled(self, machine: str, now: float) -> None:
        """`machine` crashed or restarted. Counts only for zone machines after their phase started."""
        if self._known(machine):
            i = self._zone_phase(machine)
            if i is None or now < (self.release.phases[i].started_at or 0.0):
                self.ignored["not in zone"] += 1
            else:
                self.release.rolls[machine] = self.release.rolls.get(machine, 0) + 1

    def running(self, machine: str, bundle: str, now: float) -> None:
        """`machine` reports running `bundle` (any bundle: the judge wants ours)."""
        if self._known(machine):
            self.release.running[machine] = bundle

    def refused(self, machine: str, reason: str, now: float) -> None:
        """`machine` refused the bundle (bad signature, bad config, ...)."""
        if self._known(machine):
            if self._zone_phase(machine) is None:
                self.ignored["not in zone"] += 1
            else:
                self.release.refused.setdefault(machine, reason)

    def tick(self, now: float, frozen: bool = False) -> list[Event]:
        """Judge the current phase at `now`: abort, pass (and start the next), or wait."""
        r = self.release
        self._last = max(self._last, now)
        if r.state != "running" or r.phases[0].started_at is None:
            return []
        if frozen and r.frozen_since is None:
            r.frozen_since = now
        elif not frozen and r.frozen_since is not None:
            r.phases[r.phase].paused += max(0.0, now - r.frozen_since)
            r.frozen_since = None
        out: list[Event] = []
        while r.state == "running":
            why = self._failure(now)
            if why:
                out += self._end(now, "aborted", why)
            elif frozen or not self._passes(now):
                break
            else:
                cur = r.phases[r.phase]
                cur.verdict, cur.ended_at = "passed", now
                out.append(self._event(now, "phase_passed", f"phase {cur.name}"))
                if r.phase + 1 < len(r.phases):
                    out += self._start_phase(r.phase + 1, now)
                else:
                    out += self._end(now, "done", "")
        return out

    # --- outputs -----------------------------------------------------------------------

    def order(self) -> Order:
        """What every machine should run now."""
        r = self.release
        if r.state == "aborted":
            return Order(r.previous, r.previous, (), True)
        started = [p for p in r.phases[:-1] if p.started_at is not None]
        zone = tuple(m for p in started for m in p.machines)
        return Order(r.bundle, r.previous, zone, r.state == "done" or r.phases[-1].started_at is not None)

    def next_deadline(self) -> float | None:
        """When a tick could change something without any input (None: nothing pending)."""
        r, s = self.release, self.settings
        if r.state != "running" or r.phases[0].started_at is None:
            return None
        times = [
            p.started_at + s.apply_timeout
            for p in r.phases[: r.phase + 1]
            if p.started_at is not None and any(r.running.get(m) != r.bundle for m in p.machines)
        ]
        cur = r.phases[r.phase]
        if r.frozen_since is None and cur.started_at is not None:
            base = cur.started_at + cur.paused
            times.append(base + cur.min_duration)
            if self._judged(r.phase) and self._totals(cur.machines)[0] < s.min_requests:
                times.append(base + cur.min_duration * s.data_wait)
        return min((t for t in times if t > self._last), default=None)

    def timeline(self, fmt: Callable[[float], str] = lambda t: f"{t:.1f}") -> list[str]:
        """Human lines, one per phase, then the outcome."""
        r = self.release
        lines = []
        for p in r.phases:
            shown = ", ".join(p.machines[:8]) + (f", +{len(p.machines) - 8} more" if len(p.machines) > 8 else "")
            head = f"phase {p.name} [{shown}]:"
            if p.started_at is None:
                lines.append(f"{head} not started")
                continue
            end = fmt(p.ended_at) if p.ended_at is not None else "..."
            frozen = f" (frozen {p.paused:.1f} s)" if p.paused else ""
            lines.append(f"{head} {fmt(p.started_at)} -> {end} {p.verdict or 'running'}{frozen}")
        outcome = f"aborted: {r.reason}, back to {r.previous or 'local config'}" if r.state == "aborted" else r.state
        lines.append(f"release {r.bundle} ({r.type} {r.version}): {outcome}")
        return lines

    # --- decisions ---------------------------------------------------------------------

    def _known(self, machine: str) -> bool:
        r = self.release
        why = "finished" if r.state != "running" else "" if machine in r.roles else "unknown"
        if why:
            self.ignored[why] += 1
        return not why

    def _zone_phase(self, machine: str) -> int | None:
        """The started phase whose zone has `machine` (None: a baseline machine)."""
        phases = enumerate(self.release.phases)
        return next((i for i, p in phases if p.started_at is not None and machine in p.machines), None)

    def _judged(self, i: int) -> bool:
        """Whether phase i is judged on traffic: not the world, and it has an edge."""
        p = self.release.phases[i]
        return i < len(self.release.phases) - 1 and any(self.release.roles.get(m) == "edge" for m in p.machines)

    def _totals(self, machines: Collection[str]) -> tuple[int, int]:
        r = self.release
        edges = [m for m in machines if r.roles.get(m) == "edge"]
        return sum(r.requests.get(m, 0) for m in edges), sum(r.errors.get(m, 0) for m in edges)

    def _elapsed(self, now: float) -> float:
        r = self.release
        cur = r.phases[r.phase]
        frozen = now - r.frozen_since if r.frozen_since is not None else 0.0
        return now - (cur.started_at or 0.0) - cur.paused - frozen  # started_at is set: phases[:phase+1] started

    def _failure(self, now: float) -> str:
        """Why the release must abort now ("" if it need not)."""
        r, s = self.release, self.settings
        started = r.phases[: r.phase + 1]
        for p in started:
            for m in p.machines:
                if r.rolls.get(m):
                    return f"{m} rolled during phase {r.phases[r.phase].name}"
                if m in r.refused:
                    return f"{m} refused {r.bundle}: {r.refused[m]}"
                if r.running.get(m) != r.bundle and now >= (p.started_at or 0.0) + s.apply_timeout:
                    return f"{m} not running {r.bundle} {s.apply_timeout:g} s after phase {p.name} started"
        if not self._judged(r.phase):
            return ""
        cur = r.phases[r.phase]
        zr, ze = self._totals(cur.machines)
        if zr >= s.min_requests:
            if not zr:  # no data needed (`min_requests` 0) and none came: nothing to judge
                return ""
            zoned = {m for p in started for m in p.machines}
            br, be = self._totals([m for m in r.roles if m not in zoned])
            base = be / br if br >= s.min_requests else 0.0
            if ze / zr > base + max(s.max_error_rate_gap, base):
                return f"error rate {ze / zr:.2%} over {zr} requests vs baseline {base:.2%} over {br}"
        elif self._elapsed(now) >= cur.min_duration * s.data_wait:
            return f"not enough data: {zr} of {s.min_requests} requests after {self._elapsed(now):.1f} s"
        return ""

    def _passes(self, now: float) -> bool:
        r = self.release
        cur = r.phases[r.phase]
        if self._elapsed(now) < cur.min_duration:
            return False
        if any(r.running.get(m) != r.bundle for p in r.phases[: r.phase + 1] for m in p.machines):
            return False
        return not self._judged(r.phase) or self._totals(cur.machines)[0] >= self.settings.min_requests

    def _start_phase(self, i: int, now: float) -> list[Event]:
        r = self.release
        r.phase = i
        p = r.phases[i]
        p.started_at = now
        earlier = {m for q in r.phases[:i] for m in q.machines}
        for m in r.roles:
            if m not in earlier:  # the new zone and the baseline count from now
                r.requests.pop(m, None)
                r.errors.pop(m, None)
        return [self._event(now, "phase_started", f"phase {p.name}: {len(p.machines)} machines")]

    def _end(self, now: float, state: str, reason: str) -> list[Event]:
        r = self.release
        r.state, r.reason, r.ended_at, r.frozen_since = state, reason, now, None
        if state == "aborted":
            cur = r.phases[r.phase]
            cur.verdict, cur.ended_at = reason, now
            return [self._event(now, "aborted", f"phase {cur.name}: {reason}")]
        return [self._event(now, "done", f"{r.bundle} everywhere")]

    def _event(self, now: float, kind: str, detail: str) -> Event:
        e = Event(now, kind, detail)
        self.events.append(e)
        return e
