"""DNS answers, table-driven: wire.respond around the TLNS and LLNS zones of the devnet.

Every reply is parsed a second time with dnspython, an independent parser, so a reply
that dnslib writes but the world cannot read fails here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from dnslib import DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from akacdn.config import Network
from akacdn.dns.lowlevel import LowLevelZone
from akacdn.dns.toplevel import TopLevelZone
from akacdn.dns.wire import EDNS_BUFFER, VERSION, Reply, respond
from akacdn.mapping.builder import MapBook, build
from akacdn.mapping.maps import LowMap, TopMap
from akacdn.mapping.messages import Heartbeat

BASE = "akacdn.test"
CLIENT = "192.0.2.1"
IDENTITY = "tlns1"


@dataclass
class Zones:
    net: Network
    tlns: TopLevelZone
    llns: LowLevelZone  # the LLNS of region r1

    def zone(self, which: str) -> TopLevelZone | LowLevelZone:
        return self.tlns if which == "tlns" else self.llns


def make_zones(net: Network, down: tuple[str, ...] = (), llns_region: str = "r1") -> Zones:
    live = {m.id: Heartbeat(m.id, m.role, m.region) for m in net.machines if m.id not in down}
    top, lows = build(net, live, made_at=1.0)
    book = MapBook(term=1)
    book.update(([top] if top else []) + list(lows))
    tlns, llns = TopLevelZone(net), LowLevelZone(net, llns_region)
    t = book.maps["top"]
    low = book.maps["low"]
    assert isinstance(t, TopMap) and isinstance(low, LowMap)
    tlns.use_map(t)
    llns.use_map(low)
    return Zones(net, tlns, llns)


@pytest.fixture
def zones(net: Network) -> Zones:
    return make_zones(net)


@pytest.fixture(scope="module")
def fuzz_zones(shared_net: Network) -> Zones:
    return make_zones(shared_net)


def query(
    name: str, rdtype: str = "A", rdclass: str = "IN", *, edns: int = -1, payload: int = 1232, rd: bool = True
) -> bytes:
    q = dns.message.make_query(name, rdtype, rdclass, use_edns=edns, payload=payload)
    if not rd:
        q.flags &= ~dns.flags.RD
    return q.to_wire()


def ask(zone: TopLevelZone | LowLevelZone, wire: bytes, client: str = CLIENT, max_udp: int | None = 512) -> Reply:
    return respond(wire, client, zone.answer, IDENTITY, max_udp)


def parse(data: bytes | bytearray | None) -> dns.message.Message:
    """Parse a reply with dnspython (the second, independent parser)."""
    assert data is not None
    wire = bytes(data)
    if (wire[2] >> 3) & 0xF == dns.opcode.UPDATE:
        # dnspython reads UPDATE messages with RFC 2136 section rules; check the layout as a QUERY
        wire = wire[:2] + bytes([wire[2] & 0x87]) + wire[3:]
    return dns.message.from_wire(wire)


def addresses(rrs: list[dns.rrset.RRset]) -> list[str]:
    return [rd.address for rrset in rrs for rd in rrset]


def count(section: list[dns.rrset.RRset]) -> int:
    return sum(len(rrset) for rrset in section)


# --- the table -------------------------------------------------------------------------------

NOERROR, NXDOMAIN, REFUSED = dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED

CASES: list[tuple[str, str, str, str, int, bool, int, int, int]] = [
    # (server, name, type, class, rcode, aa, #answer, #authority, #additional)
    ("tlns", BASE, "SOA", "IN", NOERROR, True, 1, 0, 0),
    ("tlns", BASE, "NS", "IN", NOERROR, True, 8, 0, 8),
    ("tlns", BASE, "A", "IN", NOERROR, True, 0, 1, 0),  # NODATA with SOA
    ("tlns", BASE.upper(), "NS", "IN", NOERROR, True, 8, 0, 8),
    *[("tlns", f"z{c}.{BASE}", "A", "IN", NOERROR, True, 1, 0, 0) for c in "abcdefgh"],
    ("tlns", f"za.{BASE}", "AAAA", "IN", NOERROR, True, 0, 1, 0),
    ("tlns", f"zi.{BASE}", "A", "IN", NXDOMAIN, True, 0, 1, 0),
    ("tlns", f"whoami.{BASE}", "A", "IN", NOERROR, True, 1, 0, 0),
    ("tlns", f"whoami.{BASE}", "AAAA", "IN", NOERROR, True, 0, 1, 0),  # asked over IPv4
    ("tlns", f"a123.g.{BASE}", "A", "IN", NOERROR, False, 0, 8, 8),  # referral
    ("tlns", f"a999.g.{BASE}", "A", "IN", NOERROR, False, 0, 8, 8),  # the LLNS decides what exists
    ("tlns", f"g.{BASE}", "NS", "IN", NOERROR, False, 0, 8, 8),
    ("tlns", f"g.{BASE}", "A", "IN", NOERROR, False, 0, 8, 8),
    ("tlns", f"_.g.{BASE}", "A", "IN", NOERROR, False, 0, 8, 8),
    ("tlns", f"deep.er.a1.g.{BASE}", "TXT", "IN", NOERROR, False, 0, 8, 8),
    ("tlns", f"g.{BASE}", "DS", "IN", NOERROR, True, 0, 1, 0),  # parent side of the cut: NODATA
    *[("tlns", f"n{i}g.{BASE}", "A", "IN", NOERROR, True, 1, 0, 0) for i in range(8)],
    ("tlns", f"n0g.{BASE}", "AAAA", "IN", NOERROR, True, 0, 1, 0),
    ("tlns", f"n8g.{BASE}", "A", "IN", NXDOMAIN, True, 0, 1, 0),
    ("tlns", f"nope.{BASE}", "A", "IN", NXDOMAIN, True, 0, 1, 0),
    ("tlns", f"www.nope.{BASE}", "A", "IN", NXDOMAIN, True, 0, 1, 0),
    ("tlns", "www.example.com", "A", "IN", REFUSED, False, 0, 0, 0),
    ("tlns", "test", "NS", "IN", REFUSED, False, 0, 0, 0),
    ("tlns", "xakacdn.test", "A", "IN", REFUSED, False, 0, 0, 0),
    ("tlns", BASE, "SOA", "HS", REFUSED, False, 0, 0, 0),
    ("llns", f"a123.g.{BASE}", "A", "IN", NOERROR, True, 2, 0, 0),
    ("llns", f"A123.G.{BASE.upper()}", "A", "IN", NOERROR, True, 2, 0, 0),
    ("llns", f"a123.g.{BASE}", "ANY", "IN", NOERROR, True, 2, 0, 0),
    ("llns", f"a123.g.{BASE}", "AAAA", "IN", NOERROR, True, 0, 1, 0),
    ("llns", f"a123.g.{BASE}", "TXT", "IN", NOERROR, True, 0, 1, 0),
    ("llns", f"a999.g.{BASE}", "A", "IN", NXDOMAIN, True, 0, 1, 0),
    ("llns", f"a.g.{BASE}", "A", "IN", NXDOMAIN, True, 0, 1, 0),
    ("llns", f"x.a123.g.{BASE}", "A", "IN", NXDOMAIN, True, 0, 1, 0),
    ("llns", f"www.g.{BASE}", "A", "IN", NXDOMAIN, True, 0, 1, 0),
    ("llns", f"g.{BASE}", "SOA", "IN", NOERROR, True, 1, 0, 0),
    ("llns", f"g.{BASE}", "NS", "IN", NOERROR, True, 8, 0, 0),
    ("llns", f"g.{BASE}", "A", "IN", NOERROR, True, 0, 1, 0),
    ("llns", BASE, "SOA", "IN", REFUSED, False, 0, 0, 0),
    ("llns", "www.example.com", "A", "IN", REFUSED, False, 0, 0, 0),
]


def _case_id(c: tuple[str, str, str, str, int, bool, int, int, int]) -> str:
    return f"{c[0]}-{c[1]}-{c[3]}-{c[2]}"


@pytest.mark.parametrize(
    ("server", "name", "rdtype", "rdclass", "rcode", "aa", "n_an", "n_ns", "n_ar"), CASES, ids=map(_case_id, CASES)
)
def test_answer_table(
    zones: Zones,
    server: str,
    name: str,
    rdtype: str,
    rdclass: str,
    rcode: int,
    aa: bool,
    n_an: int,
    n_ns: int,
    n_ar: int,
) -> None:
    wire = query(name, rdtype, rdclass)
    r = ask(zones.zone(server), wire)
    m = parse(r.data)
    q = dns.message.from_wire(wire)
    assert m.id == q.id
    assert m.rcode() == rcode
    assert bool(m.flags & dns.flags.AA) is aa
    assert m.flags & dns.flags.QR and not m.flags & dns.flags.RA and not m.flags & dns.flags.TC
    assert m.question == q.question  # the question is kept
    assert (count(m.answer), count(m.authority), count(m.additional)) == (n_an, n_ns, n_ar)
    assert m.edns == -1  # no OPT when none was asked for
    if n_ns == 1 and n_an == 0:
        assert m.authority[0].rdtype == dns.rdatatype.SOA  # negative answers carry the SOA


# --- what the answers say --------------------------------------------------------------------


def _llns_addresses(net: Network) -> dict[str, str]:
    return {m.address: m.region for m in net.by_role("llns")}


def test_apex_ns_glue_is_the_tlns_addresses(zones: Zones) -> None:
    m = parse(ask(zones.tlns, query(BASE, "NS")).data)
    names = sorted(str(rd.target) for rd in m.answer[0])
    assert names == [f"z{c}.{BASE}." for c in "abcdefgh"]
    glue = {str(rrset.name): rrset[0].address for rrset in m.additional}
    assert set(glue) == set(names)
    assert set(glue.values()) == {"127.0.10.1", "127.0.10.2"}
    za = parse(ask(zones.tlns, query(f"za.{BASE}")).data)
    assert addresses(za.answer) == [glue[f"za.{BASE}."]]


def test_referral_names_8_llns_from_at_most_3_regions(zones: Zones) -> None:
    m = parse(ask(zones.tlns, query(f"a123.g.{BASE}")).data)
    (ns,) = m.authority
    assert str(ns.name) == f"g.{BASE}." and ns.rdtype == dns.rdatatype.NS and ns.ttl == 1800
    targets = [str(rd.target) for rd in ns]
    assert sorted(targets) == [f"n{i}g.{BASE}." for i in range(8)]
    glue = {str(rrset.name): rrset for rrset in m.additional}
    assert set(glue) == set(targets)
    llns = _llns_addresses(zones.net)
    glue_addrs = [glue[t][0].address for t in sorted(targets)]
    assert set(glue_addrs) <= set(llns)
    assert 1 <= len({llns[a] for a in glue_addrs}) <= 3
    assert all(rrset.ttl == 1800 for rrset in glue.values())
    # the same resolver /24 gets the same referral; nXg.<base> answers the same addresses
    again = parse(ask(zones.tlns, query(f"_.g.{BASE}"), client="192.0.2.200").data)
    assert {str(r.name): r[0].address for r in again.additional} == {t: glue[t][0].address for t in targets}
    for i in range(8):
        a = parse(ask(zones.tlns, query(f"n{i}g.{BASE}")).data)
        assert addresses(a.answer) == [glue[f"n{i}g.{BASE}."][0].address]


def test_referral_lists_only_live_llns(net: Network) -> None:
    z = make_zones(net, down=("r2-llns",))
    m = parse(ask(z.tlns, query(f"a123.g.{BASE}")).data)
    assert set(addresses(m.additional)) == {"127.0.1.1", "127.0.3.1"}


@pytest.mark.parametrize(
    ("client", "rdtype", "expected"),
    [("192.0.2.77", "A", "192.0.2.77"), ("2001:db8::53", "AAAA", "2001:db8::53")],
)
def test_whoami_answers_the_client_address(zones: Zones, client: str, rdtype: str, expected: str) -> None:
    m = parse(ask(zones.tlns, query(f"whoami.{BASE}", rdtype), client=client).data)
    assert addresses(m.answer) == [expected]
    assert m.answer[0].ttl == 0


def test_llns_answers_two_edges_of_its_region_for_20s(zones: Zones) -> None:
    m = parse(ask(zones.llns, query(f"a123.g.{BASE}")).data)
    got = addresses(m.answer)
    assert len(got) == 2 and len(set(got)) == 2
    assert set(got) <= {"127.0.1.11", "127.0.1.12", "127.0.1.13"}
    assert all(rrset.ttl == 20 for rrset in m.answer)
    assert addresses(parse(ask(zones.llns, query(f"a123.g.{BASE}")).data).answer) == got  # stable


def test_llns_of_a_dead_region_hands_out_the_spill_region(net: Network) -> None:
    z = make_zones(net, down=("r2-e1", "r2-e2", "r2-e3"), llns_region="r2")
    got = addresses(parse(ask(z.llns, query(f"a123.g.{BASE}")).data).answer)
    assert len(got) == 2 and set(got) <= {"127.0.1.11", "127.0.1.12", "127.0.1.13"}  # r1 (tie with r3, by id)


def test_llns_soa_serial_follows_the_map(zones: Zones) -> None:
    m = parse(ask(zones.llns, query(f"g.{BASE}", "SOA")).data)
    assert m.answer[0][0].serial == zones.llns.low.version[1]  # type: ignore[union-attr]


def test_llns_serial_names_are_canonical(zones: Zones) -> None:
    m = parse(ask(zones.llns, query(f"a0123.g.{BASE}")).data)
    assert m.rcode() == NXDOMAIN


# --- no map yet ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "name", "rcode"),
    [
        ("tlns", f"a123.g.{BASE}", dns.rcode.SERVFAIL),
        ("tlns", f"n0g.{BASE}", dns.rcode.SERVFAIL),
        ("tlns", BASE, NOERROR),  # the static part of the zone does not need a map
        ("llns", f"a123.g.{BASE}", dns.rcode.SERVFAIL),
        ("llns", f"a999.g.{BASE}", NXDOMAIN),
        ("llns", f"g.{BASE}", NOERROR),
    ],
)
def test_no_map_servfail_for_map_answers_only(net: Network, server: str, name: str, rcode: int) -> None:
    zone = TopLevelZone(net) if server == "tlns" else LowLevelZone(net, "r1")
    m = parse(ask(zone, query(name, "SOA" if name in (BASE, f"g.{BASE}") else "A")).data)
    assert m.rcode() == rcode
    if rcode == dns.rcode.SERVFAIL:
        assert not m.flags & dns.flags.AA and count(m.answer) == 0


# --- CHAOS -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "text"),
    [
        ("hostname.bind", "TXT", NOERROR, IDENTITY),
        ("id.server", "TXT", NOERROR, IDENTITY),
        ("version.bind", "TXT", NOERROR, VERSION),
        ("version.server", "TXT", NOERROR, VERSION),
        ("HOSTNAME.BIND", "TXT", NOERROR, IDENTITY),
        ("hostname.bind", "A", REFUSED, None),
        ("authors.bind", "TXT", REFUSED, None),
    ],
)
def test_chaos(zones: Zones, name: str, rdtype: str, rcode: int, text: str | None) -> None:
    for zone in (zones.tlns, zones.llns):
        m = parse(ask(zone, query(name, rdtype, "CH")).data)
        assert m.rcode() == rcode
        if text is not None:
            (rrset,) = m.answer
            assert rrset.rdclass == dns.rdataclass.CH
            assert [s.decode() for s in rrset[0].strings] == [text]


# --- header, EDNS, malformed queries ---------------------------------------------------------


@pytest.mark.parametrize("rd", [True, False])
@pytest.mark.parametrize("name", [BASE, f"a123.g.{BASE}", "www.example.com", "hostname.bind"])
def test_ra_is_never_set_and_rd_is_copied(zones: Zones, rd: bool, name: str) -> None:
    cls = "CH" if name == "hostname.bind" else "IN"
    for zone in (zones.tlns, zones.llns):
        m = parse(ask(zone, query(name, "TXT", cls, rd=rd)).data)
        assert not m.flags & dns.flags.RA
        assert bool(m.flags & dns.flags.RD) is rd


@pytest.mark.parametrize("payload", [512, 1232, 4096])
def test_edns_opt_echoed_with_our_buffer(zones: Zones, payload: int) -> None:
    m = parse(ask(zones.tlns, query(BASE, "SOA", edns=0, payload=payload)).data)
    assert m.edns == 0 and m.payload == EDNS_BUFFER == 1232
    assert m.rcode() == NOERROR and count(m.answer) == 1


def test_no_opt_without_edns(zones: Zones) -> None:
    r = ask(zones.llns, query(f"a123.g.{BASE}"))
    assert parse(r.data).edns == -1
    assert DNSRecord.parse(bytes(r.data)).ar == []  # type: ignore[arg-type]


def test_edns_version_1_gets_badvers(zones: Zones) -> None:
    r = ask(zones.tlns, query(BASE, "SOA", edns=1))
    m = parse(r.data)
    assert r.kind == "badvers"
    assert m.rcode() == dns.rcode.BADVERS == 16  # extended rcode: 4 bits in the header, 8 in the OPT
    assert m.edns == 0 and m.payload == 1232
    assert count(m.answer) == 0 and len(m.question) == 1


def test_response_is_dropped(zones: Zones) -> None:
    q = dns.message.make_query(BASE, "SOA")
    q.flags |= dns.flags.QR
    r = ask(zones.tlns, q.to_wire())
    assert r.data is None and r.kind == "response_dropped"


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00"])
def test_garbage_shorter_than_a_header_is_dropped(zones: Zones, data: bytes) -> None:
    assert ask(zones.tlns, data).data is None


@pytest.mark.parametrize(
    "data",
    [
        b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",  # claims a question, has none
        b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example",  # name runs off the end
        b"\xbe\xef\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # pointer loop
        b"\xbe\xef\x01\x00" + b"\xff" * 8 + b"\x00\x00",  # 65535 of everything
    ],
    ids=["no-question", "truncated-name", "pointer-loop", "junk"],
)
def test_unparsable_query_gets_formerr_with_same_id(zones: Zones, data: bytes) -> None:
    r = ask(zones.tlns, data)
    assert r.kind == "formerr"
    m = parse(r.data)
    assert m.id == 0xBEEF and m.rcode() == dns.rcode.FORMERR
    assert m.flags & dns.flags.QR and not m.flags & dns.flags.RA
    assert bool(m.flags & dns.flags.RD) is bool(data[2] & 0x01)
    assert len(m.question) == 0


def test_unparsable_response_is_dropped(zones: Zones) -> None:
    assert ask(zones.tlns, b"\xbe\xef\x81\x00" + b"\xff" * 8 + b"\x00\x00").data is None


@pytest.mark.parametrize("opcode", [dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY, dns.opcode.UPDATE])
def test_other_opcodes_get_notimp(zones: Zones, opcode: int) -> None:
    q = dns.message.make_query(BASE, "SOA")
    q.set_opcode(opcode)
    r = ask(zones.tlns, q.to_wire())
    m = parse(r.data)
    assert r.kind == "notimp" and m.rcode() == dns.rcode.NOTIMP
    assert bool(r.data) and (bytes(r.data)[2] >> 3) & 0xF == opcode  # type: ignore[arg-type]
    assert m.id == q.id and count(m.answer) == 0


def _raw_query(qid: int, questions: list[bytes]) -> bytes:
    return struct.pack("!HHHHHH", qid, 0x0100, len(questions), 0, 0, 0) + b"".join(questions)


def _question(name: str, rdtype: int = 1) -> bytes:
    wire = b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\x00"
    return wire + struct.pack("!HH", rdtype, 1)


@pytest.mark.parametrize("n", [0, 2, 3])
def test_anything_but_one_question_gets_formerr(zones: Zones, n: int) -> None:
    data = _raw_query(0x4242, [_question(f"n{i}g.{BASE}") for i in range(n)])
    m = parse(ask(zones.tlns, data).data)
    assert m.id == 0x4242 and m.rcode() == dns.rcode.FORMERR
    assert count(m.answer) == 0


def test_unexpected_exception_in_answer_is_servfail(zones: Zones) -> None:
    def broken(q: object, client: str) -> object:
        raise KeyError("oops")

    r = respond(query(BASE, "SOA", edns=0), CLIENT, broken, IDENTITY, 512)  # type: ignore[arg-type]
    m = parse(r.data)
    assert r.kind == "bug" and m.rcode() == dns.rcode.SERVFAIL
    assert not m.flags & dns.flags.AA and m.edns == 0


# --- truncation ------------------------------------------------------------------------------

LONG = ".".join(c * 60 for c in "xyz") + "." + "w" * 50 + f".g.{BASE}"  # a referral over 512 bytes


def test_big_udp_reply_without_edns_is_truncated_and_keeps_question(zones: Zones) -> None:
    wire = query(LONG)
    full = ask(zones.tlns, wire, max_udp=None)  # TCP: never truncated
    assert len(full.data) > 512  # type: ignore[arg-type]
    assert not parse(full.data).flags & dns.flags.TC
    r = ask(zones.tlns, wire, max_udp=512)
    assert len(r.data) <= 512  # type: ignore[arg-type]
    m = parse(r.data)
    assert m.flags & dns.flags.TC
    assert m.question == dns.message.from_wire(wire).question
    assert (count(m.answer), count(m.authority), count(m.additional)) == (0, 0, 0)


def test_big_reply_fits_with_edns(zones: Zones) -> None:
    m = parse(ask(zones.tlns, query(LONG, edns=0, payload=4096), max_udp=512).data)
    assert not m.flags & dns.flags.TC and count(m.authority) == 8 and m.edns == 0


def test_truncated_edns_reply_keeps_opt(zones: Zones) -> None:
    r = ask(zones.tlns, query(LONG, edns=0, payload=512), max_udp=512)
    m = parse(r.data)
    assert m.flags & dns.flags.TC and m.edns == 0 and m.payload == 1232
    assert len(r.data) <= 512  # type: ignore[arg-type]


def test_small_reply_is_not_truncated(zones: Zones) -> None:
    m = parse(ask(zones.tlns, query(BASE, "NS")).data)
    assert not m.flags & dns.flags.TC and count(m.answer) == 8


# --- names dnslib reads but cannot write back ---------------------------------------------------


OVERLONG = {
    # dnslib parses these question names but cannot write them back into the reply
    "name-over-255-bytes": (b"\x3f" + b"a" * 63) * 4 + b"\x00",  # 4*64+1 = 257 bytes
    "label-of-64-bytes": b"\x40" + b"a" * 64 + b"\x00",  # length byte 0x40 is not a pointer
}


@pytest.mark.parametrize("name", OVERLONG.values(), ids=OVERLONG.keys())
@pytest.mark.parametrize("opcode", [0, 4])
def test_overlong_name_does_not_raise(zones: Zones, name: bytes, opcode: int) -> None:
    data = bytearray(_raw_query(0x5151, [name + b"\x00\x01\x00\x01"]))
    data[2] |= opcode << 3
    r = ask(zones.tlns, bytes(data))
    assert r.data is not None and parse(r.data).rcode() in (dns.rcode.FORMERR, dns.rcode.NOTIMP)


def test_reply_data_is_bytes(zones: Zones) -> None:
    assert isinstance(ask(zones.tlns, query(BASE, "SOA")).data, bytes)


# --- fuzz ------------------------------------------------------------------------------------

SEEDS = [
    query(BASE, "NS"),
    query(f"a123.g.{BASE}", edns=0),
    query(f"whoami.{BASE}"),
    query("hostname.bind", "TXT", "CH"),
    query(f"n3g.{BASE}", edns=0, payload=4096),
    query(f"a123.g.{BASE}", "AAAA", rd=False),
    query(LONG, edns=0),
]


@st.composite
def mutated_query(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        if op == "set" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif op == "insert":
            data[draw(st.integers(0, len(data))) : 0] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[draw(st.integers(0, len(data) - 1))]
        elif op == "truncate":
            del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


@settings(max_examples=1500, deadline=None)
@given(data=st.one_of(st.binary(max_size=600), mutated_query()))
def test_fuzz_respond_never_raises_and_replies_parse(fuzz_zones: Zones, data: bytes) -> None:
    for zone in (fuzz_zones.tlns, fuzz_zones.llns):
        for max_udp in (512, None):
            r = ask(zone, data, max_udp=max_udp)
            if r.data is None:
                assert len(data) < 12 or data[2] & 0x80  # only runts and responses are dropped
                continue
            m = parse(r.data)
            assert m.id == int.from_bytes(data[:2], "big")
            assert m.flags & dns.flags.QR and not m.flags & dns.flags.RA
            if max_udp is not None and len(data) <= 512:
                assert len(r.data) <= EDNS_BUFFER
