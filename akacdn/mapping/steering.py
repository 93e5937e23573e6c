"""Steering (pure): the mapping center's measured, load-aware choice of regions per client
network, between the measurements and the maps.

Theory of operation. `Measurements` keeps the probe paths and demand the edges report.
Every `[mapping] assign_interval` (Akamai: about once a minute) `assign` turns the live
set into each region's serving state, capacity (the sum of its live edges' `max_rps`; a
region whose edges set none is not load-managed: unlimited) and load (the sum of its
live edges' heartbeat loads), and hands those, the fresh paths and the demand to the
`Allocator`, whose routes (ranked, weighted regions per client network) the next maps
carry until the next cycle. Between cycles a region that stops serving needs no new
cycle: every LLNS skips a non-serving region of a route (the serving flags come in the
same map). `defaults` (per region: the order for clients no route covers) follows
every build, since it only depends on which regions serve.

Demand: when the edges measured any client network's requests, a network they did not
see has no demand; when they measured none (clients from no configured network), the
allocator estimates it from the networks' weights and the whole network's load.
"""

from __future__ import annotations

import math
from collections.abc import Collection

from ..config import Network
from .allocate import Allocation, Allocator, AllocSettings, NetworkInput, RegionInput
from .maps import Route
from .measure import Measurements
from .messages import Heartbeat


def settings(net: Network) -> AllocSettings:
    """The allocator's settings: `[mapping]`'s fields of the same names."""
    return AllocSettings(**{f: getattr(net.mapping, f) for f in AllocSettings._fields})


class Steering:
    """Measurements in, routes for the maps out (time passed in: the center's monotonic clock)."""

    def __init__(self, net: Network) -> None:
        self.measurements = Measurements(net)
        self.allocator = Allocator(settings(net))
        self.routes: tuple[Route, ...] = ()
        self.last: Allocation | None = None
        self.next_assign = 0.0
        self.configure(net)

    def configure(self, net: Network) -> None:
        """Take a (re)loaded config; the current assignment stays (the allocator forgets
        networks no longer configured at its next cycle)."""
        self.net = net
        self.measurements.configure(net)
        self.allocator.settings = settings(net)
        self._networks = [NetworkInput(c.prefix, c.region, frozenset(c.regions), c.weight) for c in net.client_networks]
        self.next_assign = 0.0  # the networks, weights or regions may have changed: a cycle at the next build

    def regions(self, live: dict[str, Heartbeat], out: Collection[str]) -> list[RegionInput]:
        """Each configured region's serving state, capacity and load from the live set."""
        edges: dict[str, list[tuple[float, float]]] = {r.id: [] for r in self.net.regions}
        for m in self.net.by_role("edge"):
            hb = live.get(m.id)
            if hb is not None and m.id not in out:
                edges[m.region].append((m.max_rps, hb.load))
        regions = []
        for r in self.net.regions:
            got = edges[r.id]
            managed = bool(got) and all(rps > 0 for rps, _ in got)
            capacity = sum(rps for rps, _ in got) if managed else (math.inf if got else 0.0)
            regions.append(RegionInput(r.id, len(got) >= 2, capacity, sum(load for _, load in got), tuple(r.fallback)))
        return regions

    def due(self, now: float) -> bool:
        return now >= self.next_assign

    def assign(self, now: float, live: dict[str, Heartbeat], out: Collection[str]) -> Allocation:
        """One allocation cycle: the routes the maps carry from now on."""
        measured = self.measurements.demand(now)
        demand = {n.prefix: measured.get(n.prefix, 0.0) for n in self._networks} if measured else {}
        paths = self.measurements.paths(now)
        alloc = self.allocator.assign(now, self._networks, self.regions(live, out), paths, demand)
        self.routes, self.last = alloc.routes, alloc
        self.next_assign = now + self.net.mapping.assign_interval
        return alloc

    def defaults(self, live: dict[str, Heartbeat], out: Collection[str]) -> dict[str, tuple[str, ...]]:
        """Per region: the order its LLNSes answer from for clients no route covers."""
        return self.allocator.defaults(self.regions(live, out))

    def doc(self, now: float, live: dict[str, Heartbeat], out: Collection[str], network: str = "") -> dict:
        """The operator's view (`GET /v1/mapping`, `akacdn mapping`): each region's state and
        load, each client network's route and where it is assigned, the last cycle's moves;
        with `network`, that network's measured paths too."""
        current = self.allocator.current()
        moves = self.last.moves if self.last else ()
        routes = [r for r in self.routes if not network or r.prefix == network]
        doc: dict = {
            "assign_in": round(max(0.0, self.next_assign - now), 3),
            "regions": [
                {"id": r.id, "serving": r.serving, "load": round(r.load, 3),
                 "capacity": None if math.isinf(r.capacity) else round(r.capacity, 3)}
                for r in self.regions(live, out)
            ],
            "routes": [
                {"prefix": r.prefix, "assigned": current.get(r.prefix, ""), "regions": list(r.regions),
                 "weights": list(r.weights)}
                for r in routes
            ],
            "moves": [m._asdict() for m in moves if not network or m.prefix == network],
        }  # fmt: skip
        if network:
            paths = sorted(self.measurements.paths(now).get(network, {}).items())
            doc["paths"] = {g: {"rtt_ms": round(p.rtt_ms, 3), "loss": round(p.loss, 4)} for g, p in paths}
            doc["demand"] = round(self.measurements.demand(now).get(network, 0.0), 3)
        return doc
