"""The nameservers as dig sees them: a table of cases, each run over UDP and over TCP.

Two servers of one running devnet: tlns1 (authoritative for the base domain, refers
`g.<base>` to LLNSes) and r1-llns (authoritative for `g.<base>`). A `Case` is one dig
and the shape of the reply it must get: rcode, AA, and the record types in each section;
`check` looks closer where the shape is not enough. Every reply must also keep the
question as asked (case included), have QR=1 and RA=0, copy RD, and carry an OPT record
(version 0, buffer 1232) exactly when the query had one.

Each case runs over UDP, over TCP, and over UDP twice with the same bytes (no random
COOKIE), the second reply perhaps from the fast path's cache of pre-built answers. Names
in records compare without case (a reply compressed against a 0x20 question carries its
case into the records, as BIND's do); the question must come back exactly as asked.

The client networks of the devnet config (for ECS, RFC 7871): 198.18.1.0/24 -> r1,
198.18.2.0/24 -> r2, 198.18.3.0/24 -> r3; dig itself asks from 127.0.0.1, which matches
none of them, so an LLNS answers it from its own region.
"""

from __future__ import annotations

import random
import select
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from akacdn.devnet.network import BASE_DOMAIN
from akacdn.devnet.supervisor import Devnet

from .conftest import Dig, dig, poll, wait_for

BASE = BASE_DOMAIN
SUB = f"g.{BASE}"
NAME = f"a123.{SUB}"
NS_LETTERS = "abcdefgh"
# a name under the map subzone long enough (254 bytes on the wire) that the TLNS
# referral for it, 8 NS + 8 glue, is 542 bytes: over the 512 of a query without EDNS.
# (The usual answers all fit in 512: apex NS with glue is 304 bytes, a referral ~320.)
LONG = ".".join(["x" * 60] * 3 + ["y" * 50]) + f".{NAME}"
WHOAMI_SOURCE = "127.0.99.7"  # dig -b: any 127/8 address is ours to send from
FROM = ("-b", WHOAMI_SOURCE)


# --- what the devnet looks like ------------------------------------------------------


def server_address(dn: Devnet, server: str) -> str:
    return dn.layout.tlns[0] if server == "tlns" else dn.layout.llns(1)


def machine_id(server: str) -> str:
    return "tlns1" if server == "tlns" else "r1-llns"


def region_edges(dn: Devnet, region: str) -> set[str]:
    return {m.address for m in dn.net.by_role("edge") if m.region == region}


def llns_regions(dn: Devnet) -> dict[str, str]:
    return {m.address: m.region for m in dn.net.by_role("llns")}


def shape(section: list[tuple[str, int, str, str]]) -> str:
    """The record types of a section: "A*2", "NS*8 SOA", "" when empty."""
    counts = Counter(rtype for _, _, rtype, _ in section)
    return " ".join(t if n == 1 else f"{t}*{n}" for t, n in sorted(counts.items()))


# --- checks that look beyond the shape -----------------------------------------------


def soa_of(zone: str) -> Callable[[Dig, Devnet], None]:
    def check(d: Dig, dn: Devnet) -> None:
        soas = [rr for rr in d.answer + d.authority if rr[2] == "SOA"]
        assert soas and all(owner.lower() == f"{zone}." for owner, *_ in soas), soas

    return check


def apex_ns_with_glue(d: Dig, dn: Devnet) -> None:
    names = {f"z{c}.{BASE}." for c in NS_LETTERS}
    assert {owner.lower() for owner, *_ in d.answer} == {f"{BASE}."}
    assert {target.lower() for *_, target in d.answer} == names
    assert {owner.lower() for owner, *_ in d.additional} == names
    assert {addr for *_, addr in d.additional} <= set(dn.layout.tlns)


def a_tlns_address(d: Dig, dn: Devnet) -> None:
    assert d.addresses()[0] in dn.layout.tlns, d.answer


def an_llns_address(d: Dig, dn: Devnet) -> None:
    assert d.addresses()[0] in llns_regions(dn), d.answer


def llns_ns_set(d: Dig, dn: Devnet) -> None:
    assert {owner.lower() for owner, *_ in d.answer} == {f"{SUB}."}
    assert {target.lower() for *_, target in d.answer} == {f"n{i}g.{BASE}." for i in range(8)}


def referral(d: Dig, dn: Devnet) -> None:
    """8 NS n0g..n7g for g.<base>, TTL as configured, 8 glue A: LLNSes in 3 regions."""
    ns_names = [f"n{i}g.{BASE}." for i in range(8)]
    assert {owner.lower() for owner, *_ in d.authority} == {f"{SUB}."}, d.authority
    assert sorted(target.lower() for *_, target in d.authority) == ns_names
    assert {ttl for _, ttl, _, _ in d.authority} == {dn.net.ttl.referral}
    assert sorted(owner.lower() for owner, *_ in d.additional) == ns_names
    regions = llns_regions(dn)
    glue = [addr for *_, addr in d.additional]
    assert set(glue) <= set(regions), glue
    assert len({regions[a] for a in glue}) == 3, glue


def edges_of(region: str) -> Callable[[Dig, Devnet], None]:
    def check(d: Dig, dn: Devnet) -> None:
        addrs = d.addresses()
        assert len(set(addrs)) == 2 and set(addrs) <= region_edges(dn, region), (region, addrs)
        assert {ttl for _, ttl, _, _ in d.answer} == {dn.net.ttl.answer}

    return check


def address_is(addr: str) -> Callable[[Dig, Devnet], None]:
    def check(d: Dig, dn: Devnet) -> None:
        assert d.addresses() == [addr], d.answer

    return check


def txt_is(text: str | None) -> Callable[[Dig, Devnet], None]:
    def check(d: Dig, dn: Devnet) -> None:
        assert len(d.answer) == 1 and d.answer[0][2] == "TXT", d.answer
        value = d.answer[0][3].strip('"')
        assert value == text if text is not None else value, d.answer

    return check


def ecs_echo(text: str | None) -> Callable[[Dig, Devnet], None]:
    """The reply's CLIENT-SUBNET as dig prints it, address/source/scope; None: absent."""

    def check(d: Dig, dn: Devnet) -> None:
        assert d.options.get("CLIENT-SUBNET") == text, f"CLIENT-SUBNET {d.options.get('CLIENT-SUBNET')!r}: {d.options}"

    return check


def nsid_is(server: str) -> Callable[[Dig, Devnet], None]:
    def check(d: Dig, dn: Devnet) -> None:
        assert d.nsid() == machine_id(server), f"NSID {d.nsid()!r}, options {d.options}"

    return check


def no_option(name: str) -> Callable[[Dig, Devnet], None]:
    def check(d: Dig, dn: Devnet) -> None:
        assert name not in d.options, d.options

    return check


def no_unknown_flags(d: Dig, dn: Devnet) -> None:
    edns_line = [line for line in d.output.splitlines() if line.startswith("; EDNS:")]
    assert edns_line and "MBZ" not in edns_line[0], edns_line


def all_of(*checks: Callable[[Dig, Devnet], None]) -> Callable[[Dig, Devnet], None]:
    def check(d: Dig, dn: Devnet) -> None:
        for c in checks:
            c(d, dn)

    return check


def do_bit_set(d: Dig, dn: Devnet) -> None:
    assert d.edns is not None and "do" in d.edns.get("flags", "").split(), f"OPT {d.edns}: the DO bit is not copied"


def truncated(d: Dig, dn: Devnet) -> None:
    assert "tc" in d.flags, d.flags
    assert d.answer == [] and d.authority == [], "a truncated reply carries no partial RRsets"


# --- the table ------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    server: str  # "tlns" (tlns1) or "llns" (r1-llns)
    qname: str
    qtype: str = "A"
    opts: tuple[str, ...] = ()
    rcode: str = "NOERROR"
    aa: bool | None = True  # None: not checked (errors, CHAOS)
    answer: str | None = ""  # section shapes, as `shape()` writes them; None: not checked
    authority: str | None = ""
    additional: str | None = ""  # the OPT record is not in it (dig prints it apart)
    check: Callable[[Dig, Devnet], None] | None = None
    udp_only: bool = False  # cases about UDP truncation
    tcp_only: bool = False


def ref(id: str, qname: str, qtype: str = "A", *opts: str, check: Callable[[Dig, Devnet], None] = referral) -> Case:
    """A TLNS referral: AA clear, 8 NS in authority, 8 glue A in additional."""
    return Case(id, "tlns", qname, qtype, opts, aa=False, authority="NS*8", additional="A*8", check=check)


def formerr(id: str, option_hex: str) -> Case:
    opt = f"+ednsopt=8:{option_hex}" if option_hex else "+ednsopt=8"  # dig puts it after its COOKIE
    return Case(id, "llns", NAME, "A", (opt,), rcode="FORMERR", aa=None)


CASES: list[Case] = [
    # TLNS: the base domain
    Case("tlns-apex-soa", "tlns", BASE, "SOA", answer="SOA", check=soa_of(BASE)),
    Case("tlns-apex-ns", "tlns", BASE, "NS", answer="NS*8", additional="A*8", check=apex_ns_with_glue),
    *[Case(f"tlns-z{c}-a", "tlns", f"z{c}.{BASE}", answer="A", check=a_tlns_address) for c in NS_LETTERS],
    *[Case(f"tlns-n{i}g-a", "tlns", f"n{i}g.{BASE}", answer="A", check=an_llns_address) for i in range(8)],
    Case("tlns-nxdomain", "tlns", f"nope.{BASE}", rcode="NXDOMAIN", authority="SOA", check=soa_of(BASE)),
    Case("tlns-nxdomain-deep", "tlns", f"no.such.{BASE}", rcode="NXDOMAIN", authority="SOA", check=soa_of(BASE)),
    Case("tlns-nodata-apex-txt", "tlns", BASE, "TXT", authority="SOA", check=soa_of(BASE)),
    Case("tlns-nodata-za-aaaa", "tlns", f"za.{BASE}", "AAAA", authority="SOA", check=soa_of(BASE)),
    Case("tlns-g-ds-nodata", "tlns", SUB, "DS", authority="SOA", check=soa_of(BASE)),  # DS: parent side
    Case("tlns-refused", "tlns", "example.com", rcode="REFUSED", aa=False),
    Case("tlns-refused-parent", "tlns", "test", "SOA", rcode="REFUSED", aa=False),
    # TLNS: referrals for the map subzone, also the shapes QNAME minimisation asks
    ref("tlns-referral", NAME),
    ref("tlns-referral-norec", NAME, "A", "+norec"),
    ref("tlns-referral-case-kept", "A123.G.AkaCdn.TEST"),
    ref("tlns-qmin-g-ns", SUB, "NS"),
    ref("tlns-qmin-g-a", SUB, "A"),
    ref("tlns-qmin-underscore", f"_.{SUB}"),
    # RFC 8482: ANY gets one RRset
    Case("tlns-any-apex", "tlns", BASE, "ANY", answer="SOA", check=soa_of(BASE)),
    # LLNS: the map subzone
    Case("llns-apex-soa", "llns", SUB, "SOA", answer="SOA", check=soa_of(SUB)),
    Case("llns-apex-ns", "llns", SUB, "NS", answer="NS*8", additional=None, check=llns_ns_set),
    Case("llns-a123", "llns", NAME, answer="A*2", check=edges_of("r1")),
    Case("llns-a123-norec", "llns", NAME, "A", ("+norec",), answer="A*2", check=edges_of("r1")),
    Case("llns-a123-case-kept", "llns", "a123.G.akacdn.Test", answer="A*2"),
    Case("llns-nxdomain-serial", "llns", f"a999.{SUB}", rcode="NXDOMAIN", authority="SOA", check=soa_of(SUB)),
    Case("llns-nxdomain-name", "llns", f"nope.{SUB}", rcode="NXDOMAIN", authority="SOA", check=soa_of(SUB)),
    Case("llns-qmin-underscore", "llns", f"_.{SUB}", rcode="NXDOMAIN", authority="SOA", check=soa_of(SUB)),
    Case("llns-nodata-aaaa", "llns", NAME, "AAAA", authority="SOA", check=soa_of(SUB)),
    Case("llns-nodata-apex-txt", "llns", SUB, "TXT", authority="SOA", check=soa_of(SUB)),
    Case("llns-refused", "llns", "example.com", rcode="REFUSED", aa=False),
    Case("llns-refused-parent", "llns", BASE, "SOA", rcode="REFUSED", aa=False),
    Case("llns-any-a123", "llns", NAME, "ANY", answer="A*2", check=edges_of("r1")),
    Case("llns-any-apex", "llns", SUB, "ANY", answer="SOA", check=soa_of(SUB)),
    # debugging aids: whoami, CHAOS, NSID
    Case("tlns-whoami", "tlns", f"whoami.{BASE}", answer="A", check=address_is("127.0.0.1")),
    Case("tlns-whoami-b", "tlns", f"whoami.{BASE}", "A", FROM, answer="A", check=address_is(WHOAMI_SOURCE)),
    Case("llns-whoami", "llns", f"whoami.{SUB}", answer="A", check=address_is("127.0.0.1")),
    Case("llns-whoami-b", "llns", f"whoami.{SUB}", "A", FROM, answer="A", check=address_is(WHOAMI_SOURCE)),
    *[
        Case(f"{s}-chaos-{n}", s, n, "TXT", ("CH",), aa=None, answer="TXT", check=txt_is(None if v else machine_id(s)))
        for s in ("tlns", "llns")
        for n, v in (("hostname.bind", False), ("id.server", False), ("version.bind", True))
    ],
    # EDNS (RFC 6891), NSID (RFC 5001): asking tlns1 for its SOA, r1-llns for a123
    *[
        c
        for s, q, t, a in (("tlns", BASE, "SOA", "SOA"), ("llns", NAME, "A", "A*2"))
        for c in (
            Case(f"{s}-nsid", s, q, t, ("+nsid",), answer=a, check=nsid_is(s)),
            # NSID as the only option (no COOKIE after it), as kdig and RIPE Atlas probes ask
            Case(f"{s}-nsid-only-option", s, q, t, ("+nsid", "+nocookie"), answer=a, check=nsid_is(s)),
            Case(f"{s}-badvers", s, q, t, ("+edns=1", "+noednsneg"), rcode="BADVERS", aa=None),
            Case(f"{s}-edns-unknown-option", s, q, t, ("+ednsopt=65001:abcd",), answer=a, check=no_option("OPT=65001")),
            Case(f"{s}-edns-unknown-flag", s, q, t, ("+ednsflags=0x40",), answer=a, check=no_unknown_flags),
            Case(f"{s}-noedns", s, q, t, ("+noedns",), answer=a),
            Case(f"{s}-do-bit-copied", s, q, t, ("+dnssec",), answer=a, check=do_bit_set),  # RFC 3225 s3
            Case(f"{s}-no-ecs-no-ecs-back", s, q, t, (), answer=a, check=no_option("CLIENT-SUBNET")),
        )
    ],
    # truncation: TC=1 keeps the question (and the OPT record), drops the sections
    Case("tlns-tc-noedns", "tlns", LONG, "A", ("+noedns", "+ignore"), aa=False, check=truncated, udp_only=True),
    Case("tlns-tc-bufsize512", "tlns", LONG, "A", ("+bufsize=512", "+ignore"), aa=False, check=truncated,
         udp_only=True),
    replace(ref("tlns-long-referral-over-tcp", LONG, "A", "+noedns"), tcp_only=True),
    # ECS (RFC 7871) at the LLNS: the client subnet picks the region, the scope comes back
    Case("llns-ecs-r2", "llns", NAME, "A", ("+subnet=198.18.2.0/24",), answer="A*2",
         check=all_of(edges_of("r2"), ecs_echo("198.18.2.0/24/24"))),
    Case("llns-ecs-r3-host-bits", "llns", NAME, "A", ("+subnet=198.18.3.77/24",), answer="A*2",
         check=all_of(edges_of("r3"), ecs_echo("198.18.3.0/24/24"))),
    Case("llns-ecs-r1", "llns", NAME, "A", ("+subnet=198.18.1.0/24",), answer="A*2",
         check=all_of(edges_of("r1"), ecs_echo("198.18.1.0/24/24"))),
    Case("llns-ecs-unmatched-own-region", "llns", NAME, "A", ("+subnet=203.0.113.0/24",), answer="A*2",
         check=all_of(edges_of("r1"), ecs_echo("203.0.113.0/24/24"))),
    Case("llns-ecs-zero-is-no-ecs", "llns", NAME, "A", ("+subnet=0.0.0.0/0",), answer="A*2",
         check=all_of(edges_of("r1"), ecs_echo("0.0.0.0/0/0"))),
    Case("llns-ecs-v6-unmatched-own-region", "llns", NAME, "A", ("+subnet=2001:db8::/56",), answer="A*2",
         check=all_of(edges_of("r1"), ecs_echo("2001:db8::/56/56"))),
    # malformed ECS options (FAMILY, SOURCE PREFIX-LENGTH, ADDRESS) get FORMERR
    formerr("llns-ecs-bad-source-33", "00012100c612020000"),  # IPv4 /33
    formerr("llns-ecs-bad-source-v6-129", "00028100" + "20010db8" + "00" * 13),  # IPv6 /129
    formerr("llns-ecs-bad-too-many-bytes", "00011800c6120200"),  # /24 with 4 address bytes
    formerr("llns-ecs-bad-bits-beyond-prefix", "00011400c6120f"),  # /20, low 4 bits of byte 3 set
    formerr("llns-ecs-bad-family-3", "00031800010203"),
    formerr("llns-ecs-bad-short", "0001"),  # no prefix lengths at all
    formerr("llns-ecs-bad-empty", ""),  # an empty option, the last in the OPT record
    # ECS at the TLNS: the referral is chosen for the client subnet
    ref("tlns-ecs-referral-r2", NAME, "A", "+subnet=198.18.2.0/24", check=all_of(
        referral,
        lambda d, dn: assert_first_glue(d, dn.layout.llns(2)),
        ecs_echo("198.18.2.0/24/24"),
    )),
]  # fmt: skip


def assert_first_glue(d: Dig, addr: str) -> None:
    glue = {owner.lower(): a for owner, _, rtype, a in d.additional if rtype == "A"}
    assert glue.get(f"n0g.{BASE}.") == addr, f"n0g should be the client's region's LLNS {addr}: {glue}"


@pytest.fixture(scope="module", autouse=True)
def settled(module_devnet: Devnet) -> None:
    """Wait for the maps to settle before the table runs (the fixture already waited for
    full referrals at every TLNS): once the LLNS speaks ECS, for the other regions' maps
    at r1-llns, so it answers an r2 client subnet with r2's edges. Without ECS support
    there is nothing to wait for: the ECS cases then fail on their own."""
    dn = module_devnet
    r2 = region_edges(dn, "r2")

    def ecs_settled() -> bool:
        d = dig(dn.layout.llns(1), dn.layout.dns_port, NAME, "A", "+subnet=198.18.2.0/24")
        return "CLIENT-SUBNET" not in d.options or set(d.addresses()) <= r2

    poll(ecs_settled, 20)


# dig asks ANY over TCP unless told +notcp. "udp-again": the same query twice, without
# dig's random client cookie, so the bytes after the ID repeat and the second reply may
# come from the nameservers' cache of pre-built answers (their fast path): checked alike.
TRANSPORTS = {"udp": ("+notcp",), "tcp": ("+tcp",), "udp-again": ("+notcp", "+nocookie")}

PARAMS = [
    pytest.param(c, t, id=f"{c.id}-{t}")
    for c in CASES
    for t in TRANSPORTS
    if not (c.udp_only and t == "tcp") and not (c.tcp_only and t != "tcp")
]


@pytest.mark.parametrize(("case", "transport"), PARAMS)
def test_dig(module_devnet: Devnet, case: Case, transport: str) -> None:
    dn = module_devnet
    qtype = case.qtype
    args = (server_address(dn, case.server), dn.layout.dns_port, case.qname, qtype, *TRANSPORTS[transport], *case.opts)
    d = dig(*args)
    if transport == "udp-again":
        d = dig(*args)

    def why(what: str) -> str:
        return f"{what}\n--- dig output ---\n{d.output}"

    assert d.status == case.rcode, why(f"status {d.status}, want {case.rcode}")
    want_transport = "TCP" if transport == "tcp" else "UDP"
    assert d.transport == want_transport, why(f"the reply came over {d.transport or 'nothing'}")
    # header: QR=1, RA=0 always, RD copied, AA as the case says
    assert "qr" in d.flags and "ra" not in d.flags, why(f"flags {sorted(d.flags)}: want qr, never ra")
    rd = "+norec" not in case.opts
    assert ("rd" in d.flags) == rd, why(f"flags {sorted(d.flags)}: RD must be copied from the query (rd={rd})")
    if case.aa is not None:
        assert ("aa" in d.flags) == case.aa, why(f"flags {sorted(d.flags)}: want aa={case.aa}")
    # the question as asked, case and class included
    qclass = "CH" if "CH" in case.opts else "IN"
    want_q = [(case.qname.rstrip(".") + ".", qclass, qtype)]
    assert d.question == want_q, why(f"question {d.question}, want {want_q}")
    # OPT exactly when the query had one: version 0, buffer 1232
    if "+noedns" in case.opts:
        assert d.edns is None, why("an OPT record in the reply to a query without one")
    else:
        ok = d.edns is not None and d.edns.get("version") == "0" and d.edns.get("udp") == "1232"
        assert ok, why(f"OPT {d.edns}: want version 0, udp 1232")
    # the sections
    if "tc" not in d.flags:
        for name, want, section in (
            ("answer", case.answer, d.answer),
            ("authority", case.authority, d.authority),
            ("additional", case.additional, d.additional),
        ):
            if want is not None:
                assert shape(section) == want, why(f"{name} section {shape(section)!r}, want {want!r}")
    if case.check is not None:
        try:
            case.check(d, dn)
        except AssertionError as e:
            raise AssertionError(why(str(e))) from None


def test_truncated_udp_reply_makes_dig_retry_over_tcp(module_devnet: Devnet) -> None:
    """What a real client does with TC=1: ask again over TCP and get the whole referral."""
    dn = module_devnet
    d = dig(dn.layout.tlns[0], dn.layout.dns_port, LONG, "A", "+noedns", "+notcp")
    assert "Truncated, retrying in TCP mode" in d.output, d.output
    assert d.transport == "TCP" and d.status == "NOERROR" and "tc" not in d.flags, d.output
    assert d.size > 512 and shape(d.authority) == "NS*8", d.output


def test_tcp_pipelined_queries_are_all_answered(module_devnet: Devnet) -> None:
    """RFC 7766: several queries written at once on one connection, then the replies."""
    dn = module_devnet
    queries = [
        dns.message.make_query(NAME, "A"),
        dns.message.make_query(SUB, "SOA"),
        dns.message.make_query(f"nope.{SUB}", "A"),
        dns.message.make_query(NAME, "AAAA"),
    ]
    for i, q in enumerate(queries):
        q.id = 1000 + i
    with socket.create_connection((dn.layout.llns(1), dn.layout.dns_port), timeout=5) as s:
        s.sendall(b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in queries)))
        f = s.makefile("rb")
        got = {}
        for _ in queries:
            (n,) = struct.unpack("!H", f.read(2))
            m = dns.message.from_wire(f.read(n))
            got[m.id] = m
    assert sorted(got) == [q.id for q in queries]
    rcodes = [dns.rcode.to_text(got[q.id].rcode()) for q in queries]
    assert rcodes == ["NOERROR", "NOERROR", "NXDOMAIN", "NOERROR"]
    assert sum(len(rrset) for rrset in got[1000].answer) == 2


# --- response rate limiting ---------------------------------------------------------

FLOOD = 400
# per (client /24, answer): each flood from a /24 of its own, so the limit one earns
# touches no other test. The answer is the same for all three floods: a123 A.
RRL_FLOODS = {
    "identical": "127.0.77.1",  # 400 copies of one query
    "0x20": "127.0.78.1",  # the same question in random letter case, as resolvers ask (and spoofers may)
    "cookie": "127.0.79.1",  # the same question with a different EDNS client cookie each time
}


def udp_drops(addr: str, port: int) -> int:
    """Datagrams the kernel dropped for the UDP sockets bound to addr:port (full buffers),
    from /proc/net/udp: those never reached the server, so they are not its doing."""
    key = f"{socket.inet_aton(addr)[::-1].hex().upper()}:{port:04X}"
    rows = (line.split() for line in Path("/proc/net/udp").read_text().splitlines()[1:])
    return sum(int(f[-1]) for f in rows if len(f) > 2 and f[1] == key)


def flood_queries(variant: str, n: int) -> list[bytes]:
    """`n` queries for a123 A, query i with ID i."""
    rnd = random.Random(7)
    out = []
    for i in range(n):
        name, options = NAME, []
        if variant == "0x20":
            name = "".join(c.upper() if rnd.random() < 0.5 else c for c in NAME)
        elif variant == "cookie":
            options = [dns.edns.GenericOption(dns.edns.OptionType.COOKIE, rnd.randbytes(8))]
        q = dns.message.make_query(name, "A", use_edns=0, options=options)
        q.id = i
        out.append(q.to_wire())
    return out


def flood(server: str, port: int, source: str, queries: list[bytes]) -> tuple[list[dns.message.Message], int]:
    """Send the queries from `source` as fast as possible, reading replies as they come;
    then collect until no reply came for a second (a dropped query never answers).
    Returns the parsed replies and the datagrams the kernel dropped on the way (full
    receive buffers at either end)."""
    got: dict[int, dns.message.Message] = {}
    server_drops = udp_drops(server, port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        s.bind((source, 0))
        s.setblocking(False)

        def drain() -> None:
            while True:
                try:
                    data = s.recv(65535)
                except BlockingIOError:
                    return
                m = dns.message.from_wire(data)
                got[m.id] = m

        for wire in queries:
            s.sendto(wire, (server, port))
            drain()
        last = time.monotonic()
        while len(got) < len(queries) and time.monotonic() - last < 1.0:
            if select.select([s], [], [], 0.1)[0]:
                before = len(got)
                drain()
                if len(got) > before:
                    last = time.monotonic()
        kernel = udp_drops(server, port) - server_drops + udp_drops(*s.getsockname())
    return list(got.values()), kernel


@pytest.mark.parametrize("variant", RRL_FLOODS)
def test_rrl_limits_a_udp_flood_with_slip_but_not_tcp_nor_other_names(module_devnet: Devnet, variant: str) -> None:
    dn = module_devnet
    source = RRL_FLOODS[variant]
    llns, port = dn.layout.llns(1), dn.layout.dns_port
    drops0 = dn.metric("r1-llns", "akacdn_dns_rrl_total", action="drop")
    slips0 = dn.metric("r1-llns", "akacdn_dns_rrl_total", action="slip")

    replies, kernel_drops = flood(llns, port, source, flood_queries(variant, FLOOD))

    tc = [m for m in replies if m.flags & dns.flags.TC]
    full = [m for m in replies if not m.flags & dns.flags.TC and m.rcode() == dns.rcode.NOERROR and m.answer]
    withheld = FLOOD - kernel_drops - len(replies)
    print(
        f"{variant}: {FLOOD} queries: {len(full)} answered, {len(tc)} slipped (TC=1), "
        f"{withheld} dropped by the server, {kernel_drops} lost to full socket buffers"
    )
    assert full, "the first queries of the burst are answered"
    assert withheld > 0, f"no response rate limiting: the server answered all {FLOOD - kernel_drops} it got"
    assert tc, "no slip: over the rate every rrl_slip-th response goes out truncated"
    for m in tc:
        assert not m.answer and [q.name.to_text().lower() for q in m.question] == [f"{NAME}."], m
    wait_for(lambda: dn.metric("r1-llns", "akacdn_dns_rrl_total", action="drop") > drops0, 5, "rrl drop counter")
    wait_for(lambda: dn.metric("r1-llns", "akacdn_dns_rrl_total", action="slip") > slips0, 5, "rrl slip counter")

    # a real client that got TC=1 asks over TCP: never limited
    r = dns.query.tcp(dns.message.make_query(NAME, "A"), llns, port=port, source=source, timeout=5)
    assert r.rcode() == dns.rcode.NOERROR and not r.flags & dns.flags.TC
    assert sum(len(rrset) for rrset in r.answer) == 2
    # the limit is per answer: another name from the same client is answered over UDP
    r = dns.query.udp(dns.message.make_query(SUB, "SOA"), llns, port=port, source=source, timeout=2)
    assert r.rcode() == dns.rcode.NOERROR and not r.flags & dns.flags.TC
    assert [rrset.rdtype for rrset in r.answer] == [dns.rdatatype.SOA]
