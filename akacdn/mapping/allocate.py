"""Load-aware assignment of client networks to regions (pure): measurements and loads in,
ranked (and, while a move ramps, weighted) routes out.

The mapping center runs one `Allocator.assign` per `[mapping] assign_interval` (Akamai:
about once a minute). Inputs are the configured client networks (map units), every
region's serving state, capacity and measured load, the fresh probe paths
(prefix -> region -> RTT and loss) and the measured demand per network; time is passed
in. Nothing here does I/O, sleeps or draws random numbers: the same inputs and the same
history give the same output.

Theory of operation.

- Score. A (network, region) path scores `rtt_ms + loss_weight * loss_percent`; lower
  is better. A network's candidates are the serving regions (only those it `allowed`
  when that is set). Its preference list is its measured candidates, best score first
  (ties by region id), then its unmeasured candidates: its static region, that region's
  fallback, the rest by id (only as many as a route needs).
- No paths. A network with no measured path follows its static order (static region
  and its fallback, serving or not: the LLNS skips those that do not serve, then the
  other candidates by id) and is not allocated (no moves, no hysteresis); one with
  neither paths nor a static region gets no route, and the LLNSes answer it from their
  region's default order. Its demand counts at its first serving region.
- Demand and load. A network's demand is the measured one, else its weight times a
  demand per unit of weight: the measured networks' mean, or when none is measured, the
  load of all regions over the weights of all configured networks. (Not the load of
  the network's own region: that counts the region's background as its demand, so a
  network that moved into a busy region would look big there and be shed back, again
  and again.) A region's background is its measured load minus the demand routed to it
  in the interval just ended (by the ramp weights then in force). Its projected load is
  the background plus the demand of the networks assigned to it: in full at the region
  a network is assigned to and, while a move ramps, with the share still left at the
  region it ramps away from. A region is filled up to `target_load` of its capacity.
- Learning what an estimate missed. A network with unmeasured demand that is shed from
  the region it moved to, within the cycles that move took to bring all its demand
  there, brought more than estimated: the rise of the region's load beyond what it had
  without it at the move (scaled by its ramp weight) is added to its demand from then on
  (until its demand is measured). Without this, such a network would move in, be shed,
  move back in, for ever.
- A cycle starts from the previous assignment (stability) and changes it in four steps,
  each recorded as a `Move` with its reason:
  1. forced: a network whose region no longer serves (or is no longer allowed) goes to
     its best candidate with room under `target_load`, else to its best candidate (largest
     demand first); the ramp is cancelled. Not capped by `max_moves`.
  2. new: networks first seen (or newly measured after having no route) take their best
     candidate with room, largest demand first. Not capped.
  3. shed: while a region's projected load is above `target_load` of its capacity (most
     utilised region first), the network with the least regret moves off it at once
     (score at its best other measured region with room, minus its score now; ties: the
     larger demand first). A network with nowhere to go stays. Hold does not protect from
     shedding. Each shed counts towards `max_moves`.
  4. better: a network whose hold has expired, that is not ramping, moves to its best
     measured region with room under `return_load` (the lower, "up" threshold: a shed
     network comes back only once the region has clear room) when that scores at most
     `(1 - move_margin)` times its current score; the largest relative improvement
     first, up to the moves `max_moves` leaves. Such a move ramps: for k = 1 ..
     ramp_steps (one step per cycle) the route's weights are k/ramp_steps for the new
     region and 1 - k/ramp_steps for the old one; at k = ramp_steps it is done.
  Every move but a first placement starts the network's `hold` (at a center's start a
  network's best region may not serve yet: it moves there at the next cycle, held by
  nothing but the margin); a network moves at most once per cycle. The
  moves considered are to measured regions only (an unmeasured region is no better for
  shedding or improving), except a forced or new one with no measured candidate, which
  takes the first of its preference list.
- Fixed point. With steady loads and demand, sheds only happen from regions above
  `target_load`, and no move fills a region above `target_load` (`return_load` for
  improvements), so a shed network does not bounce back; an improvement needs a score
  better by the margin, so no two regions trade a network back and forth; the hold
  spaces a network's improvements. The property tests hold it to a bound of
  hold/interval + ramp_steps + networks/max_moves + 2 cycles after the loads settle.
- Routes. Per network with paths or a static region: its assigned region, its ramp
  source while ramping, then the rest of its preference list, truncated to `ranked`,
  sorted by prefix. `weights` is empty unless the network ramps.

Networks no longer configured are forgotten. Inputs are never rejected by raising:
duplicate prefixes (the first counts), paths with a negative or non-finite RTT, negative
demand, unknown regions are ignored. Cost per cycle is linear in networks x measured
paths per network (plus a heap per overloaded region), never networks x regions.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .maps import Route

_INF = math.inf


class AllocSettings(NamedTuple):
    """Copied from the config's `MappingSettings` by the caller."""

    loss_weight: float = 10.0  # score = rtt_ms + loss_weight * loss_percent (lower is better)
    target_load: float = 0.85  # a region is assigned at most this fraction of its capacity
    return_load: float = 0.75  # an improvement move goes into a region only while it stays <= this
    move_margin: float = 0.15  # an improvement move needs new_score <= (1 - move_margin) * current_score
    hold: float = 300.0  # seconds after any move before an improvement move may move it again
    max_moves: int = 50  # shed + improvement moves per cycle (forced and new ones are not capped)
    ramp_steps: int = 3  # cycles an improvement move ramps over (1: at once)
    ranked: int = 4  # regions per network in the output Route


class NetworkInput(NamedTuple):
    prefix: str
    static: str  # static region from config ("" none)
    allowed: frozenset[str]  # regions that may serve it (empty = all)
    weight: float  # expected demand share when demand is unmeasured


class RegionInput(NamedTuple):
    id: str
    serving: bool
    capacity: float  # req/s the region's live edges can take (math.inf: not load-managed)
    load: float  # req/s measured now (sum of its edges' heartbeats)
    fallback: tuple[str, ...]  # config fallback order


class Path(NamedTuple):
    rtt_ms: float
    loss: float  # fraction 0..1


class Move(NamedTuple):
    prefix: str
    src: str  # "" when newly assigned
    dst: str
    why: str  # "better" | "shed" | "forced" | "new"


class Allocation(NamedTuple):
    routes: tuple[Route, ...]  # one per network that has measurements or a static region; sorted by prefix
    moves: tuple[Move, ...]  # what moved this cycle and why, in the order decided


@dataclass(slots=True)
class _Unit:
    """What the allocator remembers of one network between cycles."""

    region: str  # assigned region (a ramp's target)
    src: str = ""  # region ramped away from ("" none)
    step: int = 0  # ramp progress k, 1 .. ramp_steps - 1 while ramping
    since: float = -_INF  # the last move: the hold runs from here
    fixed: bool = False  # no paths: follows its static order, not allocated
    age: int = 0  # cycles since the last move
    base: float = -1.0  # the region's projected load without it when it moved in (-1: not moved)
    ramp: int = 1  # the cycles that move took to bring all its demand (ramp_steps for `better`)
    extra: float = 0.0  # learned: demand the estimate missed (unmeasured demand only)


class Allocator:
    """The allocation state of one mapping center. Single owner; `settings` may be replaced
    between cycles (a config reload)."""

    def __init__(self, settings: AllocSettings) -> None:
        self.settings = settings
        self._units: dict[str, _Unit] = {}

    def current(self) -> dict[str, str]:
        """prefix -> the region it is assigned to (a ramp's target)."""
        return {p: u.region for p, u in self._units.items()}

    def defaults(self, regions: Sequence[RegionInput]) -> dict[str, tuple[str, ...]]:
        """Per region r, the order for clients no route covers: r, its fallback, the other
        regions by utilization then id; serving ones only (if none serves: those with
        capacity), truncated to `ranked`."""
        ranked = max(1, self.settings.ranked)
        pool = [r for r in regions if r.serving] or [r for r in regions if r.capacity > 0]
        ids = {r.id for r in pool}
        by_use = [r.id for r in sorted(pool, key=lambda r: (_utilization(r.load, r.capacity), r.id))]
        out: dict[str, tuple[str, ...]] = {}
        for r in regions:
            seq: dict[str, None] = {}
            for x in (r.id, *r.fallback):
                if x in ids:
                    seq[x] = None
            for x in by_use:
                if len(seq) >= ranked:
                    break
                seq.setdefault(x, None)
            out[r.id] = tuple(seq)[:ranked]
        return out

    def assign(
        self,
        now: float,
        networks: Sequence[NetworkInput],
        regions: Sequence[RegionInput],
        paths: Mapping[str, Mapping[str, Path]],
        demand: Mapping[str, float],
    ) -> Allocation:
        """One allocation cycle: see the module's theory of operation."""
        return _Cycle(self, now, networks, regions, paths, demand).run()


def _utilization(load: float, capacity: float) -> float:
    if capacity == _INF:
        return 0.0
    if capacity <= 0:
        return _INF
    return load / capacity


class _Cycle:
    """The working state of one `assign` call."""

    def __init__(
        self,
        alloc: Allocator,
        now: float,
        networks: Sequence[NetworkInput],
        regions: Sequence[RegionInput],
        paths: Mapping[str, Mapping[str, Path]],
        demand: Mapping[str, float],
    ) -> None:
        s = alloc.settings
        self.alloc, self.now, self.s = alloc, now, s
        self.steps = max(1, s.ramp_steps)
        self.ranked = max(1, s.ranked)
        self.units = alloc._units
        self.nets: dict[str, NetworkInput] = {}
        for n in networks:
            self.nets.setdefault(n.prefix, n)
        self.order = sorted(self.nets)  # iteration order independent of the input's
        self.regions: dict[str, RegionInput] = {}
        for r in regions:
            self.regions.setdefault(r.id, r)
        self.live = {rid for rid, r in self.regions.items() if r.serving}
        self.live_sorted = sorted(self.live)
        self.target = {rid: s.target_load * r.capacity for rid, r in self.regions.items()}
        self.ret = {rid: s.return_load * r.capacity for rid, r in self.regions.items()}
        self.paths = paths
        self.demand_in = demand
        self.P: dict[str, float] = {}  # projected load per region
        self.D: dict[str, float] = {}  # demand per network
        self.pref: dict[str, list[tuple[float, str]]] = {}  # measured candidates, best first
        self.measured: set[str] = set()  # networks with at least one usable path
        self.estimated: set[str] = set()  # networks whose demand is not measured
        self.moved: set[str] = set()
        self.moves: list[Move] = []

    # --- the cycle ---------------------------------------------------------------------

    def run(self) -> Allocation:
        units = self.units
        for p in [p for p in units if p not in self.nets]:
            del units[p]  # no longer configured
        for u in units.values():
            u.age += 1
        self._demand()
        self._background()
        self._preferences()
        self._advance_ramps()
        self._project()
        self._forced()
        self._new()
        budget = max(0, self.s.max_moves)
        budget -= self._shed(budget)
        self._better(budget)
        return Allocation(self._routes(), tuple(self.moves))

    def _candidate(self, n: NetworkInput, rid: str) -> bool:
        return rid in self.live and (not n.allowed or rid in n.allowed)

    def _demand(self) -> None:
        """Measured demand, else the network's weight times a demand per unit of weight: the
        measured networks' mean when some are measured, else all regions' load over all
        configured networks' weights (an estimate that does not depend on the assignment)."""
        D, nets, order = self.D, self.nets, self.order
        for p in order:
            v = self.demand_in.get(p)
            if v is not None and 0 <= v < _INF:
                D[p] = float(v)
                u = self.units.get(p)
                if u is not None:
                    u.extra = 0.0
        if len(D) == len(nets):
            return
        if D:
            wsum, total = sum(max(0.0, nets[p].weight) for p in D), sum(D.values())
        else:
            wsum = sum(max(0.0, nets[p].weight) for p in order)
            total = sum(r.load for r in self.regions.values() if 0 <= r.load < _INF)
        rate = total / wsum if wsum > 0 else 0.0
        for p in order:
            if p not in D:
                self.estimated.add(p)
                u = self.units.get(p)
                D[p] = max(0.0, nets[p].weight) * rate + (u.extra if u is not None else 0.0)

    def _background(self) -> None:
        """Background: measured load minus the demand routed to the region last interval."""
        P = self.P
        for rid, r in self.regions.items():
            P[rid] = r.load
        steps, D = self.steps, self.D
        for p, u in self.units.items():
            d = D[p]
            if u.src:
                w = u.step / steps
                if u.region in P:
                    P[u.region] -= d * w
                if u.src in P:
                    P[u.src] -= d * (1 - w)
            elif u.region in P:
                P[u.region] -= d
        for rid in P:
            P[rid] = max(0.0, P[rid]) if P[rid] < _INF else 0.0

    def _preferences(self) -> None:
        """Each network's measured candidates, best first; networks without paths follow
        their static order (not allocated)."""
        lw = self.s.loss_weight * 100.0
        live, regions = self.live, self.regions
        for p in self.order:
            n = self.nets[p]
            got = self.paths.get(p)
            scored: list[tuple[float, str]] = []
            usable = False
            if got:
                allowed = n.allowed
                for rid, path in got.items():
                    rtt = path[0]
                    if not (0 <= rtt < _INF) or rid not in regions:
                        continue
                    usable = True
                    if rid in live and (not allowed or rid in allowed):
                        loss = path[1]
                        loss = 0.0 if not loss > 0 else 1.0 if loss > 1 else loss
                        scored.append((rtt + lw * loss, rid))
                scored.sort()
            if usable:
                self.measured.add(p)
                self.pref[p] = scored
                u = self.units.get(p)
                if u is not None and u.fixed:
                    u.fixed = False  # measured now: allocated from where it is (not new)
                continue
            order = self._tail(n, (), 1) if n.static else []
            if order:
                u = self.units.get(p)
                if u is None:
                    self.units[p] = _Unit(order[0], fixed=True)
                else:
                    u.region, u.src, u.step, u.fixed = order[0], "", 0, True
            else:
                self.units.pop(p, None)  # no paths, no static: the LLNS defaults serve it

    def _advance_ramps(self) -> None:
        """One ramp step per cycle; a ramp whose source can no longer serve ends at once."""
        for p, u in self.units.items():
            if u.src:
                u.step += 1
                if u.step >= self.steps or not self._candidate(self.nets[p], u.src):
                    u.src, u.step = "", 0

    def _project(self) -> None:
        P, D, steps = self.P, self.D, self.steps
        for p, u in self.units.items():
            d = D[p]
            P[u.region] = P.get(u.region, 0.0) + d
            if u.src:
                P[u.src] = P.get(u.src, 0.0) + d * (1 - u.step / steps)

    def _tail(self, n: NetworkInput, skip: Sequence[str] | set[str] | dict[str, None], limit: int) -> list[str]:
        """Up to `limit` candidates of n not in `skip`: static, its fallback, then by id."""
        out: list[str] = []
        seen = set(skip)
        if n.static:
            r = self.regions.get(n.static)
            for x in (n.static, *(r.fallback if r is not None else ())):
                if x not in seen and self._candidate(n, x):
                    out.append(x)
                    seen.add(x)
                    if len(out) >= limit:
                        return out
        pool = sorted(x for x in n.allowed if x in self.live) if n.allowed else self.live_sorted
        for x in pool:
            if x not in seen:
                out.append(x)
                seen.add(x)
                if len(out) >= limit:
                    break
        return out

    # --- moves -------------------------------------------------------------------------

    def _move(self, p: str, u: _Unit, dst: str, why: str, ramp: bool = False) -> None:
        P, d, steps = self.P, self.D[p], self.steps
        old = u.region
        P[old] = P.get(old, 0.0) - d
        if u.src:
            P[u.src] = P.get(u.src, 0.0) - d * (1 - u.step / steps)
        if ramp and steps > 1:
            u.src, u.step = old, 1
            P[old] += d * (1 - 1 / steps)
        else:
            u.src, u.step = "", 0
        u.base, u.ramp = P.get(dst, 0.0), steps if ramp else 1
        u.region, u.since, u.age = dst, self.now, 0
        P[dst] = P.get(dst, 0.0) + d
        self.moved.add(p)
        self.moves.append(Move(p, old, dst, why))

    def _first_choice(self, p: str) -> str | None:
        """The best measured candidate with room under target_load, else the best candidate."""
        d, target = self.D[p], self.target
        pref = self.pref[p]
        for _, rid in pref:
            if self.P[rid] + d <= target[rid]:
                return rid
        if pref:
            return pref[0][1]
        got = self._tail(self.nets[p], (), 1)
        return got[0] if got else None

    def _forced(self) -> None:
        lost = [p for p in self.measured if p in self.units and not self._candidate(self.nets[p], self.units[p].region)]
        for p in sorted(lost, key=lambda p: (-self.D[p], p)):
            u = self.units[p]
            dst = self._first_choice(p)
            if dst is not None:
                self._move(p, u, dst, "forced")

    def _new(self) -> None:
        fresh = sorted((p for p in self.measured if p not in self.units), key=lambda p: (-self.D[p], p))
        for p in fresh:
            dst = self._first_choice(p)
            if dst is None:
                continue  # nothing can serve it: no assignment yet
            P, d = self.P, self.D[p]
            # a first placement starts no hold: at a center's start the best region may not
            # serve yet, and the network goes there at the next cycle that finds it better
            self.units[p] = _Unit(dst, base=P.get(dst, 0.0))
            P[dst] = P.get(dst, 0.0) + d
            self.moved.add(p)
            self.moves.append(Move(p, "", dst, "new"))

    def _score(self, p: str, rid: str) -> float:
        for sc, r in self.pref[p]:
            if r == rid:
                return sc
        return _INF  # not measured: anywhere measured is better

    def _shed_entry(self, p: str, here: str, cur: float) -> tuple[float, float, str, str] | None:
        d, P, target = self.D[p], self.P, self.target
        for sc, rid in self.pref[p]:
            if rid != here and P[rid] + d <= target[rid]:
                regret = sc - cur if cur < _INF else -_INF
                return (regret, -d, p, rid)
        return None

    def _shed(self, budget: int) -> int:
        """Move networks off regions above target_load, least regret first. Returns the moves made."""
        P, target, units = self.P, self.target, self.units
        over = [rid for rid in self.live if P[rid] > target[rid]]
        if not over or budget <= 0:
            return 0
        members: dict[str, list[str]] = {rid: [] for rid in over}
        for p, u in units.items():
            if u.region in members and not u.fixed and p not in self.moved and self.D[p] > 0:
                members[u.region].append(p)
        cap = {rid: self.regions[rid].capacity for rid in over}
        over.sort(key=lambda rid: (-(P[rid] / cap[rid] if cap[rid] > 0 else _INF), rid))
        made = 0
        for rid in over:
            heap: list[tuple[float, float, str, str]] = []
            for p in members[rid]:
                e = self._shed_entry(p, rid, self._score(p, rid))
                if e is not None:
                    heap.append(e)
            heapq.heapify(heap)
            while heap and P[rid] > target[rid] and made < budget:
                regret, negd, p, dst = heapq.heappop(heap)
                if P[dst] - negd > target[dst]:  # lost its room to an earlier shed
                    e = self._shed_entry(p, rid, self._score(p, rid))
                    if e is not None:
                        heapq.heappush(heap, e)
                    continue
                self._learn(p, units[p])
                self._move(p, units[p], dst, "shed")
                made += 1
        return made

    def _learn(self, p: str, u: _Unit) -> None:
        """A network shed from the region it just moved to (within the cycles its move took
        to bring all its demand): with unmeasured demand, the load that came with it (beyond
        what the region had without it at the move) is demand its estimate missed. It counts
        from now on, so the network does not come back (or go on) to be shed again and again."""
        if u.base < 0 or u.age > u.ramp or p not in self.estimated:
            return
        seen = min(1.0, u.age / u.ramp)  # its weight there in the interval just measured
        missed = (self.P[u.region] - self.D[p] - u.base) / seen
        if missed > 0:
            u.extra += missed

    def _better_entry(self, p: str, u: _Unit) -> tuple[tuple[float, str, str] | None, list[str]]:
        """(-improvement, prefix, region) of the best improving region with room under
        return_load, and the improving regions (to retry when one of them frees room)."""
        d, P, ret = self.D[p], self.P, self.ret
        cur = self._score(p, u.region)
        bar = (1 - self.s.move_margin) * cur
        improving: list[str] = []
        for sc, rid in self.pref[p]:
            if sc > bar or sc >= cur:
                break
            improving.append(rid)
            if P[rid] + d <= ret[rid]:
                gain = 1.0 - sc / cur if cur < _INF else 1.0
                return (-gain, p, rid), improving
        return None, improving

    def _better(self, budget: int) -> None:
        """Improvement moves for networks out of hold, largest relative improvement first."""
        if budget <= 0:
            return
        hold, now, units = self.s.hold, self.now, self.units
        heap: list[tuple[float, str, str]] = []
        waiting: dict[str, list[str]] = {}  # region -> networks that wait for room there
        for p, u in units.items():
            if u.fixed or u.src or p in self.moved or now - u.since < hold:
                continue
            e, improving = self._better_entry(p, u)
            if e is not None:
                heap.append(e)
            else:
                for rid in improving:
                    waiting.setdefault(rid, []).append(p)
        heapq.heapify(heap)
        made = 0
        while heap and made < budget:
            _, p, dst = heapq.heappop(heap)
            u = units[p]
            if p in self.moved:
                continue
            if self.P[dst] + self.D[p] > self.ret[dst]:  # filled by an earlier move: look again
                e, improving = self._better_entry(p, u)
                if e is not None:
                    heapq.heappush(heap, e)
                else:
                    for rid in improving:
                        waiting.setdefault(rid, []).append(p)
                continue
            old = u.region
            self._move(p, u, dst, "better", ramp=True)
            made += 1
            for q in waiting.pop(old, ()):  # the move freed (some) room where p was
                if q not in self.moved:
                    e, _ = self._better_entry(q, units[q])
                    if e is not None:
                        heapq.heappush(heap, e)

    # --- output ------------------------------------------------------------------------

    def _routes(self) -> tuple[Route, ...]:
        ranked, steps = self.ranked, self.steps
        out: list[Route] = []
        for p in self.order:
            n, u = self.nets[p], self.units.get(p)
            if p not in self.measured:
                if u is not None or n.static:
                    out.append(Route(p, tuple(self._static_order(n, ranked))))
                continue
            seq: dict[str, None] = {}
            if u is not None:
                seq[u.region] = None
                if u.src:
                    seq[u.src] = None
            for _, rid in self.pref[p]:
                if len(seq) >= ranked:
                    break
                seq.setdefault(rid, None)
            if len(seq) < ranked:
                tail = self._tail(n, seq, ranked - len(seq))
                if not tail and not self.pref[p]:  # nothing serves it: list what could, serving or not
                    tail = self._anywhere(p, n)
                for rid in tail:
                    seq.setdefault(rid, None)
            if not seq:
                continue
            regions = tuple(seq)[:ranked]
            weights: tuple[float, ...] = ()
            if u is not None and u.src and len(regions) >= 2:
                k = u.step / steps
                weights = (k, 1 - k) + (0.0,) * (len(regions) - 2)
            out.append(Route(p, regions, weights))
        return tuple(out)

    def _static_order(self, n: NetworkInput, limit: int) -> list[str]:
        """An unmeasured network's route: its static region and that region's fallback,
        serving or not (the LLNS skips a region while it does not serve, so a region that
        is not serving yet at this cycle, say while the center warms up, is not lost until
        the next), then the serving candidates by id."""
        seq: dict[str, None] = {}
        r = self.regions.get(n.static)
        for x in (n.static, *(r.fallback if r is not None else ())):
            if x in self.regions and (not n.allowed or x in n.allowed):
                seq.setdefault(x, None)
        for x in self._tail(n, seq, limit):
            seq.setdefault(x, None)
        return list(seq)[:limit]

    def _anywhere(self, p: str, n: NetworkInput) -> list[str]:
        """Nothing can serve a measured network: its allowed measured regions by score, then
        its static region and fallback, serving or not (the LLNS skips those that are not)."""
        lw = self.s.loss_weight * 100.0
        got = self.paths.get(p) or {}
        measured = sorted(
            (path[0] + lw * min(1.0, max(0.0, path[1])), rid)
            for rid, path in got.items()
            if rid in self.regions and 0 <= path[0] < _INF and (not n.allowed or rid in n.allowed)
        )
        seq = dict.fromkeys(rid for _, rid in measured)
        r = self.regions.get(n.static)
        for x in (n.static, *(r.fallback if r is not None else ())):
            if x in self.regions and (not n.allowed or x in n.allowed):
                seq.setdefault(x, None)
        return list(seq)[: self.ranked]
