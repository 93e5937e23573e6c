"""LLNS answers (pure): the map subzones `<s>.<base>` (default `g`).

`aNNN.<s>.<base> A` (AAAA when the edges have IPv6) answers the two servers that carry
serial NNN in the region the low-level map chose for the client, TTL 20 s by default.
The LLNS decides nothing global: it looks the choice up.

* The map's routes: the ranked regions of the client network the client is in (the
  longest prefix covering the ECS subnet when sent, else the resolver); the first of
  them that is serving, or, while a move ramps, a pick by the routes' weights from a
  hash of the client's /24 (/56), so each client keeps its region through the ramp.
* No route covers the client: the map's default order for this LLNS's region.
* Nothing of those serving: any serving region (by id); as a last resort any region
  with a live edge.

A serial the low-level map quarantines is answered only with its few allowed edges (in
the first region of that order that has one live; SERVFAIL when none is).

Serials not configured are NXDOMAIN. Each subzone apex has SOA and NS (n0<s>..n7<s>,
whose addresses the TLNS serves). `whoami.<s>.<base>` answers the asking address.
Answers are cached per (region, serial) until the next map arrives.
"""

from __future__ import annotations

import socket

from dnslib import NS, QTYPE, RCODE, RR, DNSQuestion

from .. import serials
from ..config import Network
from ..mapping.assign import servers_for_serial
from ..mapping.maps import LowMap, Route, Server
from ..mapping.routing import PrefixTable
from .packed import Packed, owned_by_question
from .toplevel import ns_names, whoami
from .wire import Answer, Client, refused
from .zone import Soa, below, nodata, nxdomain, origin_labels, scope_for, servfail


class LowLevelZone:
    def __init__(self, net: Network, region: str) -> None:
        self.region = region
        self.low: LowMap | None = None
        self.routes: PrefixTable[Route] = PrefixTable(())
        self._servers: dict[tuple[str, int], list[Server]] = {}
        self._chosen: dict[int, str | None] = {}  # id(route) -> its region (unweighted routes)
        self._serving: set[str] = set()
        self._default: list[str] = []  # regions for clients no route covers, best first
        self._pools: dict[str, tuple[Server, ...]] = {}  # region -> its live edges
        # (type, id of a list in _servers) -> packed answer; cleared with _servers
        self._packed: dict[tuple[int, int], Packed] = {}
        self.quarantined: dict[int, frozenset[str]] = {}  # serial -> the only edges that may serve it
        self.configure(net)

    def configure(self, net: Network) -> None:
        """Take a (re)loaded config; the map in use stays."""
        self.net = net
        self.zones = {sub: origin_labels(f"{sub}.{net.base_domain}") for sub in net.map_subzones}
        self.ns = {sub: ns_names(sub, net.base_domain) for sub in net.map_subzones}
        self.serials = {c.serial for c in net.customers}
        self._set_soa()
        self._servers.clear()
        self._packed.clear()

    def _set_soa(self) -> None:
        serial = self.low.version[1] if self.low else 1
        self.soas = {
            sub: Soa(f"{sub}.{self.net.base_domain}", self.ns[sub][0], self.net.ttl.negative, serial)
            for sub in self.zones
        }

    def use_map(self, low: LowMap) -> None:
        self.low = low
        self.quarantined = {q.serial: frozenset(q.servers) for q in low.quarantines}
        routes = low.routes or tuple(Route(c.prefix, (c.region,)) for c in low.clients)  # (an older center's map)
        self.routes = PrefixTable((r.prefix, r) for r in routes)
        self._serving = {r.region for r in low.regions if r.serving}
        self._pools = {r.region: r.servers for r in low.regions}  # (a map has up to ~1,100 regions: no scans)
        own = low.defaults.get(self.region, (self.region,))
        seq = [r for r in dict.fromkeys([*own, *sorted(self._serving)]) if r in self._serving]
        self._default = seq or [r.region for r in low.regions if r.servers]  # nothing serving: any live edge
        self._set_soa()
        self._servers.clear()
        self._chosen.clear()
        self._packed.clear()

    def region_for(self, client: Client) -> tuple[str | None, bool]:
        """The region that answers this client, and whether the choice depends on the client."""
        if self.routes.empty:
            return (self._default[0] if self._default else None), False
        route, _ = self.routes.lookup(client.address())
        if route is None:
            return (self._default[0] if self._default else None), True
        if route.weights:
            return self._weighted(route, client), True
        key = id(route)
        try:
            return self._chosen[key], True
        except KeyError:
            got = next((r for r in route.regions if r in self._serving), None)
            if got is None and self._default:
                got = self._default[0]
            self._chosen[key] = got
            return got, True

    def _weighted(self, route: Route, client: Client) -> str | None:
        """A ramping route: a pick by weight among its serving regions, stable per /24 (/56)."""
        pairs = [(r, w) for r, w in zip(route.regions, route.weights, strict=False) if w > 0 and r in self._serving]
        if not pairs:
            return next((r for r in route.regions if r in self._serving), self._default[0] if self._default else None)
        addr = client.address()
        bucket = int(addr) >> (8 if addr.version == 4 else 72)
        u = ((bucket * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) / 2**64 * sum(w for _, w in pairs)
        for r, w in pairs:
            u -= w
            if u < 0:
                return r
        return pairs[-1][0]

    def servers_for(self, serial: int, client: Client) -> tuple[list[Server], bool]:
        """The servers carrying `serial` for this client, and whether the choice used client routes."""
        assert self.low is not None
        region, routed = self.region_for(client)
        if region is None:
            return [], routed
        got = self._servers.get((region, serial))
        if got is None:
            allowed = self.quarantined.get(serial)
            if allowed is None:
                pool = self._pools[region]
            else:  # quarantined: its few servers, in the first region (this one, the default order, any) with one live
                pools = {r.region: [s for s in r.servers if s.machine in allowed] for r in self.low.regions}
                seq = [region, *self._default, *sorted(pools)]
                pool = next((pools[r] for r in seq if pools.get(r)), [])
            got = servers_for_serial(serial, pool)
            self._servers[(region, serial)] = got
        return got, routed

    def answer(self, q: DNSQuestion, client: Client) -> Answer:
        for sub, origin in self.zones.items():
            rel = below(q.qname, origin)
            if rel is not None:
                return self._in_zone(sub, rel, q, client)
        return refused()

    def _in_zone(self, sub: str, rel: tuple[bytes, ...], q: DNSQuestion, client: Client) -> Answer:
        qt, soa = q.qtype, self.soas[sub]
        if rel == ():
            if qt in (QTYPE.SOA, QTYPE.ANY):  # RFC 8482: one RRset for ANY
                return Answer(RCODE.NOERROR, True, [soa.rr], [], [], "answer")
            if qt == QTYPE.NS:
                ttl, zone = self.net.ttl.referral, f"{sub}.{self.net.base_domain}"
                rrs = [RR(zone, QTYPE.NS, ttl=ttl, rdata=NS(n)) for n in self.ns[sub]]
                return Answer(RCODE.NOERROR, True, rrs, [], [], "answer")
            return nodata(soa)
        label = rel[0] if len(rel) == 1 else b""
        if label == b"whoami":
            return whoami(q, client, soa)
        serial = serials.serial_of_label(label)
        if serial and serial in self.serials:
            return self._serial(serial, q, client, soa)
        return nxdomain(soa)

    def _serial(self, serial: int, q: DNSQuestion, client: Client, soa: Soa) -> Answer:
        if self.low is None:
            return servfail("no_map")
        qt = q.qtype
        if qt not in (QTYPE.A, QTYPE.AAAA, QTYPE.ANY):
            return nodata(soa)
        servers, routed = self.servers_for(serial, client)
        if not servers:
            return servfail("no_servers")
        scope = scope_for(client, 24) if routed else 0
        varies = "bucket" if routed and client.subnet is None else "none"
        rtype = QTYPE.AAAA if qt == QTYPE.AAAA else QTYPE.A  # ANY: the A RRset alone (RFC 8482)
        packed = self._packed.get((rtype, id(servers)))
        if packed is None:
            if rtype == QTYPE.AAAA:
                rdatas = [socket.inet_pton(socket.AF_INET6, s.address6) for s in servers if s.address6]
            else:
                rdatas = [socket.inet_aton(s.address) for s in servers]
            packed = owned_by_question(rtype, self.net.ttl.answer, rdatas) if rdatas else soa.packed
            self._packed[(rtype, id(servers))] = packed
        if packed is soa.packed:
            return Answer(RCODE.NOERROR, True, [], [soa.rr], [], "nodata", scope, varies, packed)
        return Answer(RCODE.NOERROR, True, [], [], [], "answer", scope, varies, packed)
