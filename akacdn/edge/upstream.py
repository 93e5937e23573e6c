"""Which way a miss goes (asyncio shell over the pure cores): to a parent edge first
(tiered distribution, `parents.py`), then to the origin directly or through an edge of an
intermediate region (SureRoute, `sureroute.py`); and the races that choose the route.

Every request to another edge carries a grant (`tunnel.py`, header `X-Akacdn-Tunnel`):
sealed with a key derived from the network's message keys, bound to the customer, method,
target and purpose, good for a few seconds and once. The edge that gets one checks it
(`verify`) before it fetches anything for the asker: an edge is never an open relay.

- Parents: a GET/HEAD miss of a customer with parent regions (its own, else the network's
  `[parents] regions`) goes to the parent edge the cache key hashes to in the first parent
  region with live edges (the low-level map), then the next along the ring, at most
  `max_parents`; an edge inside a parent region, and a request that came from a child,
  go on to the origin. Parents that keep failing are held out (`ParentHealth`).
- SureRoute: a customer with `sureroute` races its test object over direct and the best
  intermediate regions (the own region's `fallback` list first, then the map's order)
  every `interval`; misses take the winner; a failing idempotent request moves to the
  next path at once, and a race follows `after_failure` later. An unsafe request takes
  the primary only (it may have reached the origin).
- The region's edge that carries a path is the one the origin hashes to among its live
  edges: one warm connection pool per origin there.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from ..config import Customer, Network
from ..mapping.assign import score
from ..mapping.maps import LowMap, RegionServers, Server
from ..runtime import Runtime
from ..serials import hostname as serial_hostname
from . import parents as tier
from .sureroute import DIRECT, Decision, Path, RaceSettings, Routes
from .tunnel import HEADER_NAME, Grant, Purpose, SeenGrants, TunnelKeys, TunnelRefused, issue

ERROR_HEADER = "X-Akacdn-Tunnel-Error"  # an edge's own verdict on a tunnel request: the path failed
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
__all__ = ["ERROR_HEADER", "HEADER_NAME", "Attempt", "TunnelRefused", "Upstreams"]


class Attempt(NamedTuple):
    """One way to send a request: to `base` (the origin, or another edge with `grant`)."""

    base: str  # scheme://host[:port]
    label: str  # "direct", "via r2 (r2-e1)", "parent r3-e2": logs, Cache-Status
    grant: str | None = None  # the X-Akacdn-Tunnel value, for another edge
    host: str | None = None  # the Host an edge is asked for (the customer's name there)
    parent: str | None = None  # a parent's machine id (its health)
    path: Path | None = None  # a SureRoute path (its customer's routes)


def race_settings(net: Network) -> RaceSettings:
    s = net.sureroute
    return RaceSettings(
        interval=s.interval,
        after_failure=s.after_failure,
        width=s.width,
        margin=s.margin,
        margin_abs=s.margin_abs,
        retry_failed=s.retry_failed,
        race_timeout=s.race_timeout,
    )


def parent_settings(net: Network) -> tier.ParentSettings:
    p = net.parents
    return tier.ParentSettings(p.fail_threshold, p.retry_after, p.balance_factor, p.max_parents, p.balance_min)


# the race's fetch: (attempt, customer, target, timeout) -> seconds it took; raises on failure
RaceFetch = Callable[[Attempt, Customer, str, float], Awaitable[float]]


class Upstreams:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.me = rt.machine
        self.seen = SeenGrants()
        self.regions: tuple[RegionServers, ...] = ()
        self.routes: dict[str, Routes] = {}  # per customer (by name) with SureRoute
        self.wake = asyncio.Event()
        self.on_origin: Callable[[Customer], None] = lambda _: None  # an origin request was made
        self.attempts_total = rt.counter(
            "akacdn_edge_upstream_attempts", "Requests sent upstream, per kind and outcome", ("kind", "outcome")
        )
        self.tunnels_refused = rt.counter(
            "akacdn_edge_tunnel_refused", "Tunnel requests from other edges refused, per reason", ("reason",)
        )
        self.races = rt.counter("akacdn_edge_sureroute_races", "SureRoute races run, per outcome", ("outcome",))
        self.route_changes = rt.counter("akacdn_edge_sureroute_changes", "SureRoute primary path changes")
        self.configure(rt.net)
        rt.on_reload(self.configure)

    def configure(self, net: Network) -> None:
        self.net = net
        self.keys = TunnelKeys(net.message_keys, net.message_key_id)
        self.race_settings = race_settings(net)
        ps = parent_settings(net)
        if getattr(self, "health", None) is None or self.health.settings != ps:
            self.health = tier.ParentHealth(ps)
        self.region_order = next((r.fallback for r in net.regions if r.id == self.me.region), [])
        wanted = {c.name: c for c in net.customers if c.sureroute}
        for name in [n for n in self.routes if n not in wanted]:
            del self.routes[name]
        now = time.monotonic()
        for name in wanted:
            r = self.routes.get(name)
            if r is None or r.settings != self.race_settings:
                self.routes[name] = Routes(self._candidates(), self.race_settings)
            else:
                self._note(name, r.set_candidates(now, self._candidates()))
        self.wake.set()

    def use_map(self, low: LowMap) -> None:
        """The low-level map: the live edges of every region (parents, intermediates)."""
        self.regions = low.regions
        self.health.retain({s.machine for r in low.regions for s in r.servers})
        now = time.monotonic()
        for name, r in self.routes.items():
            self._note(name, r.set_candidates(now, self._candidates()))
        self.wake.set()

    def _candidates(self) -> list[Path]:
        """Direct, then the regions that may carry a detour: the own region's fallback list
        first, then the map's order; never the own region, only regions with live edges."""
        live = [r.region for r in self.regions if r.servers and r.region != self.me.region]
        ranked = [r for r in self.region_order if r in live] + [r for r in live if r not in self.region_order]
        return [DIRECT] + [Path(r) for r in ranked]

    def _edge_in(self, region: str, customer: Customer) -> Server | None:
        servers = next((r.servers for r in self.regions if r.region == region), ())
        servers = tuple(s for s in servers if s.machine != self.me.id)
        if not servers:
            return None
        return max(servers, key=lambda s: (score(customer.origin, s.machine, s.capacity), s.machine))

    # -- the ways a request goes ----------------------------------------------------------
    def attempts(self, customer: Customer, method: str, target: str, cache_key: str, from_child: bool) -> list[Attempt]:
        """The upstream attempts for one request, in order."""
        now = time.monotonic()
        out: list[Attempt] = []
        names = customer.parent_regions if customer.parent_regions is not None else self.net.parents.regions
        if names and method in ("GET", "HEAD") and not from_child:
            candidates = tier.parent_candidates(
                cache_key, self.regions, names, self.me.region, self.me.id, self.health.settings.max_parents
            )
            for s in tier.choose(candidates, self.health, now):
                out.append(self._tunnel(customer, method, target, s, "parent", f"parent {s.machine}", parent=s.machine))
        r = self.routes.get(customer.name)
        if r is None:
            out.append(Attempt(customer.origin.rstrip("/"), "direct"))
            return out
        for p in r.order(now) if method in IDEMPOTENT else [r.primary]:
            if p.via is None:
                out.append(Attempt(customer.origin.rstrip("/"), "direct", path=p))
                continue
            s = self._edge_in(p.via, customer)
            if s is not None:
                out.append(self._tunnel(customer, method, target, s, "sureroute", f"{p.label} ({s.machine})", path=p))
        return out

    def _tunnel(
        self,
        customer: Customer,
        method: str,
        target: str,
        s: Server,
        purpose: Purpose,
        label: str,
        parent: str | None = None,
        path: Path | None = None,
    ) -> Attempt:
        g = issue(
            customer=customer.name,
            method=method,
            target=target,
            sender=self.me.id,
            hops=0,
            purpose=purpose,
            now=time.time(),
            nonce=os.urandom(16),
        )
        host = customer.hostnames[0] if customer.hostnames else None
        host = host or serial_hostname(customer.serial, self.net.map_subzones[0], self.net.base_domain)
        address = f"[{s.address}]" if ":" in s.address else s.address
        base = f"http://{address}:{self.net.ports.http}"
        return Attempt(base, label, self.keys.seal(g), host, parent, path)

    def started(self, a: Attempt) -> None:
        if a.parent is not None:
            self.health.started(a.parent)

    def abandoned(self, a: Attempt) -> None:
        """An attempt given up without a verdict (cancelled): no longer in flight."""
        if a.parent is not None:
            self.health.finished(a.parent)

    def outcome(self, customer: Customer, a: Attempt, ok: bool, seconds: float) -> None:
        """How an attempt went (ok: an answer came; not ok: no answer, or an edge's verdict
        that the path failed): parents' health, SureRoute failover."""
        now = time.monotonic()
        kind = "parent" if a.parent is not None else ("tunnel" if a.grant else "direct")
        self.attempts_total.labels(kind, "ok" if ok else "failed").inc()
        if a.parent is not None:
            self.health.finished(a.parent)
            before = self.health.state(a.parent, now)
            (self.health.succeeded if ok else self.health.failed)(a.parent, now)
            after = self.health.state(a.parent, now)
            if before != after and "down" in (before, after):
                self.rt.record("parent_" + ("down" if after == "down" else "up"), parent=a.parent)
            return
        if ok:  # an answer came from the origin, directly or through a SureRoute tunnel
            self.on_origin(customer)
        r = self.routes.get(customer.name)
        if r is None or a.path is None:
            return
        if ok:
            r.succeeded(now, a.path, seconds)
            return
        d = r.failed(now, a.path)
        if d is not None:
            self._note(customer.name, d, failover=True)
            self.wake.set()

    def _note(self, name: str, d: Decision | None, failover: bool = False) -> None:
        if d is None or not d.changed:
            return
        self.route_changes.inc()
        event = "sureroute_failover" if failover else "sureroute_route"
        self.rt.record(event, customer=name, primary=d.primary.label, previous=d.previous.label, reason=d.reason)

    def verify(self, value: str, customer: Customer, method: str, target: str) -> Grant:
        """A tunnel request's grant, if it allows this request; TunnelRefused (counted) if not."""
        try:
            return self.keys.open(
                value, time.time(), customer=customer.name, method=method, target=target, purpose=None, seen=self.seen
            )
        except TunnelRefused as e:
            self.tunnels_refused.labels(e.reason).inc()
            self.rt.log.limited("tunnel_refused", reason=e.reason, customer=customer.name)
            raise

    def status(self) -> dict[str, object]:
        now = time.monotonic()
        return {
            "routes": {name: r.status(now) for name, r in self.routes.items()},
            "parents": self.health.status(now),
        }

    # -- races ----------------------------------------------------------------------------
    async def run(self, fetch: RaceFetch) -> None:
        """Race the test objects when due, forever (the edge's task owns it)."""
        while True:
            now = time.monotonic()
            for name, r in list(self.routes.items()):
                if r.race_due(now):
                    customer = next((c for c in self.net.customers if c.name == name), None)
                    if customer is not None:
                        await self._race(customer, r, fetch)
            now = time.monotonic()
            deadlines = [r.next_deadline() for r in self.routes.values()]
            wait = min(deadlines, default=now + 60.0) - now
            self.wake.clear()
            if wait > 0:
                try:
                    await asyncio.wait_for(self.wake.wait(), min(wait, 60.0))
                except TimeoutError:
                    pass

    async def _race(self, customer: Customer, r: Routes, fetch: RaceFetch) -> None:
        now = time.monotonic()
        paths = r.start_race(now)
        target = customer.sureroute_test_object
        timeout = self.race_settings.race_timeout
        tries: dict[Path, Attempt] = {}
        for p in paths:
            if p.via is None:
                tries[p] = Attempt(customer.origin.rstrip("/"), "direct", path=p)
            else:
                s = self._edge_in(p.via, customer)
                if s is not None:
                    tries[p] = self._tunnel(customer, "GET", target, s, "sureroute", p.label, path=p)
        runs = (fetch(a, customer, target, timeout) for a in tries.values())
        got = await asyncio.gather(*runs, return_exceptions=True)
        results: dict[Path, float | None] = {p: None for p in paths}
        for p, t in zip(tries, got, strict=True):
            results[p] = t if isinstance(t, float) else None
        d = r.raced(time.monotonic(), results)
        self.races.labels("all_failed" if all(v is None for v in results.values()) else "ok").inc()
        shown = {p.label: (None if t is None else round(t * 1000, 1)) for p, t in results.items()}
        self.rt.record("sureroute_race", customer=customer.name, ms=shown, primary=d.primary.label, reason=d.reason)
        self._note(customer.name, d)
