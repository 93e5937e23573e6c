"""SureRoute (pure): race results and request failures in, the route to an origin out.

An edge fetching from a customer's origin can go direct, or tunnel the request through an
edge of an intermediate region that fetches from the origin for it (`tunnel.py` grants
that hop). When the direct route's peering fails, the edge routes around it. Every
decision is the edge's own: one `Routes` per origin, fed race results and request
outcomes stamped with a monotonic `now` by the asyncio shell, which sleeps on
`next_deadline()` and logs every `Decision` to `/events`.

Theory of operation.

- Candidates. Direct plus the intermediate regions the shell takes from the map's region
  list, in the shell's rank: the prior, and the tie-break everywhere. Direct is always a
  candidate (added first if the shell left it out). `set_candidates` keeps the results of
  the paths still present; a primary that left falls back to the best remaining.
- Races. Initially the primary is direct and a race is due at once. The shell races a
  small test object over `start_race`'s paths at once: direct, the primary, and the best
  others by their last result, then by rank, at most `width`. `raced` takes each path's
  time (None: failed). The winner holds for `interval`, then the next race is due. A race
  that never reports is due again after `race_timeout`.
- Direct first. While direct works (and is not avoided), an intermediate region carries
  the traffic only if it beats direct by the margins below: a tunnel costs another edge's
  work and a hop, so it must earn its place, and the route returns to direct once the
  peering heals. Among the regions that do beat direct, the incumbent keeps its place
  unless beaten by the margins too.
- Hysteresis (direct failed or avoided). The first race in which a path works picks the
  fastest outright (direct was a default, not a measurement). After that, a challenger
  replaces a working primary only if it is faster by more than both `margin` x the
  primary's time and `margin_abs`: noise between near-equal paths never moves the
  route (each move costs cold connections on the new path). A primary that failed the
  race is replaced at once by the fastest working path.
- Failures. `failed` on the primary moves it at once to the next path of `order` (RON:
  one intermediate hop routes around an outage), and a race becomes due `after_failure`
  later (unless one is due sooner) to measure the new state. A failure elsewhere only
  marks the path. Requests still in flight on the old primary that fail after the move
  only refresh its mark: one outage moves the primary once, not down the whole list.
- Marks. A path that failed (a request or a race) is avoided for `retry_failed`: last in
  `order`, oldest failure first, and a race makes it primary only if no unmarked path
  worked. A request's success clears the mark only if the request started after the
  failure (one already under way proves nothing about the path since).
- Only races and failures move the primary; passive successes never do (no flapping on
  the noise of real requests, whose times depend on the object, unlike the test object's).
- All raced paths failed: the primary stays (something must be tried; the origin itself
  may be down), the `Decision` says so, and the next race comes `after_failure` later
  instead of `interval`: at most one race per `after_failure`, no race storms.

Which requests may fail over to the next path of `order` (idempotent methods, nothing of
the response relayed yet) is the shell's call, as are the races' own timeouts. Inputs are
never rejected by raising: results for paths that are not candidates (any more) and
times that are not finite and >= 0 are ignored; a `ValueError` escapes only from
`RaceSettings`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec


class Path(msgspec.Struct, frozen=True):
    via: str | None = None  # None: direct to the origin; else the intermediate region's name

    @property
    def label(self) -> str:
        return "direct" if self.via is None else f"via {self.via}"


DIRECT = Path()


class RaceSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    interval: float = 1800.0  # how long a race result holds
    after_failure: float = 5.0  # earliest re-race after a failure
    width: int = 3  # paths raced at once; direct and the primary always among them
    margin: float = 0.2  # a challenger must beat the primary by more than this share of its time...
    margin_abs: float = 0.010  # ...and by more than these seconds
    retry_failed: float = 30.0  # how long a failed path is avoided
    race_timeout: float = 10.0  # a started race that never reports is due again after this

    def __post_init__(self) -> None:
        if not 0 < self.after_failure <= self.interval or self.race_timeout <= 0:
            raise ValueError("need 0 < after_failure <= interval and race_timeout > 0")
        if self.width < 2:
            raise ValueError("width must be >= 2 (direct and the primary)")
        if self.margin < 0 or self.margin_abs < 0 or self.retry_failed < 0:
            raise ValueError("margin, margin_abs and retry_failed must be >= 0")


class Decision(msgspec.Struct, frozen=True):
    primary: Path
    previous: Path
    changed: bool
    reason: str


@dataclass(slots=True)
class _Record:
    seconds: float | None = None  # the last race's time; None: failed it, or never raced
    raced_at: float | None = None
    failed_at: float | None = None  # the last failure (request or race) not cleared by a success


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


class Routes:
    """The route to one origin. Single owner; only races and failures move the primary."""

    def __init__(self, candidates: Sequence[Path], settings: RaceSettings | None = None) -> None:
        self.settings = settings or RaceSettings()
        self._primary = DIRECT
        self._candidates: tuple[Path, ...] = ()
        self._rank: dict[Path, int] = {}
        self._records: dict[Path, _Record] = {}
        self._due = -math.inf  # when the next race is due; -inf: at once (none yet)
        self._racing: float | None = None  # when the race under way started
        self._last_race: float | None = None
        self._measured = False  # a race has chosen the primary (until then direct is a default)
        self._set(candidates)

    # --- inputs ------------------------------------------------------------------------

    def set_candidates(self, now: float, candidates: Sequence[Path]) -> Decision | None:
        """The map changed: new candidates in the shell's rank (direct is added if missing).
        Results of the paths still present are kept. A Decision only when the primary left:
        the best remaining takes over, and a race is due `after_failure` later to measure it."""
        self._set(candidates)
        if self._primary in self._rank:
            return None
        previous = self._primary
        self._primary = self._ranked(now, {previous})[0]
        self._due = min(self._due, now + self.settings.after_failure)
        return Decision(self._primary, previous, True, f"{previous.label} left the candidates; best remaining")

    def start_race(self, now: float) -> list[Path]:
        """The paths to race now: direct, the primary, then the best others by their last
        result and rank, at most `width`. Not due again until `raced` or `race_timeout`."""
        head = list(dict.fromkeys((DIRECT, self._primary)))
        self._racing = now
        self._due = now + self.settings.race_timeout
        return (head + self._ranked(now, set(head)))[: self.settings.width]

    def raced(self, now: float, results: Mapping[Path, float | None]) -> Decision:
        """A race finished: seconds each path took, None for a failure. Chooses the primary
        (hysteresis; a primary that failed is replaced at once) and schedules the next race."""
        s = self.settings
        self._racing, self._last_race = None, now
        times: dict[Path, float] = {}
        for p, t in results.items():
            r = self._records.get(p)
            if r is None or (t is not None and not (math.isfinite(t) and t >= 0)):
                continue  # not a candidate (any more), or not a measurement
            r.seconds, r.raced_at = t, now
            if t is None:
                r.failed_at = now
            else:
                times[p] = t
        previous = self._primary
        if not times:
            self._due = now + s.after_failure
            return Decision(previous, previous, False, f"no raced path worked; keeping {previous.label}")
        self._due = now + s.interval
        rec = self._records[previous]
        if previous not in results and rec.seconds is not None:
            times[previous] = rec.seconds  # not raced this time: its last result stands
        pool = {p: t for p, t in times.items() if not self._avoided(now, self._records[p])} or times
        best = min(pool, key=lambda p: (pool[p], self._rank[p]))
        if DIRECT in pool:
            return self._direct_or_earned(pool, previous)
        if not self._measured:
            self._measured = True
            return self._switch(best, f"first race: {best.label} fastest ({_ms(pool[best])})")
        if previous not in pool:
            if previous in results and results[previous] is None:
                why = f"{previous.label} failed the race"
            elif previous in times:
                why = f"{previous.label} failed recently"
            else:
                why = f"{previous.label} has no result"
            return self._switch(best, f"{why}; {best.label} fastest working ({_ms(pool[best])})")
        rivals = [p for p in pool if p != previous]
        if not rivals:
            return Decision(previous, previous, False, f"{previous.label} the only working path")
        c = min(rivals, key=lambda p: (pool[p], self._rank[p]))
        tp, tc = pool[previous], pool[c]
        if tp - tc > s.margin * tp and tp - tc > s.margin_abs:
            return self._switch(c, f"{c.label} ({_ms(tc)}) beat {previous.label} ({_ms(tp)}) by more than the margins")
        why = "within the margins" if tc < tp else "no faster"
        return Decision(previous, previous, False, f"{previous.label} ({_ms(tp)}) kept: {c.label} ({_ms(tc)}) {why}")

    def _beats(self, a: float, b: float) -> bool:
        """Time `a` is better than `b` by more than both margins."""
        return b - a > self.settings.margin * b and b - a > self.settings.margin_abs

    def _direct_or_earned(self, pool: Mapping[Path, float], previous: Path) -> Decision:
        """Direct works: an intermediate region carries the traffic only while it beats
        direct by the margins (a tunnel costs another edge's work and a hop); among those
        that do, the incumbent keeps its place unless beaten by the margins too."""
        self._measured = True
        td = pool[DIRECT]
        earned = {p: t for p, t in pool.items() if p != DIRECT and self._beats(t, td)}
        if not earned:
            if previous == DIRECT:
                return Decision(DIRECT, DIRECT, False, f"direct ({_ms(td)}) kept: no region beats it by the margins")
            return self._switch(DIRECT, f"direct works ({_ms(td)}) and no region beats it by the margins")
        c = min(earned, key=lambda p: (earned[p], self._rank[p]))
        if previous in earned and (previous == c or not self._beats(earned[c], earned[previous])):
            tp = earned[previous]
            why = f": {c.label} ({_ms(earned[c])}) within the margins" if c != previous else ", the fastest"
            return Decision(previous, previous, False, f"{previous.label} ({_ms(tp)}) kept{why}")
        return self._switch(c, f"{c.label} ({_ms(earned[c])}) beat direct ({_ms(td)}) by more than the margins")

    def failed(self, now: float, path: Path) -> Decision | None:
        """A real request failed on `path`. The path is avoided for `retry_failed`; if it
        was the primary, the next path of `order` takes over at once and a race becomes due
        `after_failure` later (unless one is due sooner). None when the primary is untouched."""
        r = self._records.get(path)
        if r is None:
            return None  # a request still in flight on a path the map has since dropped
        r.failed_at = now
        if path != self._primary:
            return None
        self._due = min(self._due, now + self.settings.after_failure)
        rest = self._ranked(now, {path})
        if not rest:
            return Decision(path, path, False, f"{path.label} failed a request; no other path")
        return self._switch(rest[0], f"{path.label} failed a request; routing around")

    def succeeded(self, now: float, path: Path, seconds: float) -> None:
        """A real request over `path` completed after `seconds`. Clears the path's failure
        mark if the request started after the failure; never moves the primary."""
        r = self._records.get(path)
        if r is not None and r.failed_at is not None and r.failed_at < now - seconds:
            r.failed_at = None

    # --- outputs -----------------------------------------------------------------------

    @property
    def primary(self) -> Path:
        return self._primary

    @property
    def candidates(self) -> tuple[Path, ...]:
        return self._candidates

    def race_due(self, now: float) -> bool:
        return now >= self._due

    def next_deadline(self) -> float:
        """When the next race is due (-inf before the first: at once)."""
        return self._due

    def order(self, now: float) -> list[Path]:
        """The failover order for one request: the primary, then the others by their last
        race (successes by time, never raced, failed), recently failed last. Every
        candidate exactly once."""
        return [self._primary, *self._ranked(now, {self._primary})]

    def status(self, now: float) -> dict[str, Any]:
        """For a status page: JSON-ready, paths in failover order."""
        racing = self._racing is not None and now < self._racing + self.settings.race_timeout

        def ago(t: float | None) -> float | None:  # monotonic stamps mean nothing to a reader
            return None if t is None else round(now - t, 3)

        return {
            "primary": self._primary.label,
            "last_race_ago": ago(self._last_race),
            "racing": racing,
            "next_race_in": max(0.0, self._due - now),
            "paths": {
                p.label: {
                    "seconds": r.seconds,
                    "raced_ago": ago(r.raced_at),
                    "failed_ago": ago(r.failed_at),
                    "avoided": self._avoided(now, r),
                }
                for p in self.order(now)
                for r in (self._records[p],)
            },
        }

    # --- internals ---------------------------------------------------------------------

    def _set(self, candidates: Iterable[Path]) -> None:
        paths = list(dict.fromkeys(candidates))
        if DIRECT not in paths:
            paths.insert(0, DIRECT)
        self._candidates = tuple(paths)
        self._rank = {p: i for i, p in enumerate(paths)}
        self._records = {p: self._records.get(p) or _Record() for p in paths}

    def _avoided(self, now: float, r: _Record) -> bool:
        return r.failed_at is not None and now - r.failed_at < self.settings.retry_failed

    def _ranked(self, now: float, exclude: set[Path]) -> list[Path]:
        """The candidates but `exclude`, best first."""

        def key(p: Path) -> tuple[int, float, int]:
            r = self._records[p]
            if self._avoided(now, r):
                assert r.failed_at is not None
                return 3, r.failed_at, self._rank[p]  # the oldest failure has had longest to heal
            if r.seconds is not None:
                return 0, r.seconds, self._rank[p]
            return (1 if r.raced_at is None else 2), 0.0, self._rank[p]

        return sorted((p for p in self._candidates if p not in exclude), key=key)

    def _switch(self, to: Path, reason: str) -> Decision:
        previous, self._primary = self._primary, to
        return Decision(to, previous, to != previous, reason)
