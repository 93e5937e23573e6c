"""Small shared pieces of zone logic (pure): names relative to a zone, SOA, negatives."""

from __future__ import annotations

from dnslib import QTYPE, RCODE, RR, SOA, DNSLabel

from .packed import pack_records
from .wire import Answer, Client

NS_LETTERS = "abcdefgh"


def below(qname: DNSLabel, origin: tuple[bytes, ...]) -> tuple[bytes, ...] | None:
    """The labels of qname under origin (lower-cased, () for the apex), None outside it."""
    labels = tuple(x.lower() for x in qname.label)
    n = len(origin)
    if len(labels) < n or labels[len(labels) - n :] != origin:
        return None
    return labels[: len(labels) - n]


def origin_labels(name: str) -> tuple[bytes, ...]:
    return tuple(x.encode() for x in name.lower().rstrip(".").split("."))


def soa_rr(zone: str, mname: str, negative_ttl: int, serial: int) -> RR:
    return RR(
        zone,
        QTYPE.SOA,
        ttl=negative_ttl,
        rdata=SOA(mname, f"hostmaster.{zone}", (serial, 3600, 600, 604800, negative_ttl)),
    )


class Soa:
    """A zone's SOA record, also pre-packed for the negative answers that carry it."""

    def __init__(self, zone: str, mname: str, negative_ttl: int, serial: int) -> None:
        self.rr = soa_rr(zone, mname, negative_ttl, serial)
        self.packed = pack_records([], [self.rr], [])


def nxdomain(soa: Soa) -> Answer:
    return Answer(RCODE.NXDOMAIN, True, [], [soa.rr], [], "nxdomain", packed=soa.packed)


def nodata(soa: Soa) -> Answer:
    return Answer(RCODE.NOERROR, True, [], [soa.rr], [], "nodata", packed=soa.packed)


def servfail(kind: str) -> Answer:
    return Answer(RCODE.SERVFAIL, False, [], [], [], kind)


def scope_for(client: Client, v4_bits: int, v6_bits: int = 56) -> int:
    """ECS scope for an answer chosen per client bucket: no longer than the source prefix."""
    if client.subnet is None:
        return 0
    return min(client.subnet.source, v4_bits if client.subnet.family == 1 else v6_bits)
