"""Map building (pure): monitoring data in, maps out.

Theory of operation. Every edge and LLNS heartbeats (`Heartbeat`) through the relays.
`Liveness` remembers when each configured machine was last heard and whether it said
it was healthy; a machine is live while it was heard healthy within `dead_after`.
`build(...)` turns the live set into one TopMap (live LLNSes of the serving regions) and
one LowMap (the live edges of every region; a region with fewer than two live edges is
marked not serving, the LLNSes send its clients to the next region of their route, and
the TLNSes stop referring to its LLNSes). Machines an operator suspended, or that flap
damping holds out, are left out whatever their health. The low map carries the routes
(ranked, weighted regions per client network: `steering`) and each region's default
order; the top map the client networks' best regions (for the referrals).
`MapBook` versions the result: a map keeps its version while its content is unchanged
and takes the next sequence of the current term when it changes.

Safety: an empty map is never produced. If nothing is live (the center is cut off, or
just started), `build` returns None for that map and the consumers keep the last one.
"""

from __future__ import annotations

from collections.abc import Collection

import msgspec

from ..config import Network
from .maps import AnyMap, ClientRoute, LowMap, NameServer, Quarantine, RegionServers, Route, Server, TopMap, Version
from .messages import Heartbeat, RegionReport


class Liveness:
    """Last-heard bookkeeping for the configured machines (time passed in)."""

    def __init__(self, net: Network) -> None:
        self._heard: dict[str, tuple[float, Heartbeat]] = {}
        self._down: dict[str, float] = {}  # reported dead by a region peer's agent, when
        self._said_dead: dict[str, set[str]] = {}  # each agent's last "dead" list
        self.configure(net)

    def configure(self, net: Network) -> None:
        """Take a (re)loaded config: machines no longer configured are forgotten."""
        self._known = {m.id: m for m in net.machines}
        self._heard = {k: v for k, v in self._heard.items() if k in self._known}

    def next_expiry(self, live: Collection[str], dead_after: float) -> float | None:
        """When the first of the `live` machines (the live set of the last build) turns
        dead if not heard again: the center rebuilds then, not a map interval later (a
        time already past means: rebuild now)."""
        times = [self._heard[m][0] + dead_after for m in live if m in self._heard]
        return min(times) if times else None

    def heard_within(self, now: float, window: float) -> dict[str, Heartbeat]:
        """Every machine heard within `window`, healthy or not (connectivity, status)."""
        return {mid: hb for mid, (t, hb) in self._heard.items() if now - t <= window}

    def last_heard(self, machine: str) -> float | None:
        got = self._heard.get(machine)
        return got[0] if got is not None else None

    def heard(self, sender: str, hb: Heartbeat, now: float) -> str | None:
        """Record a heartbeat; returns a refusal reason for one that does not match the config."""
        m = self._known.get(hb.machine)
        if m is None or hb.machine != sender:
            return "unknown_machine"
        if m.role != hb.role or m.region != hb.region:
            return "role_mismatch"
        self._heard[hb.machine] = (now, hb)
        return None

    def reported(self, reporter: str, report: RegionReport, now: float) -> list[str]:
        """A region agent says peers are dead: they leave the live set now, not after
        `dead_after` (their buddy already answers on their addresses), until a heartbeat
        newer than the report. Only a machine's own agent, about its own region and role,
        is believed, and only for a peer it had not listed dead in its last report.
        Returns the machines newly marked down."""
        me = self._known.get(report.machine)
        if me is None or reporter != f"{report.machine}/agent" or report.machine in self._down:
            return []
        newly = []
        # only a death the agent reports anew counts: an agent keeps listing a peer dead
        # for a while after it restarted (until it proves itself to the agent), and the
        # restarted daemon's heartbeats must not be withdrawn at each of those reports
        before = self._said_dead.get(reporter, set())
        self._said_dead[reporter] = set(report.dead)
        for mid in report.dead:
            if mid in before:
                continue
            peer = self._known.get(mid)
            if peer is None or peer.region != me.region or peer.role != me.role or mid == me.id:
                continue
            heard = self._heard.get(mid)
            if heard is not None and heard[0] < now and self._down.get(mid, -1.0) < heard[0]:
                self._down[mid] = now
                newly.append(mid)
        return newly

    def live(self, now: float, dead_after: float) -> dict[str, Heartbeat]:
        return {
            mid: hb
            for mid, (t, hb) in self._heard.items()
            if now - t <= dead_after and hb.healthy and self._down.get(mid, -1.0) < t
        }


def build(
    net: Network,
    live: dict[str, Heartbeat],
    made_at: float,
    out: Collection[str] = (),
    quarantines: tuple[Quarantine, ...] = (),
    routes: tuple[Route, ...] | None = None,
    defaults: dict[str, tuple[str, ...]] | None = None,
) -> tuple[TopMap | None, list[LowMap]]:
    """Maps for the current live set, unversioned (version (0, 0)). `out`: machines held
    out of the maps whatever their health (suspended by an operator, damped);
    `quarantines`: serials constrained to a few servers (carried in the low-level map);
    `routes`, `defaults`: the steering's (None: the static routes of the config, and each
    region's configured fallback order)."""
    if routes is None:
        routes = static_routes(net)
    if defaults is None:
        defaults = {r.id: (r.id, *r.fallback) for r in net.regions}
    clients = tuple(ClientRoute(r.prefix, r.regions[0]) for r in routes if r.regions)
    edges: dict[str, list[Server]] = {r.id: [] for r in net.regions}
    for m in net.by_role("edge"):
        if m.id in live and m.id not in out:
            edges[m.region].append(Server(m.id, m.region, m.address, m.capacity, m.address6))
    serving = {r for r, servers in edges.items() if len(servers) >= 2}
    # the paper's 4.2: a region that cannot serve is no longer a choice in the referrals
    # (unless no serving region has a live LLNS: then every live LLNS, which answer
    # from the fallback regions)
    live_llns = [NameServer(m.id, m.region, m.address) for m in net.by_role("llns") if m.id in live and m.id not in out]
    nameservers = tuple(ns for ns in live_llns if ns.region in serving) or tuple(live_llns)
    top = TopMap((0, 0), made_at, nameservers, clients) if nameservers else None
    if not any(edges.values()):
        return top, []
    regions = tuple(RegionServers(r, tuple(edges[r]), r in serving) for r in sorted(edges))
    return top, [LowMap((0, 0), made_at, regions, (), quarantines, routes, defaults)]


def static_routes(net: Network) -> tuple[Route, ...]:
    """The operator's routes: each client network with a static region, then its fallbacks."""
    fallback = {r.id: r.fallback for r in net.regions}
    return tuple(
        Route(c.prefix, tuple(dict.fromkeys([c.region, *fallback[c.region]])))
        for c in sorted(net.client_networks, key=lambda c: c.prefix)
        if c.region
    )


class MapBook:
    """The current maps of one leader term, versioned by content."""

    def __init__(self, term: int) -> None:
        self.term = term
        self.seq = 0
        self.maps: dict[str, AnyMap] = {}

    def update(self, fresh: list[AnyMap]) -> list[AnyMap]:
        """Take freshly built maps; returns those whose content changed (newly versioned)."""
        changed = []
        for m in fresh:
            old = self.maps.get(m.key)
            if old is not None and msgspec.structs.replace(m, version=old.version, made_at=old.made_at) == old:
                continue
            self.seq += 1
            version: Version = (self.term, self.seq)
            new = msgspec.structs.replace(m, version=version)
            self.maps[m.key] = new
            changed.append(new)
        return changed
