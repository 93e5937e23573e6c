"""The nameservers' new pure parts: ECS, client routes, region choice, the answer cache,
RRL, and the batched UDP engine over a real loopback socket."""

from __future__ import annotations

import ipaddress
import socket
import struct

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest
from hypothesis import given
from hypothesis import strategies as st

from akacdn.config import Network
from akacdn.dns.ecs import ClientSubnet, EcsError, ecs_reply, parse_ecs
from akacdn.dns.fastpath import AnswerCache, bucket_of
from akacdn.dns.lowlevel import LowLevelZone
from akacdn.dns.query import QueryError, parse_query, plain_question_length
from akacdn.dns.rrl import DROP, SEND, SLIP, RateLimiter, truncated
from akacdn.dns.toplevel import TopLevelZone
from akacdn.dns.udp import UdpBatch
from akacdn.dns.wire import respond
from akacdn.mapping.builder import MapBook, build
from akacdn.mapping.maps import ClientRoute
from akacdn.mapping.messages import Heartbeat
from akacdn.mapping.routing import ClientRoutes

BASE = "akacdn.test"


def zones(net: Network, down: tuple[str, ...] = (), region: str = "r1") -> tuple[TopLevelZone, LowLevelZone]:
    live = {m.id: Heartbeat(m.id, m.role, m.region) for m in net.machines if m.id not in down}
    top, lows = build(net, live, 1.0)
    book = MapBook(1)
    book.update(([top] if top else []) + list(lows))
    t, low = TopLevelZone(net), LowLevelZone(net, region)
    t.use_map(book.maps["top"])  # type: ignore[arg-type]
    low.use_map(book.maps["low"])  # type: ignore[arg-type]
    return t, low


def ask(zone: TopLevelZone | LowLevelZone, name: str, rdtype: str = "A", subnet: str | None = None,
        source: str = "127.0.0.1") -> dns.message.Message:  # fmt: skip
    opts = [dns.edns.ECSOption.from_text(subnet)] if subnet else []
    q = dns.message.make_query(name, rdtype, use_edns=0 if subnet else False, options=opts)
    r = respond(q.to_wire(), source, zone.answer, "test", 512)
    assert r.data is not None
    return dns.message.from_wire(r.data)


def addresses(m: dns.message.Message) -> list[str]:
    return sorted(rd.address for rrset in m.answer for rd in rrset)


def ecs_of(m: dns.message.Message) -> dns.edns.ECSOption | None:
    return next((o for o in m.options if isinstance(o, dns.edns.ECSOption)), None)


# --- ECS -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (struct.pack("!HBB", 1, 24, 0) + bytes([198, 18, 2]), ClientSubnet(1, 24, bytes([198, 18, 2]))),
        (struct.pack("!HBB", 1, 0, 0), ClientSubnet(1, 0, b"")),
        (struct.pack("!HBB", 2, 56, 0) + bytes(7), ClientSubnet(2, 56, bytes(7))),
        (struct.pack("!HBB", 1, 20, 0) + bytes([10, 1, 0x10]), ClientSubnet(1, 20, bytes([10, 1, 0x10]))),
    ],
)
def test_parse_ecs(data: bytes, expected: ClientSubnet) -> None:
    assert parse_ecs(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x01\x18",  # too short
        struct.pack("!HBB", 3, 24, 0) + bytes(3),  # unknown family
        struct.pack("!HBB", 1, 33, 0) + bytes(5),  # prefix too long for IPv4
        struct.pack("!HBB", 2, 129, 0) + bytes(17),
        struct.pack("!HBB", 1, 24, 8) + bytes(3),  # scope set in a query
        struct.pack("!HBB", 1, 24, 0) + bytes(4),  # address longer than the prefix needs
        struct.pack("!HBB", 1, 24, 0) + bytes(2),  # shorter
        struct.pack("!HBB", 1, 20, 0) + bytes([10, 1, 0x11]),  # bits beyond the prefix
    ],
)
def test_malformed_ecs_is_refused(data: bytes) -> None:
    with pytest.raises(EcsError):
        parse_ecs(data)


def test_ecs_reply_echoes_with_scope() -> None:
    s = ClientSubnet(1, 24, bytes([198, 18, 2]))
    assert ecs_reply(s, 16) == struct.pack("!HBB", 1, 24, 16) + bytes([198, 18, 2])
    assert s.network() == ipaddress.ip_network("198.18.2.0/24")


# --- client routes and region choice ---------------------------------------------------------


def test_longest_prefix_wins() -> None:
    routes = ClientRoutes([ClientRoute("198.18.0.0/16", "r1"), ClientRoute("198.18.2.0/24", "r2"),
                           ClientRoute("2001:db8::/32", "r3")])  # fmt: skip
    assert routes.region_for(ipaddress.ip_address("198.18.2.9")) == ("r2", 24)
    assert routes.region_for(ipaddress.ip_address("198.18.7.9")) == ("r1", 16)
    assert routes.region_for(ipaddress.ip_address("203.0.113.1")) == (None, 0)
    assert routes.region_for(ipaddress.ip_address("2001:db8::1")) == ("r3", 32)
    assert ClientRoutes([]).empty


def test_llns_maps_an_ecs_subnet_to_its_region_with_scope(net: Network) -> None:
    _, llns = zones(net)
    r2 = ask(llns, f"a123.g.{BASE}", subnet="198.18.2.0/24")
    assert all(a.startswith("127.0.2.") for a in addresses(r2)) and len(addresses(r2)) == 2
    assert ecs_of(r2).scopelen == 24  # type: ignore[union-attr]
    own = ask(llns, f"a123.g.{BASE}", subnet="203.0.113.0/24")  # unrouted: this LLNS's region
    assert all(a.startswith("127.0.1.") for a in addresses(own))
    assert ecs_of(own).scopelen == 24  # type: ignore[union-attr]
    zero = ask(llns, f"a123.g.{BASE}", subnet="0.0.0.0/0")  # no client information
    assert ecs_of(zero).scopelen == 0 and addresses(zero) == addresses(own)  # type: ignore[union-attr]
    assert ecs_of(ask(llns, f"a123.g.{BASE}")) is None  # no ECS asked, none given


def test_llns_falls_back_when_the_clients_region_is_not_serving(net: Network) -> None:
    # r2 down to one edge: its clients go to r2's fallback order (r1, r3), the first serving one
    _, llns = zones(net, down=("r2-e1", "r2-e2"), region="r3")
    got = addresses(ask(llns, f"a123.g.{BASE}", subnet="198.18.2.0/24"))
    assert len(got) == 2 and all(a.startswith("127.0.1.") for a in got)


def test_llns_with_no_serving_region_uses_any_live_edge(net: Network) -> None:
    down = tuple(f"r{r}-e{i}" for r in (1, 2, 3) for i in (1, 2, 3) if (r, i) != (3, 1))
    _, llns = zones(net, down=down)
    assert addresses(ask(llns, f"a123.g.{BASE}")) == ["127.0.3.11"]


def test_tlns_puts_the_clients_region_first(net: Network) -> None:
    tlns, _ = zones(net)
    for i, region in ((1, "r1"), (2, "r2"), (3, "r3")):
        m = ask(tlns, f"a123.g.{BASE}", subnet=f"198.18.{i}.0/24")
        glue = {rrset.name.to_text(): rrset[0].address for rrset in m.additional if rrset.rdtype == 1}
        assert glue[f"n0g.{BASE}."] == f"127.0.{i}.1", region
        assert ecs_of(m).scopelen == 24  # type: ignore[union-attr]
        regions = {a.split(".")[2] for a in glue.values()}
        assert len(glue) == 8 and len(regions) == 3


def test_aaaa_answers_edges_with_ipv6(tmp_path, net: Network) -> None:  # type: ignore[no-untyped-def]
    import msgspec

    machines = tuple(
        msgspec.structs.replace(m, address6=f"2001:db8::{m.address.rsplit('.', 1)[1]}:{i}")
        if m.role == "edge" else m
        for i, m in enumerate(net.machines)
    )  # fmt: skip
    _, llns = zones(msgspec.structs.replace(net, machines=machines))
    m = ask(llns, f"a123.g.{BASE}", "AAAA")
    assert len(addresses(m)) == 2 and all(a.startswith("2001:db8::") for a in addresses(m))
    _, plain = zones(net)
    none = ask(plain, f"a123.g.{BASE}", "AAAA")
    assert none.rcode() == dns.rcode.NOERROR and not none.answer and none.authority  # NODATA


# --- answer cache ----------------------------------------------------------------------------


def wire(name: str, qid: int = 7) -> bytes:
    q = dns.message.make_query(name, "A")
    q.id = qid
    return q.to_wire()


def test_cache_patches_the_id_and_keeps_per_bucket_answers_apart() -> None:
    cache = AnswerCache()
    q = wire("a1.g.akacdn.test")
    cache.store(q, bucket_of("10.0.0.1"), q[:2] + b"REPLY-A", "bucket")
    cache.store(q, bucket_of("10.0.9.1"), q[:2] + b"REPLY-B", "bucket")
    other_id = wire("a1.g.akacdn.test", qid=0x4242)
    assert cache.lookup(other_id, bucket_of("10.0.0.77")) == b"\x42\x42REPLY-A"
    assert cache.lookup(other_id, bucket_of("10.0.9.200")) == b"\x42\x42REPLY-B"
    assert cache.lookup(other_id, bucket_of("10.0.5.1")) is None


def test_cache_keeps_the_querys_letter_case(net: Network) -> None:
    _, llns = zones(net)
    cache = AnswerCache()
    mixed = wire("A123.g.AkAcDn.TeSt")
    r = respond(mixed, "127.0.0.1", llns.answer, "t", 512)
    cache.store(mixed, bucket_of("127.0.0.1"), r.data, r.varies)  # type: ignore[arg-type]
    other = wire("a123.G.akacdn.TEST", qid=99)
    got = cache.lookup(other, bucket_of("127.0.0.1"))
    assert got is not None
    m = dns.message.from_wire(got)
    assert m.id == 99 and m.question[0].name.to_text() == "a123.G.akacdn.TEST."
    assert len(addresses(m)) == 2


def test_cache_never_keeps_source_specific_answers_and_is_bounded() -> None:
    cache = AnswerCache(max_entries=2)
    cache.store(wire("whoami.akacdn.test"), b"\x01\x02\x03", b"xxREPLY", "source")
    assert not cache.entries
    for i in range(3):
        cache.store(wire(f"a{i}.g.akacdn.test"), b"\x01\x02\x03", b"xxREPLY", "none")
    assert len(cache.entries) == 1 and cache.flushes == 1


@given(st.lists(st.text(alphabet="abcxyz0123456789-", min_size=1, max_size=20), min_size=1, max_size=5))
def test_question_length(labels: list[str]) -> None:
    name = ".".join(labels)
    assert plain_question_length(wire(name)) == len(name) + 2 + 4


# --- RRL -------------------------------------------------------------------------------------


def test_rrl_sends_up_to_the_rate_then_slips_every_nth_and_drops_the_rest() -> None:
    rrl = RateLimiter(rate=3, slip=2)
    actions = [rrl.check(b"\x0a\x00\x00", b"q", 100) for _ in range(9)]
    assert actions == [SEND, SEND, SEND, DROP, SLIP, DROP, SLIP, DROP, SLIP]
    assert rrl.check(b"\x0a\x00\x01", b"q", 100) == SEND  # another client bucket
    assert rrl.check(b"\x0a\x00\x00", b"other", 100) == SEND  # another answer
    assert rrl.check(b"\x0a\x00\x00", b"q", 101) == SEND  # a new second


def test_rrl_without_slip_drops_and_fails_open_when_full() -> None:
    rrl = RateLimiter(rate=1, slip=0, max_entries=1)
    assert [rrl.check(b"a", b"q", 1) for _ in range(3)] == [SEND, DROP, DROP]
    assert rrl.check(b"b", b"q", 1) == SEND  # table full: new keys pass


def test_truncated_reply_keeps_id_flags_question_and_opt(net: Network) -> None:
    _, llns = zones(net)
    q = dns.message.make_query(f"a123.g.{BASE}", "A", use_edns=0, options=[dns.edns.GenericOption(3, b"")])
    q.id, q.flags = 0x1234, q.flags | dns.flags.CD
    full = respond(q.to_wire(), "127.0.0.1", llns.answer, "r1-llns", 512).data
    m = dns.message.from_wire(truncated(full))  # type: ignore[arg-type]
    assert m.id == 0x1234 and m.flags & dns.flags.TC and m.flags & dns.flags.QR and m.flags & dns.flags.CD
    assert m.flags & dns.flags.AA and m.rcode() == dns.rcode.NOERROR
    assert m.question[0].name.to_text() == "a123.g.akacdn.test." and not m.answer
    assert m.edns == 0 and m.payload == 1232 and any(o.otype == 3 for o in m.options)  # OPT kept, NSID too
    assert truncated(b"\x00\x01\x81\x01" + bytes(8)) is None  # a header-only error has nothing to keep


# --- the batched UDP engine, on real sockets -------------------------------------------------


@pytest.mark.skipif(not UdpBatch.available(), reason="libc without recvmmsg")
def test_batch_answers_from_cache_and_slow_path_and_skips_drops() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(2)
    batch = UdpBatch(server)
    cached = wire("cached.example", qid=1)
    entries: dict[bytes, bytes | dict[bytes, bytes]] = {cached[2:]: b"CACHED"}
    seen: list[tuple[bytes, str, bytes]] = []

    def slow(data: bytes, source: str, bucket: bytes) -> bytes | None:
        seen.append((data, source, bucket))
        return None if b"drop" in data else data[:2] + b"SLOW"

    sent = [wire("drop.example", qid=2), cached, wire("slow.example", qid=3), wire("drop2.example", qid=4)]
    for q in sent:
        client.sendto(q, server.getsockname())
    received = 0
    while received < len(sent):
        n, hits = batch.serve(entries, slow, direct=True)
        received += n
    replies = sorted(client.recv(100) for _ in range(2))
    assert replies == [b"\x00\x01CACHED", b"\x00\x03SLOW"]
    assert [s[1] for s in seen] == ["127.0.0.1"] * 3 and all(s[2] == b"\x7f\x00\x00" for s in seen)
    client.settimeout(0.2)
    with pytest.raises(TimeoutError):
        client.recv(100)  # the dropped ones got nothing
    server.close()
    client.close()


# --- the strict query parser -------------------------------------------------------------------

Q = dns.message.make_query("a123.g.akacdn.test", "A").to_wire()
OPT_RR = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00"  # root, OPT, 1232, ttl 0 (then rdlen, rdata)


def with_additional(records: bytes, count: int, base: bytes = Q) -> bytes:
    return base[:10] + struct.pack("!H", count) + base[12:] + records


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (Q + b"\x00", "trailing bytes"),
        (with_additional(OPT_RR + b"\x00\x00" + OPT_RR + b"\x00\x00", 2), "two OPT records"),
        (with_additional(b"\x01x" + OPT_RR[1:] + b"\x00\x00", 1), "OPT owned by a name"),
        (with_additional(OPT_RR + b"\x00\x02\x00\x08", 1), "truncated option header"),
        (with_additional(OPT_RR + b"\x00\x08\x00\x0a\x00\x0a\x00\x00\x00\x00\x00\x00\x00\x00", 1),
         "option longer than the record"),
                (bytes.fromhex("066801000001000000000000c00000060001"), "pointer into the header"),
        (bytes.fromhex("beef01000001000000000000c00c00010001"), "pointer to itself"),
        (Q[:-2], "truncated question"),
    ],
)  # fmt: skip
def test_parse_query_refuses(data: bytes, why: str) -> None:
    with pytest.raises(QueryError):
        parse_query(data)


def test_parse_query_accepts_what_dnslib_would_not() -> None:
    name = b"\x01\xff\x04a123\x01g\x06akacdn\x04test\x00"
    raw = bytes.fromhex("beef01000001000000000001") + name + b"\x00\x01\x00\x01"
    raw += b"\x00\xff\x00\x00\x01\x00\x00\x00\x00\x00\x00"  # an empty type-65280 record
    got = parse_query(raw)
    assert got.labels[0] == b"\xff" and got.qtype == 1 and got.plain_name and got.edns is None


def test_non_utf8_label_under_our_zone_is_nxdomain(net: Network) -> None:
    _, llns = zones(net)
    name = b"\x01\xff\x04a123\x01g\x06akacdn\x04test\x00"
    raw = bytes.fromhex("beef01000001000000000000") + name + b"\x00\x01\x00\x01"
    m = dns.message.from_wire(respond(raw, "127.0.0.1", llns.answer, "t", 512).data)  # type: ignore[arg-type]
    assert m.rcode() == dns.rcode.NXDOMAIN


def test_nsid_alone_and_cd_in_errors(net: Network) -> None:
    _, llns = zones(net)
    q = dns.message.make_query(f"a123.g.{BASE}", "A", use_edns=0, options=[dns.edns.GenericOption(3, b"")])
    m = dns.message.from_wire(respond(q.to_wire(), "127.0.0.1", llns.answer, "r1-llns", 512).data)  # type: ignore[arg-type]
    assert [o.nsid for o in m.options if o.otype == 3] == [b"r1-llns"]
    bad = respond(bytes.fromhex("beef01100001000000000000"), "127.0.0.1", llns.answer, "t", 512).data
    assert bad is not None and bad[3] & 0x10  # CD copied into a header-only FORMERR


def test_cache_does_not_confuse_client_subnets_that_differ_in_letter_case(net: Network) -> None:
    _, llns = zones(net)
    cache = AnswerCache()

    def query(subnet: str) -> bytes:
        return dns.message.make_query(f"a123.g.{BASE}", "A", use_edns=0,
                                      options=[dns.edns.ECSOption.from_text(subnet)]).to_wire()  # fmt: skip

    upper = query("65.1.2.0/24")  # 0x41 is "A": lower-casing it would make 97.1.2.0
    lower = query("97.1.2.0/24")
    r = respond(lower, "127.0.0.1", llns.answer, "t", 512)
    cache.store(lower, b"\x7f\x00\x00", r.data, r.varies)  # type: ignore[arg-type]
    assert cache.lookup(upper, b"\x7f\x00\x00") is None


def test_malformed_cookie_is_formerr_after_badvers(net: Network) -> None:
    _, llns = zones(net)
    cookie = b"\x00\x0a\x00\x03abc"
    for version, rcode in ((0, dns.rcode.FORMERR), (1, dns.rcode.BADVERS)):
        opt = OPT_RR[:6] + bytes([version]) + OPT_RR[7:] + struct.pack("!H", len(cookie)) + cookie
        raw = respond(with_additional(opt, 1), "127.0.0.1", llns.answer, "t", 512).data
        assert dns.message.from_wire(raw).rcode() == rcode  # type: ignore[arg-type]


def test_pointer_must_land_before_the_name_it_is_in() -> None:
    raw = bytes.fromhex("1234010000010000000000000130c00d00010001")  # "0" then a pointer into itself
    with pytest.raises(QueryError):
        parse_query(raw)
