"""TLNS answers (pure): the base domain, and referrals for the map subzones.

Zone `<base>`: SOA; apex NS `za..zh.<base>` with glue (the TLNS addresses, dealt in
turn); `whoami.<base>` answers the asking address; `n0<s>..n7<s>.<base>` answer the
LLNS addresses chosen for the asking client. Anything at or under a map subzone `<s>`
(default `g`) gets a referral: NS n0<s>..n7<s> with glue for 8 LLNS addresses in up to
3 regions, chosen from the top-level map for the client's /24 (/56): the region its
client route names first, then regions ranked per client.
"""

from __future__ import annotations

import ipaddress
import socket

from dnslib import AAAA, NS, QTYPE, RCODE, RR, A, DNSQuestion

from ..config import Network
from ..mapping.assign import client_bucket, nameservers_for_client
from ..mapping.maps import TopMap
from ..mapping.routing import ClientRoutes
from .packed import Packed, owned_by_question, pack_records
from .wire import Answer, Client, refused
from .zone import NS_LETTERS, Soa, below, nodata, nxdomain, origin_labels, scope_for, servfail

MAP_SUBZONE = "g"


def ns_names(sub: str, base: str) -> list[str]:
    return [f"n{i}{sub}.{base}" for i in range(8)]


class TopLevelZone:
    def __init__(self, net: Network) -> None:
        self.top: TopMap | None = None
        self.routes = ClientRoutes(())
        self._referrals: dict[str, list[str]] = {}  # client bucket -> 8 LLNS addresses
        self._packed_referrals: dict[tuple[str, tuple[str, ...]], Packed] = {}
        self.configure(net)

    def configure(self, net: Network) -> None:
        """Take a (re)loaded config; the map in use stays."""
        self.net = net
        self.base = net.base_domain
        self.origin = origin_labels(self.base)
        self.subzones = {s.encode(): s for s in net.map_subzones}
        # n0g..n7g (per subzone) -> slot
        self.ns_labels = {f"n{i}{s}".encode(): i for s in net.map_subzones for i in range(8)}
        tlns = [m.address for m in net.by_role("tlns")]
        self.apex_ns = [(f"z{c}.{self.base}", tlns[i % len(tlns)]) for i, c in enumerate(NS_LETTERS)]
        self.soa = Soa(self.base, self.apex_ns[0][0], net.ttl.negative, 1)
        # shared fate (paper 2.2, 3.1): a referral's LLNSes span regions of >= 2 networks (ISPs)
        self.networks = {r.id: r.network for r in net.regions}
        self._referrals.clear()
        self._packed_referrals.clear()

    def use_map(self, top: TopMap) -> None:
        self.top = top
        self.routes = ClientRoutes(top.clients)
        self._referrals.clear()
        self._packed_referrals.clear()

    def llns_for(self, client: Client) -> list[str] | None:
        """The 8 LLNS addresses for a client (by its /24 or /56); None before any map."""
        if self.top is None:
            return None
        addr = client.address()
        bucket = client_bucket(str(addr))
        got = self._referrals.get(bucket)
        if got is None:
            preferred, _ = self.routes.region_for(addr)
            chosen = nameservers_for_client(bucket, self.top.nameservers, preferred=preferred, networks=self.networks)
            got = [ns.address for ns in chosen]
            if len(self._referrals) > 65536:
                self._referrals.clear()
            self._referrals[bucket] = got
        return got

    def answer(self, q: DNSQuestion, client: Client) -> Answer:
        rel = below(q.qname, self.origin)
        if rel is None:
            return refused()
        qt = q.qtype
        if rel and rel[-1] in self.subzones:
            if len(rel) == 1 and qt == QTYPE.DS:
                return nodata(self.soa)  # DS lives in the parent side of the cut
            return self._referral(self.subzones[rel[-1]], client)
        if rel == ():
            return self._apex(qt)
        if len(rel) == 1:
            label = rel[0]
            if label == b"whoami":
                return self._whoami(q, client)
            if len(label) == 2 and label[:1] == b"z" and label[1:] in (b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h"):
                addr = self.apex_ns[NS_LETTERS.index(label[1:].decode())][1]
                return self._address(q, addr, self.net.ttl.referral, 0, "none")
            slot = self.ns_labels.get(label)
            if slot is not None:
                addrs = self.llns_for(client)
                if not addrs:
                    return servfail("no_map")
                scope = scope_for(client, 24)
                varies = "none" if client.subnet else "bucket"
                return self._address(q, addrs[slot % len(addrs)], self.net.ttl.referral, scope, varies)
        return nxdomain(self.soa)

    def _referral(self, sub: str, client: Client) -> Answer:
        addrs = self.llns_for(client)
        if not addrs:
            return servfail("no_map")
        key = (sub, tuple(addrs))
        packed = self._packed_referrals.get(key)
        if packed is None:
            ttl = self.net.ttl.referral
            zone = f"{sub}.{self.base}"
            names = ns_names(sub, self.base)
            ns = [RR(zone, QTYPE.NS, ttl=ttl, rdata=NS(n)) for n in names]
            glue = [RR(n, QTYPE.A, ttl=ttl, rdata=A(a)) for n, a in zip(names, addrs, strict=False)]
            packed = pack_records([], ns, glue)
            if len(self._packed_referrals) > 4096:
                self._packed_referrals.clear()
            self._packed_referrals[key] = packed
        varies = "none" if client.subnet else "bucket"
        return Answer(RCODE.NOERROR, False, [], [], [], "referral", scope_for(client, 24), varies, packed)

    def _apex(self, qt: int) -> Answer:
        ttl = self.net.ttl.referral
        if qt in (QTYPE.SOA, QTYPE.ANY):  # RFC 8482: one RRset for ANY
            return Answer(RCODE.NOERROR, True, [self.soa.rr], [], [], "answer")
        if qt == QTYPE.NS:
            ns = [RR(self.base, QTYPE.NS, ttl=ttl, rdata=NS(n)) for n, _ in self.apex_ns]
            glue = [RR(n, QTYPE.A, ttl=ttl, rdata=A(a)) for n, a in self.apex_ns]
            return Answer(RCODE.NOERROR, True, ns, [], glue, "answer")
        return nodata(self.soa)

    def _address(self, q: DNSQuestion, addr: str, ttl: int, scope: int, varies: str) -> Answer:
        if q.qtype in (QTYPE.A, QTYPE.ANY):
            packed = owned_by_question(QTYPE.A, ttl, [socket.inet_aton(addr)])
            return Answer(RCODE.NOERROR, True, [], [], [], "answer", scope, varies, packed)
        return nodata(self.soa)

    def _whoami(self, q: DNSQuestion, client: Client) -> Answer:
        return whoami(q, client, self.soa)


def whoami(q: DNSQuestion, client: Client, soa: Soa) -> Answer:
    """Answer the address the query came from (like whoami.akamai.net)."""
    v6 = ipaddress.ip_address(client.source).version == 6
    if q.qtype in ((QTYPE.AAAA if v6 else QTYPE.A), QTYPE.ANY):
        rdata = AAAA(client.source) if v6 else A(client.source)
        rr = RR(q.qname, QTYPE.AAAA if v6 else QTYPE.A, ttl=0, rdata=rdata)
        return Answer(RCODE.NOERROR, True, [rr], [], [], "whoami", 0, "source")
    return Answer(RCODE.NOERROR, True, [], [soa.rr], [], "nodata", 0, "source")
