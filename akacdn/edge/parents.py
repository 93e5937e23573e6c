"""Tiered distribution (pure): which parent edges a cache miss asks, in which order.

A customer (or the network default) names parent regions. An edge of a child region that
misses asks one edge of a parent region instead of the origin; that parent serves the
object from its cache or fetches it once, for every child at once. The shell (the edge's
fetch path) owns one `ParentHealth`, feeds it the outcome of every parent request, all
stamped with a monotonic `now`, and asks `choose` for the order to try on each miss.

Theory of operation.

- Candidates (`parent_candidates`). The live edges of the first named parent region that
  has any (the customer's order is preference order), ranked by weighted rendezvous
  score of the cache key (`mapping.assign.score`, weight = capacity): every child ranks
  one key's parents the same way, so they all ask the same parent edge first (that is
  what turns N children's misses into one origin fetch), keys spread over a region's
  edges by capacity, and an edge leaving the map only moves the keys it held. When that
  region has fewer than `max_parents` live edges the next named region's ranking follows,
  and so on. An edge of a parent region has no parents (it goes to the origin: no loops),
  and the asking edge is never its own parent, even in a map that lags its move.
  A region with enough live edges answers alone: its parents marked down are skipped, and
  after its usable ones comes the origin. A region whose edges die leaves the low-level
  map within seconds, and then the next named region comes in.
- Health (`ParentHealth`), after Apache Traffic Server's parent selection. `fail_threshold`
  consecutive failed requests (a success resets the count) mark a parent down. A down
  parent is not tried for `retry_after`; then exactly one request is let through as a
  probe (`usable` grants it once). The probe's success makes the parent rejoin; its
  failure keeps it down for another `retry_after` (a parent rejoins only after a retry
  succeeded, ATS PR #13474). A probe whose result never comes (the request was
  abandoned) lapses after `retry_after`, as if it had failed. While a parent is down and
  no probe is out, results are of requests sent before it went down: ignored.
- Order (`choose`), after Varnish's shard director and HAProxy's bounded-load consistent
  hashing (`hash-balance-factor`). Ring order, parents marked down skipped (the request
  falls through to the next parent on the ring). A retryable parent is probed only by a
  request for which it is the first parent that may be tried (no usable parent ranks above
  it): the probe is then the first try of its request, counts as that parent's try, and is
  never moved by bounded load, so a granted probe is sent unless the request is abandoned.
  Bounded load: among the usable parents of the list, one whose requests in flight (from
  this edge) reach its share of `balance_factor` x (all in flight + 1) is moved after the
  others, in ring order, not dropped; the overflow of a key thus goes to the next parent
  on its ring, the same one from every child. At most `max_parents` parents are tried;
  after them, the origin.

Load is this edge's own view (its requests in flight to each parent), as HAProxy's is
its own process's: a parent slow for everybody fills up in every child's view. At low
concurrency a parent with one request in flight can already be over its bound (HAProxy's
formula gives every server at least one slot, no more); the next miss for another of its
keys then goes to that key's next parent, which costs at most one more cache fill.

Memory: `ParentHealth` keeps an entry only for a parent with something to remember
(failures counted, down, or requests in flight); `retain` drops the parents that left the
map. Inputs never raise; only `ParentSettings` raises `ValueError` (bad settings).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec

from ..mapping.assign import score
from ..mapping.maps import RegionServers, Server

State = Literal["up", "down", "retryable", "probing"]


class ParentSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    fail_threshold: int = 10  # consecutive failures that mark a parent down (ATS's default)
    retry_after: float = 300.0  # seconds a down parent is left alone before one probe (ATS)
    balance_factor: float = 1.5  # bounded load: x the average share; <= 0 disables (HAProxy: 150, a percent)
    max_parents: int = 3  # parents one request tries before it goes to the origin
    # bounded load applies only to a parent with at least this many of our requests in flight:
    # below, the hash alone decides (a spill to a second parent costs a second origin fetch)
    balance_min: int = 8

    def __post_init__(self) -> None:
        if self.fail_threshold < 1 or self.max_parents < 1 or self.balance_min < 1:
            raise ValueError("fail_threshold, max_parents and balance_min must be >= 1")
        # 0 would let a granted probe lapse at once: more than one probe at a time
        if not 0 < self.retry_after < math.inf:
            raise ValueError("retry_after must be finite and > 0")
        # below 1 the bounds add up to less than the load: every parent would be over
        if not (self.balance_factor <= 0 or 1 <= self.balance_factor < math.inf):
            raise ValueError("balance_factor must be <= 0 (off) or >= 1")


def _ranked(cache_key: str, servers: Sequence[Server]) -> list[Server]:
    # the machine breaks (improbable) ties, so every child gets one order
    return sorted(servers, key=lambda s: (-score(cache_key, s.machine, s.capacity), s.machine))


def parent_candidates(
    cache_key: str,
    regions: Sequence[RegionServers],
    parent_regions: Sequence[str],
    own_region: str,
    own_machine: str,
    at_least: int = ParentSettings().max_parents,
) -> list[Server]:
    """The parents of `cache_key` for an edge (`own_machine` of `own_region`), best first.

    `regions` is the low-level map's (live edges per region), `parent_regions` the
    customer's parent regions in preference order. Empty when the edge is in a parent
    region (it goes to the origin) or no named region has a live edge. Otherwise the
    live edges of the first named region that has any, ranked by rendezvous score of the
    key (weight: capacity); the next named regions' rankings follow while fewer than
    `at_least` (pass the settings' `max_parents`) are listed. The asking edge and
    duplicates are left out. A region's `serving` flag is not looked at: it says whether
    the region may take clients; one live edge can still be a parent (better than the
    origin, and its failures are tracked).
    """
    named = list(dict.fromkeys(parent_regions))
    if own_region in named:
        return []
    by_region: dict[str, list[Server]] = {}
    for r in regions:
        by_region.setdefault(r.region, []).extend(r.servers)
    out: dict[str, Server] = {}
    for name in named:
        if len(out) >= at_least:
            break
        live = [s for s in by_region.get(name, ()) if s.machine != own_machine and s.machine not in out]
        for s in _ranked(cache_key, live):
            out[s.machine] = s
    return list(out.values())


@dataclass(slots=True)
class _Parent:
    failures: int = 0  # consecutive, while up
    in_flight: int = 0
    down_since: float | None = None  # None: up
    retry_at: float = 0.0  # while down: when the next probe may go (or a granted one lapses)
    probing: bool = False  # a probe was granted and its result has not come

    def idle(self) -> bool:
        return self.down_since is None and self.failures == 0 and self.in_flight == 0


class ParentHealth:
    """What one edge knows of the parents it asks. Single owner; never raises on input."""

    def __init__(self, settings: ParentSettings | None = None) -> None:
        self.settings = settings or ParentSettings()
        self._p: dict[str, _Parent] = {}
        # went_down | rejoined | probes | probe_failed | ignored (results while down, no probe out)
        self.counts: Counter[str] = Counter()

    # --- inputs ------------------------------------------------------------------------

    def failed(self, machine: str, now: float) -> None:
        """A request to `machine` failed (connect error, timeout, 5xx of its own)."""
        p = self._p.get(machine)
        if p is None:
            p = self._p[machine] = _Parent()
        if p.down_since is None:
            p.failures += 1
            if p.failures >= self.settings.fail_threshold:
                p.down_since, p.retry_at, p.probing, p.failures = now, now + self.settings.retry_after, False, 0
                self.counts["went_down"] += 1
        elif p.probing:
            # the probe failed: down for another retry period (the parent keeps its down_since)
            p.retry_at, p.probing = now + self.settings.retry_after, False
            self.counts["probe_failed"] += 1
        else:
            self.counts["ignored"] += 1
        self._prune(machine, p)

    def succeeded(self, machine: str, now: float) -> None:
        """A request to `machine` was answered (a response of the parent's, whatever its status)."""
        p = self._p.get(machine)
        if p is None:
            return
        if p.down_since is None:
            p.failures = 0
        elif p.probing:
            p.down_since, p.probing, p.failures = None, False, 0
            self.counts["rejoined"] += 1
        else:
            # sent before it went down: a straggler's success does not end the down period,
            # only a probe's does (or a flaky parent would rejoin on its last good answer)
            self.counts["ignored"] += 1
        self._prune(machine, p)

    def started(self, machine: str) -> None:
        """A request to `machine` is being sent (bounded load counts it until `finished`)."""
        p = self._p.get(machine)
        if p is None:
            p = self._p[machine] = _Parent()
        p.in_flight += 1

    def finished(self, machine: str) -> None:
        """A request counted by `started` ended, whatever its outcome. Unmatched calls are ignored."""
        p = self._p.get(machine)
        if p is None or p.in_flight == 0:
            return  # forgotten by `retain` meanwhile, or a shell bug: never below 0
        p.in_flight -= 1
        self._prune(machine, p)

    def usable(self, machine: str, now: float) -> bool:
        """Whether a request may be sent to `machine` now. For a down parent whose retry time
        has come this grants the one probe: True once, then False until the probe's result
        (`succeeded`: rejoined; `failed`: down another `retry_after`) or its lapse."""
        p = self._p.get(machine)
        if p is None or p.down_since is None:
            return True
        if now < p.retry_at:
            return False
        p.probing, p.retry_at = True, now + self.settings.retry_after
        self.counts["probes"] += 1
        return True

    def retain(self, machines: Collection[str]) -> None:
        """Forget every parent not in `machines` (the edges of the current map): bounds memory.
        Results of requests to a forgotten parent that come later are ignored."""
        for m in [m for m in self._p if m not in machines]:
            del self._p[m]

    # --- outputs -----------------------------------------------------------------------

    def state(self, machine: str, now: float) -> State:
        """`usable` without its side effect: up, down (waiting), retryable (a probe may go)
        or probing (the probe is out)."""
        p = self._p.get(machine)
        if p is None or p.down_since is None:
            return "up"
        if now >= p.retry_at:
            return "retryable"
        return "probing" if p.probing else "down"

    def in_flight(self, machine: str) -> int:
        p = self._p.get(machine)
        return 0 if p is None else p.in_flight

    def next_deadline(self) -> float | None:
        """When a down parent becomes retryable (or a probe lapses); None: no parent is down."""
        return min((p.retry_at for p in self._p.values() if p.down_since is not None), default=None)

    def status(self, now: float) -> dict[str, object]:
        """For a status page (JSON-ready): every remembered parent, and the event counts."""
        parents: dict[str, dict[str, object]] = {}
        for m in sorted(self._p):
            p = self._p[m]
            row: dict[str, object] = {"state": self.state(m, now), "failures": p.failures, "in_flight": p.in_flight}
            if p.down_since is not None:
                row["down_for"] = round(now - p.down_since, 3)
                row["retry_in"] = round(max(0.0, p.retry_at - now), 3)
            parents[m] = row
        down = [m for m, p in parents.items() if p["state"] != "up"]
        return {"parents": parents, "down": down, "counts": dict(self.counts)}

    def __len__(self) -> int:
        """Parents remembered (the memory bound's measure)."""
        return len(self._p)

    def _prune(self, machine: str, p: _Parent) -> None:
        if p.idle():
            del self._p[machine]


def choose(candidates: Sequence[Server], health: ParentHealth, now: float) -> list[Server]:
    """The parents to try for one request, in order, at most `max_parents` (of the health's
    settings); after them, the origin. `candidates` come ranked (`parent_candidates`).

    Ring order, parents marked down left out. A retryable parent gets the probe (through
    `health.usable`) only when no usable parent ranks above it; it then goes first.
    Bounded load moves usable parents over their bound after the others (see `_balanced`).
    """
    settings = health.settings
    up: list[Server] = []
    probe: Server | None = None
    seen: set[str] = set()
    for c in candidates:
        if c.machine in seen:
            continue
        seen.add(c.machine)
        state = health.state(c.machine, now)
        if state == "up":
            up.append(c)
        elif state == "retryable" and not up and probe is None:
            probe = c  # the first parent that may be tried for this key: its probe is sure to go
    order = [probe] if probe is not None and health.usable(probe.machine, now) else []
    order.extend(_balanced(up, health, settings.balance_factor, settings.balance_min))
    return order[: settings.max_parents]


def _balanced(up: list[Server], health: ParentHealth, factor: float, floor: int = 1) -> list[Server]:
    """Bounded load, after HAProxy's `chash_server_is_eligible`: the request about to be sent
    plus those in flight, times `factor`, are the slots; each parent's share of them follows
    its capacity (equal shares when no capacity is given), rounded up, at least 1. A parent
    with as many requests in flight as its slots, and at least `floor`, is over: it goes
    after the others. (HAProxy counts every source's load; an edge sees only its own, so at
    low load one request in flight would already spill a key to a second parent, which
    fetches its own copy: the floor leaves low load to the hash alone.)

    With factor >= 1 the slots outnumber the requests in flight, so some parent is always
    under its bound: bounded load only reorders, the first try is never an overloaded
    parent while another has room.
    """
    if factor <= 0 or len(up) < 2:
        return up
    loads = [health.in_flight(s.machine) for s in up]
    weights = [max(s.capacity, 0) for s in up]
    total_weight = sum(weights)
    if total_weight <= 0:
        weights, total_weight = [1] * len(up), len(up)
    slots = factor * (sum(loads) + 1)
    under: list[Server] = []
    over: list[Server] = []
    for s, load, w in zip(up, loads, weights, strict=True):
        share = max(1, math.ceil(slots * w / total_weight - 1e-9))  # no float dust over an integer
        (under if load < max(share, floor) else over).append(s)
    return under + over
