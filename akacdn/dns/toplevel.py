"""TLNS answers (pure): the base domain, and referrals for the map subzone.

Zone `<base>`: SOA; apex NS `za..zh.<base>` with glue (the TLNS addresses, dealt in
turn); `whoami.<base>` answers the asking address; `n0g..n7g.<base>` answer the LLNS
addresses chosen for the asking resolver. Anything at or under `g.<base>` (the map
subzone) gets a referral: NS n0g..n7g with glue for 8 LLNS addresses in up to 3
regions, chosen from the top-level map for the resolver's /24.
"""

from __future__ import annotations

import ipaddress

from dnslib import AAAA, NS, QTYPE, RCODE, RR, A, DNSQuestion

from ..config import Network
from ..mapping.assign import client_bucket, nameservers_for_client
from ..mapping.maps import TopMap
from .wire import Answer, refused
from .zone import NS_LETTERS, below, nodata, nxdomain, origin_labels, servfail, soa_rr

MAP_SUBZONE = "g"


class TopLevelZone:
    def __init__(self, net: Network) -> None:
        self.top: TopMap | None = None
        self._referrals: dict[str, list[str]] = {}  # client bucket -> 8 LLNS addresses
        self.configure(net)

    def configure(self, net: Network) -> None:
        """Take a (re)loaded config; the map in use stays."""
        self.net = net
        self.base = net.base_domain
        self.origin = origin_labels(self.base)
        self.sub = f"{MAP_SUBZONE}.{self.base}"
        tlns = [m.address for m in net.by_role("tlns")]
        self.apex_ns = [(f"z{c}.{self.base}", tlns[i % len(tlns)]) for i, c in enumerate(NS_LETTERS)]
        self.soa = soa_rr(self.base, self.apex_ns[0][0], net.ttl.negative, 1)
        self._referrals.clear()

    def use_map(self, top: TopMap) -> None:
        self.top = top
        self._referrals.clear()

    def llns_for(self, client: str) -> list[str] | None:
        if self.top is None:
            return None
        bucket = client_bucket(client)
        got = self._referrals.get(bucket)
        if got is None:
            got = [ns.address for ns in nameservers_for_client(bucket, self.top.nameservers)]
            if len(self._referrals) > 65536:
                self._referrals.clear()
            self._referrals[bucket] = got
        return got

    def _ns_glue(self, client: str) -> tuple[list[RR], list[RR]] | None:
        addrs = self.llns_for(client)
        if not addrs:
            return None
        ttl = self.net.ttl.referral
        names = [f"n{i}{MAP_SUBZONE}.{self.base}" for i in range(len(addrs))]
        ns = [RR(self.sub, QTYPE.NS, ttl=ttl, rdata=NS(n)) for n in names]
        glue = [RR(n, QTYPE.A, ttl=ttl, rdata=A(a)) for n, a in zip(names, addrs, strict=False)]
        return ns, glue

    def answer(self, q: DNSQuestion, client: str) -> Answer:
        rel = below(q.qname, self.origin)
        if rel is None:
            return refused()
        qt = q.qtype
        if rel and rel[-1] == MAP_SUBZONE.encode():
            if rel == (MAP_SUBZONE.encode(),) and qt == QTYPE.DS:
                return nodata(self.soa)  # DS lives in the parent side of the cut
            ref = self._ns_glue(client)
            if ref is None:
                return servfail("no_map")
            return Answer(RCODE.NOERROR, False, [], ref[0], ref[1], "referral")
        if rel == ():
            return self._apex(qt)
        if len(rel) == 1:
            label = rel[0].decode("ascii", "replace")
            if label == "whoami":
                return self._whoami(q, client)
            if len(label) == 2 and label[0] == "z" and label[1] in NS_LETTERS:
                addr = self.apex_ns[NS_LETTERS.index(label[1])][1]
                return self._address(q, addr, self.net.ttl.referral)
            if len(label) == 3 and label[0] == "n" and label[1].isdigit() and label[2:] == MAP_SUBZONE:
                addrs = self.llns_for(client)
                if addrs is None:
                    return servfail("no_map")
                i = int(label[1])
                if i < len(addrs):
                    return self._address(q, addrs[i], self.net.ttl.referral)
        return nxdomain(self.soa)

    def _apex(self, qt: int) -> Answer:
        ttl = self.net.ttl.referral
        if qt == QTYPE.SOA:
            return Answer(RCODE.NOERROR, True, [self.soa], [], [], "answer")
        if qt == QTYPE.NS:
            ns = [RR(self.base, QTYPE.NS, ttl=ttl, rdata=NS(n)) for n, _ in self.apex_ns]
            glue = [RR(n, QTYPE.A, ttl=ttl, rdata=A(a)) for n, a in self.apex_ns]
            return Answer(RCODE.NOERROR, True, ns, [], glue, "answer")
        return nodata(self.soa)

    def _address(self, q: DNSQuestion, addr: str, ttl: int) -> Answer:
        if q.qtype in (QTYPE.A, QTYPE.ANY):
            return Answer(RCODE.NOERROR, True, [RR(q.qname, QTYPE.A, ttl=ttl, rdata=A(addr))], [], [], "answer")
        return nodata(self.soa)

    def _whoami(self, q: DNSQuestion, client: str) -> Answer:
        v6 = ipaddress.ip_address(client).version == 6
        if q.qtype == (QTYPE.AAAA if v6 else QTYPE.A):
            rdata = AAAA(client) if v6 else A(client)
            return Answer(RCODE.NOERROR, True, [RR(q.qname, q.qtype, ttl=0, rdata=rdata)], [], [], "whoami")
        return nodata(self.soa)
