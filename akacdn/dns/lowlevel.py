"""LLNS answers (pure): the map subzone `g.<base>`.

`aNNN.g.<base> A` answers the two servers that carry serial NNN in this LLNS's low-level
map (its own region's live edges, or a spill region's when its own is down), TTL 20 s.
Serials not configured are NXDOMAIN. The apex has SOA and NS (n0g..n7g, served with
glue by the TLNS). Answers are cached per serial until the next map arrives.
"""

from __future__ import annotations

from dnslib import NS, QTYPE, RCODE, RR, A, DNSQuestion

from ..config import Network
from ..mapping.assign import servers_for_serial
from ..mapping.maps import LowMap
from .toplevel import MAP_SUBZONE
from .wire import Answer, refused
from .zone import below, nodata, nxdomain, origin_labels, servfail, soa_rr


class LowLevelZone:
    def __init__(self, net: Network) -> None:
        self.low: LowMap | None = None
        self._servers: dict[int, list[str]] = {}
        self.configure(net)

    def configure(self, net: Network) -> None:
        """Take a (re)loaded config; the map in use stays."""
        self.net = net
        self.zone = f"{MAP_SUBZONE}.{net.base_domain}"
        self.origin = origin_labels(self.zone)
        self.ns_names = [f"n{i}{MAP_SUBZONE}.{net.base_domain}" for i in range(8)]
        self.serials = {c.serial for c in net.customers}
        self._set_soa()

    def _set_soa(self) -> None:
        serial = self.low.version[1] if self.low else 1
        self.soa = soa_rr(self.zone, self.ns_names[0], self.net.ttl.negative, serial)

    def use_map(self, low: LowMap) -> None:
        self.low = low
        self._set_soa()
        self._servers.clear()

    def servers_for(self, serial: int) -> list[str] | None:
        """Addresses of the servers that carry a serial (None before any map)."""
        if self.low is None:
            return None
        got = self._servers.get(serial)
        if got is None:
            got = [s.address for s in servers_for_serial(serial, self.low.servers)]
            self._servers[serial] = got
        return got

    def answer(self, q: DNSQuestion, client: str) -> Answer:
        rel = below(q.qname, self.origin)
        if rel is None:
            return refused()
        qt = q.qtype
        if rel == ():
            if qt == QTYPE.SOA:
                return Answer(RCODE.NOERROR, True, [self.soa], [], [], "answer")
            if qt == QTYPE.NS:
                ttl = self.net.ttl.referral
                rrs = [RR(self.zone, QTYPE.NS, ttl=ttl, rdata=NS(n)) for n in self.ns_names]
                return Answer(RCODE.NOERROR, True, rrs, [], [], "answer")
            return nodata(self.soa)
        label = rel[0] if len(rel) == 1 else b""
        if label[:1] == b"a" and label[1:].isdigit() and label[1:2] != b"0" and len(label) <= 7:
            serial = int(label[1:])
            if serial in self.serials:
                if qt not in (QTYPE.A, QTYPE.ANY):
                    return nodata(self.soa)
                addrs = self.servers_for(serial)
                if not addrs:
                    return servfail("no_map")
                ttl = self.net.ttl.answer
                rrs = [RR(q.qname, QTYPE.A, ttl=ttl, rdata=A(a)) for a in addrs]
                return Answer(RCODE.NOERROR, True, rrs, [], [], "answer")
        return nxdomain(self.soa)
