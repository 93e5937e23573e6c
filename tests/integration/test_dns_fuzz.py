"""Live fuzz of the nameservers: 100k+ generated packets against a running TLNS and LLNS.

What is held (the error contract of akacdn/dns/wire.py, judged by a second parser):

* a packet shorter than a header, or a response (QR=1), is never answered;
* dnspython reads each query as the server is documented to (`Lenient`): the RDATA of
  records other than the OPT is skipped by RDLENGTH, and so are EDNS options other than
  the client subnet and the cookie; what dnspython refuses there is tallied by name
  ("RDATA of a SOA record: BadLabelType", "unused EDNS option EDE: ...") and nothing else
  is let pass. A query it cannot read, or whose question or record owner names use a
  compression pointer into the header (offset < 12: deliberately strict), gets FORMERR
  (or nothing: RRL may drop any UDP reply);
* a query it reads gets, by the first rule that applies: BADVERS (16: header rcode 0,
  OPT extended rcode 1; compared as the full rcode) for EDNS version > 0, whatever its
  options hold; FORMERR for a malformed cookie (length not 8 or 16-40: the parser refuses it);
  NOTIMP for an opcode other than QUERY; FORMERR for a question count other than 1 or a
  malformed client-subnet option (RFC 7871 7.1.1: also a non-zero scope, or two of
  them); else, for class IN, NOERROR or NXDOMAIN inside the server's zones and REFUSED
  outside them; for class CH, NOERROR for hostname.bind/id.server/version.bind/
  version.server TXT or ANY and REFUSED otherwise; REFUSED for every other class. Never
  SERVFAIL (that is the "bug" kind, or no map);
* every reply parses with dnspython and has QR=1, RA=0, the query's ID, opcode, RD and
  CD; for a query dnspython reads it keeps the question (none when the query had other
  than one), has an OPT (version 0, buffer 1232, DO copied) exactly when the query had
  one (RFC 6891 7), with NSID (our identity) and the query's client subnet (same family,
  prefix and address) when asked, unless it is an error; over UDP it fits 512 bytes, or
  the client's EDNS buffer capped at 1232;
* a reply with TC=1 (too big, or an RRL slip: rrl.truncated) is the full reply's flags,
  rcode, question and OPT with no other record, only over UDP;
* every UDP packet of 2 bytes or more carries an ID no other packet to that server has
  (written after mutation), so a reply names the one packet it answers: a reply must come
  from the server's address, to the socket that sent that packet, at most once;
* over TCP every complete frame is answered, in order, until a frame that must be dropped
  (after which the server may close), whatever lengths the prefixes claim; then more
  connections than the server's limit are reset by the client, and TCP must still work;
* afterwards every process is alive, both servers answer normally over UDP and TCP, their
  metrics counted every datagram (FORMERR among them), and their logs hold no traceback
  (an exception that reached the event loop) and no error line.

Packets come from a mutation corpus of real queries (corpus/dns/*.bin, written by
corpus/make_dns_corpus.py), random well-formed queries, and random garbage, from a
seeded random.Random (AKACDN_FUZZ_SEED to replay a run). UDP goes through a bounded
in-flight window per socket, each socket from its own /24 so response rate limiting
(per client /24) leaves replies to check; RRL may drop or truncate any UDP reply, so a
missing UDP reply is never a failure, but every reply that comes is checked. Some
packets come twice (a lower-cased twin first: the answer cache folds case) or in bursts of
55-90 (past the RRL budget). Run with `pytest -s` to see the counts;
AKACDN_FUZZ_DUMP=<file> appends every failing exchange to <file>.
"""

from __future__ import annotations

import importlib.util
import os
import random
import selectors
import socket
import struct
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.wire

from akacdn.devnet.network import BASE_DOMAIN
from akacdn.devnet.supervisor import Devnet

CORPUS = Path(__file__).parent / "corpus" / "dns"
SEED = int(os.environ.get("AKACDN_FUZZ_SEED", "20260601"))
UDP_PACKETS = 100_000  # split between the TLNS and the LLNS
UDP_FLOWS = 4  # sockets per server, each from its own /24
WINDOW = 24  # in-flight queries per socket: 4 x 24 stays well inside the server's socket buffer
REPLY_WAIT = 0.25  # a query with no reply by then is taken as dropped (by design, or by RRL)
TCP_CONNECTIONS = 400  # split between the servers, 1-12 frames each
EXAMPLES = 3  # failing packets shown per kind of failure
DUMP = os.environ.get("AKACDN_FUZZ_DUMP")  # a file to append every failure to (kind, tab, packets)

NOERROR, FORMERR = dns.rcode.NOERROR, dns.rcode.FORMERR
NXDOMAIN, NOTIMP, REFUSED, BADVERS = dns.rcode.NXDOMAIN, dns.rcode.NOTIMP, dns.rcode.REFUSED, dns.rcode.BADVERS
CHAOS_NAMES = {dns.name.from_text(n) for n in ("hostname.bind", "id.server", "version.bind", "version.server")}
EDNS_BUFFER = 1232
OPT_RR = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"  # root, OPT, 1232, version 0, no options


# --- the oracle: what dnspython says of a query, and what may come back ----------------------


@dataclass(frozen=True)
class Server:
    name: str  # machine id
    identity: str  # NSID and hostname.bind
    address: str
    zones: tuple[dns.name.Name, ...]  # names at or under these: NOERROR or NXDOMAIN


@dataclass
class Expect:
    allowed: frozenset[int] | None  # full rcodes that are correct; None: the packet must not be answered
    why: str  # dnspython's verdict, for grouping failures
    query: dns.message.Message | None = None  # as dnspython reads it, when the server must too
    asked_ecs: bool = False  # one well-formed client-subnet option: the reply must echo it
    asked_nsid: bool = False
    skipped: tuple[str, ...] = ()  # what dnspython refused where the server is documented lenient


def parse(wire: bytes, question_only: bool = False) -> dns.message.Message:
    """dnspython's reading of a message. TSIG is read, not verified. An UPDATE is read as a
    QUERY: dnspython applies RFC 2136's section rules to it (zone type SOA...), which a
    server that does not implement UPDATE has no reason to check before saying NOTIMP."""
    if len(wire) > 2 and (wire[2] >> 3) & 0xF == dns.opcode.UPDATE:
        wire = wire[:2] + bytes([wire[2] & 0x87]) + wire[3:]
    return dns.message.from_wire(wire, keyring=False, question_only=question_only)


class HeaderPointer(dns.exception.FormError):
    """A compression pointer into the header (offset < 12) in a name the server reads."""


def _into_header(wire: bytes, i: int) -> bool:
    """Whether the name at i (one dnspython read: its pointers go strictly backwards) follows
    a pointer into the header."""
    while wire[i]:
        if wire[i] >= 0xC0:
            i = ((wire[i] & 0x3F) << 8) | wire[i + 1]
            if i < 12:
                return True
        else:
            i += wire[i] + 1
    return False


_NAME, _RDATA, _OPTION = dns.name.from_wire_parser, dns.rdata.from_wire_parser, dns.edns.option_from_wire_parser


class Lenient:
    """dnspython reading a query as the server is documented to (akacdn/dns/wire.py): every
    name it reads (question, record owners) must not point into the header; the RDATA of
    records other than the OPT is skipped by RDLENGTH; EDNS options other than the
    client subnet and the cookie are skipped by their length. What dnspython would have
    refused in skipped bytes is named in `skipped` (the documented leniency, and nothing
    else); a client-subnet or cookie option dnspython refuses is named in `bad_ecs` /
    `bad_cookie` and read as an opaque option, for the caller to rank against the other
    errors."""

    def __init__(self) -> None:
        self.skipped: list[str] = []
        self.bad_ecs: list[str] = []
        self.bad_cookie: list[str] = []
        self.inside = 0  # > 0 while dnspython reads skipped bytes (names there are not the server's)

    def read(self, wire: bytes, question_only: bool = False) -> dns.message.Message:
        dns.name.from_wire_parser, dns.rdata.from_wire_parser = self._name, self._rdata  # type: ignore[assignment]
        dns.edns.option_from_wire_parser = self._option  # type: ignore[assignment]
        try:
            return parse(wire, question_only)
        finally:
            dns.name.from_wire_parser, dns.rdata.from_wire_parser = _NAME, _RDATA  # type: ignore[assignment]
            dns.edns.option_from_wire_parser = _OPTION  # type: ignore[assignment]

    def _name(self, parser: dns.wire.Parser, decompress: bool = True) -> dns.name.Name:
        start = parser.current
        name = _NAME(parser, decompress)
        if not self.inside and _into_header(parser.wire, start):
            raise HeaderPointer
        return name

    def _rdata(self, rdclass, rdtype, parser: dns.wire.Parser, origin=None):  # type: ignore[no-untyped-def]
        if rdtype == dns.rdatatype.OPT:
            return _RDATA(rdclass, rdtype, parser, origin)
        start, data = parser.current, parser.get_remaining()
        strict = dns.wire.Parser(parser.wire, start)  # dnspython's own reading, only to name what it refuses
        self.inside += 1
        try:
            with strict.restrict_to(len(data)):
                _RDATA(rdclass, rdtype, strict, origin)
        except Exception as e:
            self.skipped.append(f"RDATA of a {dns.rdatatype.to_text(rdtype)} record: {type(e).__name__}")
        finally:
            self.inside -= 1
        return dns.rdata.GenericRdata(rdclass, rdtype, data)

    def _option(self, otype, parser: dns.wire.Parser) -> dns.edns.Option:  # type: ignore[no-untyped-def]
        start = parser.current
        problem = None
        self.inside += 1
        try:
            option = _OPTION(otype, parser)
            if parser.current != parser.end:
                problem = "FormError (bytes left)"
        except Exception as e:
            problem = type(e).__name__
        finally:
            self.inside -= 1
        if problem is None:
            return option
        if otype == dns.edns.OptionType.ECS:
            self.bad_ecs.append(problem)
        elif otype == dns.edns.OptionType.COOKIE:
            self.bad_cookie.append(problem)
        else:
            self.skipped.append(f"unused EDNS option {dns.edns.OptionType.to_text(otype)}: {problem}")
        parser.seek(start)
        return dns.edns.GenericOption(otype, parser.get_remaining())


def expect(wire: bytes, server: Server) -> Expect:
    """What may answer `wire`, by the contract of akacdn/dns/wire.py: a query the server must
    refuse to read gets FORMERR; then, in order, BADVERS for EDNS version > 0, FORMERR for a
    malformed cookie, NOTIMP for an opcode other than QUERY, FORMERR for a question count
    other than 1 or a malformed client subnet; else the answer."""
    if len(wire) < 12:
        return Expect(None, "runt")
    if wire[2] & 0x80:
        return Expect(None, "response")
    reader = Lenient()
    try:
        m = reader.read(wire)
    except HeaderPointer:
        return Expect(frozenset({FORMERR}), "compression pointer into the header")
    except Exception as e:
        try:
            Lenient().read(wire, question_only=True)
            where = "after the question"
        except Exception:
            where = "in header or question"
        return Expect(frozenset({FORMERR}), f"dnspython: {type(e).__name__} {where}", skipped=tuple(reader.skipped))
    skipped = tuple(reader.skipped)
    nsid = any(o.otype == dns.edns.OptionType.NSID for o in m.options)
    ecs = ecs_of(m)
    asked_ecs = len(ecs) == 1
    if m.edns > 0:  # before anything in the options: their format is the version's
        return Expect(frozenset({BADVERS}), "parsed, error: BADVERS", m, skipped=skipped)
    if reader.bad_cookie:  # refused by the strict parser, like a truncated option (no question or OPT to check)
        return Expect(frozenset({FORMERR}), f"malformed cookie: {reader.bad_cookie[0]}", skipped=skipped)
    if (wire[2] >> 3) & 0xF != dns.opcode.QUERY:
        return Expect(frozenset({NOTIMP}), "parsed, error: NOTIMP", m, skipped=skipped)
    if struct.unpack("!H", wire[4:6])[0] != 1:
        return Expect(frozenset({FORMERR}), "parsed, error: FORMERR (question count)", m, skipped=skipped)
    # RFC 7871 7.1.1: a malformed option, a non-zero scope in a query, or two of them
    if reader.bad_ecs or len(ecs) > 1 or any(o.scopelen != 0 for o in ecs):
        return Expect(frozenset({FORMERR}), "parsed, error: FORMERR (client subnet)", m, skipped=skipped)
    q = m.question[0]
    if q.rdclass == dns.rdataclass.IN:
        inside = any(q.name.is_subdomain(z) for z in server.zones)
        rcodes = frozenset({NOERROR, NXDOMAIN} if inside else {REFUSED})
        return Expect(rcodes, f"parsed, {'in' if inside else 'out of'} zone", m, asked_ecs, nsid, skipped)
    if q.rdclass == dns.rdataclass.CH:
        known = q.name in CHAOS_NAMES and q.rdtype in (dns.rdatatype.TXT, dns.rdatatype.ANY)
        return Expect(frozenset({NOERROR} if known else {REFUSED}), "parsed, chaos", m, asked_ecs, nsid, skipped)
    return Expect(frozenset({REFUSED}), "parsed, other class", m, asked_ecs, nsid, skipped)


def ecs_of(m: dns.message.Message) -> list[dns.edns.ECSOption]:
    return [o for o in m.options if isinstance(o, dns.edns.ECSOption)]


def check(wire: bytes, reply: bytes, server: Server, udp: bool, exp: Expect | None = None) -> tuple[str, str] | None:
    """None when `reply` is a correct answer to `wire`; else (what is wrong, dnspython's view of the query)."""
    exp = exp or expect(wire, server)
    if exp.allowed is None:
        return f"answered a {exp.why} (must be dropped)", exp.why
    try:
        r = parse(reply)
    except Exception as e:
        return f"reply unparsable by dnspython: {type(e).__name__}", exp.why
    (qid, qflags), (rid, rflags) = struct.unpack("!HH", wire[:4]), struct.unpack("!HH", reply[:4])
    if rid != qid:
        return "reply ID differs", exp.why
    if r.rcode() not in exp.allowed:  # the full rcode: BADVERS is 0 in the header, 1 in the OPT
        allowed = "/".join(dns.rcode.to_text(c) for c in sorted(exp.allowed))
        return f"rcode {rcode_of(reply)}, expected {allowed}", exp.why
    if not rflags & dns.flags.QR or rflags & dns.flags.RA:
        return "QR=0 or RA=1", exp.why
    for what, bits in (("opcode", 0x7800), ("RD", dns.flags.RD), ("CD", dns.flags.CD)):
        if rflags & bits != qflags & bits:
            return f"{what} not copied", exp.why
    if rflags & dns.flags.TC:
        # too big for the client, or an RRL slip (rrl.truncated): the flags, question and OPT of
        # the full reply, no other record; never over TCP
        if not udp:
            return "TC=1 over TCP", exp.why
        if exp.query is None:
            return "TC=1 in a reply to a query that must not be read", exp.why
        if r.answer or r.authority or r.additional:
            return "TC=1 reply with records besides the question and OPT", exp.why
    m = exp.query
    limit = 512
    if m is not None:
        # the question kept; a query with a question count other than 1 gets none back
        if len(m.question) == 1 and r.question != m.question:
            return "question not kept", exp.why
        if len(m.question) != 1 and r.question:
            return "question section in a reply to a query without exactly one question", exp.why
        if (r.edns >= 0) != (m.edns >= 0):
            return "OPT in reply to a query without" if r.edns >= 0 else "OPT missing from reply", exp.why
        if r.edns >= 0 and (r.edns != 0 or r.payload != EDNS_BUFFER):
            return f"reply OPT version {r.edns} buffer {r.payload}", exp.why
        if r.edns >= 0 and r.ednsflags & dns.flags.DO != m.ednsflags & dns.flags.DO:
            return "DO not copied", exp.why
        asked, got = ecs_of(m), ecs_of(r)
        if got and (
            len(asked) != 1
            or (got[0].family, got[0].srclen, got[0].address)
            != (
                asked[0].family,
                asked[0].srclen,
                asked[0].address,
            )
        ):
            return "client-subnet in reply is not the query's", exp.why
        nsid = [o for o in r.options if o.otype == dns.edns.OptionType.NSID]
        if nsid and nsid[0].to_wire() != server.identity.encode():
            return "NSID is not our identity", exp.why
        answered = r.edns >= 0 and r.rcode() in (NOERROR, NXDOMAIN, REFUSED)
        if answered and exp.asked_ecs and not got:
            return "client-subnet asked, not echoed", exp.why
        if answered and exp.asked_nsid and not nsid:
            return "NSID asked, not given", exp.why
        if m.edns >= 0:
            limit = max(512, min(m.payload, EDNS_BUFFER))
    if udp and len(reply) > limit:
        return f"UDP reply of {len(reply)} bytes over the client's {limit}", exp.why
    return None


def rcode_of(reply: bytes) -> str:
    """The reply's full rcode (with the OPT's extended bits), +TC when truncated."""
    if len(reply) < 4:
        return "short"
    try:
        rcode = parse(reply).rcode()
    except Exception:
        rcode = dns.rcode.Rcode(reply[3] & 0xF)
    return dns.rcode.to_text(rcode) + ("+TC" if reply[2] & 0x02 else "")


# --- packets -----------------------------------------------------------------------------------


@dataclass
class Seed:
    wire: bytes
    qname: tuple[int, int] | None  # [start, end) of the first question's name
    opt: int | None  # offset of the OPT RR


def _skip_name(w: bytes, i: int) -> int:
    while w[i]:
        if w[i] >= 0xC0:
            return i + 2
        i += w[i] + 1
    return i + 1


def load_seed(wire: bytes) -> Seed:
    qd, an, ns, ar = struct.unpack("!HHHH", wire[4:12])
    i, qname, opt = 12, None, None
    for n in range(qd):
        end = _skip_name(wire, i)
        if n == 0:
            qname = (i, end)
        i = end + 4
    for n in range(an + ns + ar):
        start, i = i, _skip_name(wire, i)
        rtype, _, _, rdlen = struct.unpack("!HHIH", wire[i : i + 10])
        if rtype == 41 and n >= an + ns:
            opt = start
        i += 10 + rdlen
    return Seed(wire, qname, opt)


def test_corpus_matches_its_generator() -> None:
    spec = importlib.util.spec_from_file_location("make_dns_corpus", CORPUS.parent / "make_dns_corpus.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert {p.name: p.read_bytes() for p in CORPUS.glob("*.bin")} == gen.build(), "run make_dns_corpus.py"
    for wire in gen.build().values():
        dns.message.from_wire(wire, keyring=False)  # every seed is a real, well-formed message


def load_corpus() -> list[Seed]:
    files = sorted(CORPUS.glob("*.bin"))
    assert len(files) >= 50, f"corpus missing: run {CORPUS.parent / 'make_dns_corpus.py'}"
    return [load_seed(p.read_bytes()) for p in files]


def _bump(w: bytearray, count: int, by: int = 1) -> None:
    off = 4 + 2 * count  # 0 qd, 1 an, 2 ns, 3 ar
    w[off : off + 2] = struct.pack("!H", (struct.unpack("!H", w[off : off + 2])[0] + by) & 0xFFFF)


class Fuzzer:
    """Seeded generator of hostile packets: corpus mutations, random queries, garbage."""

    INTERESTING = (0x00, 0x01, 0x3F, 0x40, 0x41, 0x7F, 0x80, 0xBF, 0xC0, 0xC1, 0xFE, 0xFF)

    def __init__(self, seeds: list[Seed], rnd: random.Random) -> None:
        self.seeds = seeds
        self.rnd = rnd
        self.kinds: Counter[str] = Counter()
        self.structural: list[Callable[[Seed], bytearray]] = [
            self.counts,
            self.pointer,
            self.label_length,
            self.header,
            self.edns,
            self.edns,
            self.ecs,
            self.ecs,
        ]
        self.bytewise: list[Callable[[bytearray], bytearray]] = [
            self.flip,
            self.set_bytes,
            self.insert,
            self.delete,
            self.truncate,
            self.splice,
        ]

    def batch(self) -> list[bytes]:
        """Mostly one packet; sometimes a lower-cased twin then the packet (the fast path keys
        answers on lower-cased bytes), or a burst of one packet (past RRL's per-second budget)."""
        r = self.rnd.random()
        w = self.packet()
        if r < 0.03:
            twin = w[:2] + w[2:].lower()
            if twin != w:
                self.kinds["case twins"] += 1
                return [twin, w]
        elif r < 0.033:
            self.kinds["bursts"] += 1
            return [w] * self.rnd.randint(55, 90)
        return [w]

    def packet(self) -> bytes:
        r = self.rnd.random()
        if r < 0.05:
            self.kinds["seed"] += 1
            return self.rnd.choice(self.seeds).wire
        if r < 0.10:
            self.kinds["garbage"] += 1
            return self.rnd.randbytes(self.rnd.choice([0, 1, 2, 11, 12, 13, self.rnd.randrange(701)]))
        if r < 0.25:
            self.kinds["random query"] += 1
            return self.random_query()
        seed = self.rnd.choice(self.seeds)
        self.kinds["mutation"] += 1
        if self.rnd.random() < 0.6:
            w = self.rnd.choice(self.structural)(seed)
            rounds = self.rnd.choice([0, 0, 1, 2])
        else:
            w = bytearray(seed.wire)
            rounds = self.rnd.randint(1, 4)
        for _ in range(rounds):
            w = self.rnd.choice(self.bytewise)(w)
        return bytes(w)

    # byte-level mutations
    def flip(self, w: bytearray) -> bytearray:
        for _ in range(self.rnd.randint(1, 8)):
            if w:
                w[self.rnd.randrange(len(w))] ^= 1 << self.rnd.randrange(8)
        return w

    def set_bytes(self, w: bytearray) -> bytearray:
        for _ in range(self.rnd.randint(1, 4)):
            if w:
                v = self.rnd.choice(self.INTERESTING) if self.rnd.random() < 0.5 else self.rnd.randrange(256)
                w[self.rnd.randrange(len(w))] = v
        return w

    def insert(self, w: bytearray) -> bytearray:
        i = self.rnd.randrange(len(w) + 1)
        n = self.rnd.randint(1, 16)
        w[i:i] = (
            bytes(self.rnd.choice(self.INTERESTING) for _ in range(n))
            if self.rnd.random() < 0.3
            else self.rnd.randbytes(n)
        )
        return w

    def delete(self, w: bytearray) -> bytearray:
        if w:
            i = self.rnd.randrange(len(w))
            del w[i : i + self.rnd.randint(1, 8)]
        return w

    def truncate(self, w: bytearray) -> bytearray:
        return w[: self.rnd.randrange(len(w) + 1)]

    def splice(self, w: bytearray) -> bytearray:
        other = self.rnd.choice(self.seeds).wire
        return w[: self.rnd.randrange(len(w) + 1)] + other[self.rnd.randrange(len(other) + 1) :]

    # structural mutations (know where the name and the OPT are)
    def counts(self, s: Seed) -> bytearray:
        w = bytearray(s.wire)
        for _ in range(self.rnd.randint(1, 2)):
            off = 4 + 2 * self.rnd.randrange(4)
            v = self.rnd.choice([0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, self.rnd.randrange(65536)])
            w[off : off + 2] = struct.pack("!H", v)
        return w

    def pointer(self, s: Seed) -> bytearray:
        w = bytearray(s.wire)
        if s.qname is None:
            return self.counts(s)
        a, b = s.qname
        forms = [
            b"\xc0\x0c",  # points at itself
            b"\x01a\xc0\x0c",  # a label, then back to the start: a loop through a label
            b"\xc0\x0e\xc0\x0c",  # two pointers that point at each other
            b"\xc0" + bytes([self.rnd.randrange(12, 256)]),  # forward, or past the end
            b"\xc0" + bytes([self.rnd.randrange(12)]),  # into the header
            bytes([0xC0 | self.rnd.randrange(64), self.rnd.randrange(256)]),  # anywhere
            b"\x03www\xc0\x0c",
        ]
        w[a:b] = self.rnd.choice(forms)
        if s.opt is not None and self.rnd.random() < 0.2:  # also make the OPT's owner a pointer
            opt = s.opt + (len(w) - len(s.wire))
            w[opt : opt + 1] = b"\xc0\x0c"
        return w

    def label_length(self, s: Seed) -> bytearray:
        w = bytearray(s.wire)
        if s.qname is None:
            return self.counts(s)
        a, b = s.qname
        length = self.rnd.randint(64, 255)
        offsets, i = [], a  # the name's length bytes
        while i < b - 1:
            offsets.append(i)
            i += w[i] + 1
        if offsets and self.rnd.random() < 0.5:  # overwrite one
            w[self.rnd.choice(offsets)] = length
        else:  # insert a label that long (its bytes really there)
            w[a:a] = bytes([length]) + bytes(self.rnd.choice(b"abcxyz-_") for _ in range(length))
        return w

    def header(self, s: Seed) -> bytearray:
        w = bytearray(s.wire)
        flags = struct.unpack("!H", w[2:4])[0]
        choice = self.rnd.randrange(4)
        if choice == 0:
            flags = (flags & ~0x7800) | (self.rnd.randrange(16) << 11)  # opcode
        elif choice == 1:
            flags ^= 1 << self.rnd.randrange(16)
        elif choice == 2:
            flags = (flags & ~0xF) | self.rnd.randrange(16)  # rcode in a query
        else:
            flags = self.rnd.randrange(65536)
        w[2:4] = struct.pack("!H", flags)
        return w

    def _with_opt(self, s: Seed) -> tuple[bytearray, int]:
        w = bytearray(s.wire)
        if s.opt is not None:
            return w, s.opt
        _bump(w, 3)
        return w + OPT_RR, len(w)

    def edns(self, s: Seed) -> bytearray:
        w, o = self._with_opt(s)
        # OPT: owner o, type o+1, class (buffer) o+3, ttl: ext rcode o+5, version o+6, flags o+7, rdlen o+9
        choice = self.rnd.randrange(8)
        if choice == 0:
            w[o + 6] = self.rnd.choice([1, 2, 0xFF, self.rnd.randrange(256)])
        elif choice == 1:
            w[o + 5] = self.rnd.randrange(1, 256)
        elif choice == 2:
            w[o + 3 : o + 5] = struct.pack("!H", self.rnd.choice([0, 1, 511, 512, 513, 1232, 4096, 65535]))
        elif choice == 3:
            w[o + 7 : o + 9] = self.rnd.randbytes(2)
        elif choice == 4:  # lying rdlen
            rdlen = struct.unpack("!H", w[o + 9 : o + 11])[0]
            w[o + 9 : o + 11] = struct.pack("!H", max(0, min(65535, rdlen + self.rnd.choice([-4, -1, 1, 3, 300]))))
        elif choice == 5:  # an option, its length maybe lying
            data = self.rnd.randbytes(self.rnd.randrange(12))
            olen = len(data) + self.rnd.choice([0, 0, 0, -1, 1, 200])
            code = self.rnd.choice([3, 8, 10, 12, 15, 0, 65535, self.rnd.randrange(65536)])
            self._add_option(w, o, struct.pack("!HH", code, max(0, olen)) + data)
        elif choice == 6:  # a second OPT
            _bump(w, 3)
            w += OPT_RR
        else:  # an OPT whose owner is not the root
            w[o : o + 1] = b"\x01x\x00"
        return w

    def ecs(self, s: Seed) -> bytearray:
        w, o = self._with_opt(s)
        family = self.rnd.choice([1, 1, 2, 2, 0, 3])
        bits = 32 if family == 1 else 128
        source = self.rnd.choice([0, 8, 24, 25, 32, 48, 56, 64, 128, bits, bits + 1, self.rnd.randrange(256)])
        scope = self.rnd.choice([0, 0, 0, 24, self.rnd.randrange(256)])
        addrlen = (source + 7) // 8
        if self.rnd.random() < 0.3:
            addrlen = max(0, addrlen + self.rnd.choice([-1, 1, 2]))
        addr = bytearray(self.rnd.randbytes(min(addrlen, 40)))
        if addr and source % 8 and self.rnd.random() < 0.7:
            addr[-1] &= (0xFF << (8 - source % 8)) & 0xFF  # mostly well padded
        data = struct.pack("!HBB", family, min(source, 255), scope) + bytes(addr)
        for _ in range(2 if self.rnd.random() < 0.1 else 1):
            self._add_option(w, o, struct.pack("!HH", 8, len(data)) + data)
        return w

    def _add_option(self, w: bytearray, o: int, option: bytes) -> None:
        rdlen = struct.unpack("!H", w[o + 9 : o + 11])[0]
        end = o + 11 + rdlen
        w[end:end] = option
        w[o + 9 : o + 11] = struct.pack("!H", min(65535, rdlen + len(option)))

    # well-formed (mostly) queries with unusual contents
    def random_query(self) -> bytes:
        rnd = self.rnd
        suffixes = [
            f"g.{BASE_DOMAIN}",
            BASE_DOMAIN,
            "",
            "example.com",
            "bind",
            "test",
            f"x{BASE_DOMAIN}",
        ]
        suffix = rnd.choice(suffixes)
        labels = [x.encode() for x in suffix.split(".") if x]
        prefixes = [[], [b"a123"], [b"whoami"], [b"n3g"], [b"za"], [b"A999"], [b"_"], [b"hostname"], [b"version"]]
        labels = list(rnd.choice(prefixes)) + labels
        alphabet = [b"abcdefghijklmnopqrstuvwxyz0123456789-", b"ABCxyz_*.\\ ", bytes(range(256))]
        for _ in range(rnd.choice([0, 0, 0, 1, 2, 5])):
            n = rnd.choice([1, 2, 10, 63, rnd.randint(1, 63)])
            chars = rnd.choice(alphabet)
            labels.insert(0, bytes(rnd.choice(chars) for _ in range(n)))
        name = b"".join(bytes([len(x)]) + x for x in labels) + b"\x00"
        while len(name) > 255:
            labels.pop(0)
            name = b"".join(bytes([len(x)]) + x for x in labels) + b"\x00"
        qtype = rnd.choice([1, 28, 255, 2, 6, 16, 5, 43, 48, 65, 252, 251, 41, 250, 0, rnd.randrange(65536)])
        qclass = rnd.choice([1, 1, 1, 1, 3, 4, 254, 255, 0, rnd.randrange(65536)])
        flags = rnd.choice([0x0100, 0x0000, 0x0110, 0x0120, 0x0130]) | rnd.choice([0, 0, 0, 0x0040])
        wire = bytearray(struct.pack("!HHHHHH", 0, flags, 1, 0, 0, 0) + name + struct.pack("!HH", qtype, qclass))
        if rnd.random() < 0.6:
            _bump(wire, 3)
            opt = len(wire)
            wire += OPT_RR
            wire[opt + 3 : opt + 5] = struct.pack("!H", rnd.choice([512, 1232, 4096, 65535, 100]))
            wire[opt + 7] = rnd.choice([0, 0x80])  # DO
            options = [
                b"\x00\x03\x00\x00",  # NSID
                b"\x00\x0a\x00\x08" + rnd.randbytes(8),  # client cookie
                struct.pack("!HH", rnd.randrange(65000, 65536), 2) + rnd.randbytes(2),
                b"\x00\x0c\x00\x04\x00\x00\x00\x00",  # padding
            ]
            for opt_bytes in rnd.sample(options, rnd.randint(0, 3)):
                self._add_option(wire, opt, opt_bytes)
            if rnd.random() < 0.5:  # a valid client subnet
                family, source = rnd.choice([(1, rnd.randint(0, 32)), (2, rnd.randint(0, 128))])
                addr = bytearray(rnd.randbytes((source + 7) // 8))
                if source % 8:
                    addr[-1] &= (0xFF << (8 - source % 8)) & 0xFF
                self._add_option(wire, opt, struct.pack("!HHHBB", 8, 4 + len(addr), family, source, 0) + addr)
        return bytes(wire)


# --- UDP: a few sockets, a bounded window each -------------------------------------------------


@dataclass
class Flow:
    sock: socket.socket
    server: Server
    first_id: int  # packet i has ID first_id + i: an ID names one packet among all flows to a server
    packets: list[bytes]
    next: int = 0
    inflight: dict[int, float] = field(default_factory=dict)
    replies: list[tuple[bytes, tuple[str, int]]] = field(default_factory=list)  # (reply, from address)

    def index(self, reply: bytes) -> int | None:
        """The index of the packet of this flow whose ID the reply carries, if any."""
        if len(reply) < 2:
            return None
        i = struct.unpack("!H", reply[:2])[0] - self.first_id
        return i if 0 <= i < len(self.packets) else None


def with_id(wire: bytes, i: int) -> bytes:
    return struct.pack("!H", i) + wire[2:] if len(wire) >= 2 else wire


def blast_udp(flows: list[Flow], port: int, alive: Callable[[], bool]) -> float:
    """Send every flow's packets, at most WINDOW awaiting a reply per socket; returns seconds taken.
    Stops early when `alive()` (asked once a second) says the servers are gone."""
    sel = selectors.DefaultSelector()
    for f in flows:
        f.sock.setblocking(False)
        sel.register(f.sock, selectors.EVENT_READ, f)
    start = last_check = time.monotonic()
    while True:
        now = time.monotonic()
        if now - last_check > 1:
            last_check = now
            if not alive():
                break
        busy = False
        for f in flows:
            for i in [i for i, t in f.inflight.items() if now - t > REPLY_WAIT]:
                del f.inflight[i]
            while len(f.inflight) < WINDOW and f.next < len(f.packets):
                wire = f.packets[f.next]
                try:
                    f.sock.sendto(wire, (f.server.address, port))
                except (BlockingIOError, ConnectionRefusedError):  # refused: ICMP from an earlier send
                    break
                if len(wire) >= 12 and not wire[2] & 0x80:  # runts and responses get no reply: no wait
                    f.inflight[f.next] = now
                f.next += 1
            busy = busy or f.next < len(f.packets) or bool(f.inflight)
        if not busy:
            break
        for key, _ in sel.select(timeout=0.02):
            f = key.data
            while True:
                try:
                    data, addr = f.sock.recvfrom(65535)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                f.replies.append((data, addr))
                i = f.index(data)
                if i is not None:  # a server answers one socket's datagrams in order: all before i are done
                    for j in [j for j in f.inflight if j <= i]:
                        del f.inflight[j]
    taken = time.monotonic() - start
    deadline = time.monotonic() + 0.3  # late stragglers are still checked
    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.05):
            f = key.data
            try:
                f.replies.append(f.sock.recvfrom(65535))
            except (BlockingIOError, ConnectionRefusedError):
                pass
    sel.close()
    return taken


# --- TCP: pipelined frames, lying prefixes, connections cut mid-message ------------------------


def frames_seen(stream: bytes) -> list[bytes]:
    """The messages a server reading 2-byte length prefixes takes from `stream` (complete ones only)."""
    out, i = [], 0
    while i + 2 <= len(stream):
        (n,) = struct.unpack("!H", stream[i : i + 2])
        if i + 2 + n > len(stream):
            break
        out.append(stream[i + 2 : i + 2 + n])
        i += 2 + n
    return out


def tcp_stream(fz: Fuzzer, rnd: random.Random) -> tuple[bytes, str]:
    msgs = [with_id(fz.packet(), 0x8000 + k) for k in range(rnd.randint(1, 12))]
    style = rnd.choice(["honest", "honest", "lying-long", "lying-short", "cut-mid-message", "cut-in-prefix", "abort"])
    stream = bytearray()
    for k, m in enumerate(msgs):
        n = len(m)
        if style == "lying-short" and k == len(msgs) // 2:
            n = rnd.randrange(n + 1)
        elif style == "lying-long" and k == len(msgs) - 1:
            n = rnd.choice([n + 1, n + 100, 65535])
        stream += struct.pack("!H", n) + m
    if style == "cut-mid-message":
        m = fz.packet()
        stream += struct.pack("!H", len(m) + 1) + m[: rnd.randrange(len(m) + 1)]
    elif style == "cut-in-prefix":
        stream += b"\x00"
    return bytes(stream), style


def tcp_exchange(server: Server, port: int, stream: bytes, abort: bool, source: str) -> list[bytes] | None:
    """Send `stream`, half-close, read replies to EOF; None for an aborted connection (RST, no reading).
    A connection the server resets or refuses yields the replies read until then."""
    buf = bytearray()
    try:
        with socket.create_connection((server.address, port), timeout=5, source_address=(source, 0)) as s:
            s.sendall(stream)
            if abort:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return None
            s.shutdown(socket.SHUT_WR)
            while chunk := s.recv(65536):
                buf += chunk
    except (ConnectionError, TimeoutError):
        pass
    return None if abort else frames_seen(bytes(buf))


# --- the test ----------------------------------------------------------------------------------


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    replies: Counter[str] = field(default_factory=Counter)
    rcodes: Counter[str] = field(default_factory=Counter)
    verdicts: Counter[str] = field(default_factory=Counter)
    failures: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    failure_counts: Counter[str] = field(default_factory=Counter)

    def fail(self, key: str, example: str) -> None:
        self.failure_counts[key] += 1
        if DUMP:
            with open(DUMP, "a") as f:
                f.write(f"{key}\t{example}\n")
        if len(self.failures[key]) < EXAMPLES:
            self.failures[key].append(example)

    def report(self) -> str:
        lines = []
        for key, n in self.failure_counts.most_common():
            lines.append(f"{n:6d} x {key}")
            lines += [f"         {ex}" for ex in self.failures[key]]
        return "\n".join(lines)


def counted(devnet: Devnet, machine: str, transport: str, kind: str | None = None) -> float:
    labels = {"transport": transport} | ({"kind": kind} if kind else {})
    return devnet.metric(machine, "akacdn_dns_replies_total", **labels)


def rcvbuf_errors() -> int:
    for line in Path("/proc/net/snmp").read_text().splitlines():
        if line.startswith("Udp:") and "RcvbufErrors" not in line:
            return int(line.split()[5])
    return 0


def counted_rrl(devnet: Devnet, machine: str, action: str) -> float:
    return devnet.metric(machine, "akacdn_dns_rrl_total", action=action)


def server_log_errors(devnet: Devnet, machine: str) -> Counter[str]:
    """Exceptions that reached the event loop (Python tracebacks) and error-level log lines."""
    lines = (devnet.logs / f"{machine}.log").read_text(errors="replace").splitlines()
    found: Counter[str] = Counter()
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            j = i + 1
            while j < len(lines) and lines[j].startswith(" "):
                j += 1
            found[lines[j] if j < len(lines) else "Traceback"] += 1
        elif '"level":"error"' in line.replace(" ", ""):
            found[line[:160]] += 1
    return found


def answers_normally(servers: list[Server], port: int, source: str) -> list[str]:
    """What is wrong with each server's answer to a plain query, over UDP and TCP (nothing: [])."""
    wrong = []
    for server in servers:
        for how in (dns.query.udp, dns.query.tcp):
            q = dns.message.make_query(f"a123.g.{BASE_DOMAIN}", "A", use_edns=0)
            try:
                r = how(q, server.address, timeout=5, port=port, source=source)
            except Exception as e:
                wrong.append(f"{server.name} over {how.__name__}: {e!r}")
                continue
            if server.name.startswith("tlns"):  # a referral to 8 LLNS names
                ns = [rrset for rrset in r.authority if rrset.rdtype == dns.rdatatype.NS]
                ok = r.rcode() == NOERROR and len(ns) == 1 and len(ns[0]) == 8
            else:  # 2 edges
                addrs = [rd.address for rrset in r.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset]
                ok = r.rcode() == NOERROR and len(addrs) == 2
            if not ok:
                wrong.append(f"{server.name} over {how.__name__}: {r}")
    return wrong


def test_fuzz_nameservers(devnet: Devnet) -> None:
    t0 = time.monotonic()
    lay, port = devnet.layout, devnet.layout.dns_port
    base = dns.name.from_text(BASE_DOMAIN)
    subzones = tuple(dns.name.from_text(f"{s}.{BASE_DOMAIN}") for s in devnet.net.map_subzones)
    tlns = next(m for m in devnet.net.by_role("tlns") if m.address == lay.tlns[0])
    llns = next(m for m in devnet.net.by_role("llns") if m.address == lay.llns(1))
    nsid = devnet.net.dns.nsid
    servers = [
        Server(tlns.id, nsid or tlns.id, tlns.address, (base,)),
        Server(llns.id, nsid or llns.id, llns.address, subzones),
    ]
    rnd = random.Random(SEED)
    fz = Fuzzer(load_corpus(), rnd)
    tally = Tally()
    print(f"\nDNS fuzz, seed {SEED} (AKACDN_FUZZ_SEED to replay)")

    # our sockets speak from 127.<net>.200+k.7: one /24 per socket, none of them a devnet machine's
    def source(k: int) -> str:
        return lay.addr(200 + k, 7)

    before = {(s.name, t): counted(devnet, s.name, t) for s in servers for t in ("udp", "tcp")}
    formerr_before = {s.name: counted(devnet, s.name, "udp", "formerr") for s in servers}
    rrl_before = {(s.name, a): counted_rrl(devnet, s.name, a) for s in servers for a in ("drop", "slip")}
    drops_before = rcvbuf_errors()

    # UDP
    # after mutation, every packet (but those under 2 bytes) gets an ID no other packet to the
    # same server has: a reply (from that server's address) names the one packet it answers
    flows = []
    per_flow = UDP_PACKETS // (len(servers) * UDP_FLOWS)
    assert per_flow * UDP_FLOWS <= 1 << 16, "more packets per server than DNS IDs"
    for si, server in enumerate(servers):
        for k in range(UDP_FLOWS):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            sock.bind((source(si * UDP_FLOWS + k), 0))
            packets: list[bytes] = []
            while len(packets) < per_flow:
                packets += fz.batch()
            first = k * per_flow
            flows.append(Flow(sock, server, first, [with_id(w, first + i) for i, w in enumerate(packets[:per_flow])]))
    t_gen = time.monotonic() - t0
    taken = blast_udp(flows, port, lambda: not devnet.exited())
    for f in flows:
        f.sock.close()
    udp_sent = sum(len(f.packets) for f in flows)
    print(f"UDP: {udp_sent} packets in {taken:.1f}s ({udp_sent / taken:.0f}/s), generated in {t_gen:.1f}s")

    # TCP
    t1 = time.monotonic()
    tcp_frames = 0
    for c in range(TCP_CONNECTIONS):
        server = servers[c % len(servers)]
        stream, style = tcp_stream(fz, rnd)
        frames = frames_seen(stream)
        tcp_frames += len(frames)
        tally.sent[f"tcp {style}"] += 1
        got = tcp_exchange(server, port, stream, style == "abort", source(10 + c % 8))
        if got is None:
            continue
        # the server answers each frame in order, until one that must be dropped (then it may close)
        expected = []
        for fr in frames:
            if expect(fr, server).allowed is None:
                break
            expected.append(fr)
        for fr, reply in zip(expected, got, strict=False):
            tally.replies["tcp"] += 1
            tally.rcodes[f"tcp {rcode_of(reply)}"] += 1
            bad = check(fr, reply, server, udp=False)
            if bad:
                tally.fail(f"tcp: {bad[0]} [{bad[1]}]", f"{server.name} query {fr.hex()} reply {reply.hex()}")
        if len(got) != len(expected):
            tally.fail(
                f"tcp: {len(got)} replies to {len(expected)} answerable frames ({style})",
                f"{server.name} stream {stream.hex()}",
            )
    # then, per server, more connections reset by the client than its connection limit
    storm = devnet.net.dns.tcp_max_connections + 20
    for server in servers:
        for c in range(storm):
            tcp_exchange(server, port, b"\x00\x1d\xbe\xef", True, source(20 + c % 8))
    print(
        f"TCP: {TCP_CONNECTIONS} connections, {tcp_frames} complete frames,"
        f" then {storm} reset connections per server, in {time.monotonic() - t1:.1f}s"
    )

    # every UDP reply checked against the query it answers
    t2 = time.monotonic()
    owner: dict[tuple[str, int], int] = {}  # (server, ID) -> the flow that sent the packet
    for n, f in enumerate(flows):
        for wire in f.packets:
            if len(wire) >= 2:
                key = (f.server.name, struct.unpack("!H", wire[:2])[0])
                assert owner.setdefault(key, n) == n, f"ID {key} used by two flows"
    skipped: Counter[str] = Counter()
    for n, f in enumerate(flows):
        verdicts = [expect(wire, f.server) for wire in f.packets]
        tally.sent[f.server.name] += len(f.packets)
        tally.verdicts.update(v.why for v in verdicts)
        skipped.update(s for v in verdicts for s in set(v.skipped))
        seen: set[int] = set()
        for reply, addr in f.replies:
            tally.replies[f.server.name] += 1
            tally.rcodes[f"udp {rcode_of(reply)}"] += 1
            if addr != (f.server.address, port):
                tally.fail("udp: reply from an address we did not ask", f"{f.server.name} from {addr} {reply.hex()}")
                continue
            i = f.index(reply)
            if i is None or len(f.packets[i]) < 2:
                qid = struct.unpack("!H", reply[:2])[0] if len(reply) >= 2 else None
                m = owner.get((f.server.name, qid)) if qid is not None else None
                if m is not None:  # the ID is another socket's packet's: provably astray
                    query = next(w for w in flows[m].packets if w[:2] == reply[:2])
                    tally.fail(
                        "udp: reply sent to the wrong client (its ID is another socket's query)",
                        f"{f.server.name} query {query.hex()} (socket {m}, reply on socket {n}) reply {reply.hex()}",
                    )
                else:
                    tally.fail("udp: reply to no query we sent", f"{f.server.name} reply {reply.hex()}")
                continue
            bad = check(f.packets[i], reply, f.server, udp=True, exp=verdicts[i])
            if i in seen:
                bad = ("two replies to one query", "")
            seen.add(i)
            if bad:
                example = f"{f.server.name} query {f.packets[i].hex()} reply {reply.hex()}"
                tally.fail(f"udp: {bad[0]} [{bad[1]}]" if bad[1] else f"udp: {bad[0]}", example)
    print(f"checked in {time.monotonic() - t2:.1f}s")

    # alive, answering, every datagram counted, nothing escaped to the event loop
    exited = devnet.exited()
    answers = answers_normally(servers, port, source(50)) if not exited else ["not checked: processes died"]
    kernel_drops = rcvbuf_errors() - drops_before
    per_server = Counter(f.server.name for f in flows for _ in f.packets)

    def udp_counted() -> dict[str, float]:
        return {s.name: counted(devnet, s.name, "udp") - before[(s.name, "udp")] for s in servers}

    deadline = time.monotonic() + 5
    while any(n < per_server[s] + 1 - kernel_drops for s, n in udp_counted().items()) and time.monotonic() < deadline:
        time.sleep(0.2)
    uncounted = {s: per_server[s] + 1 - n for s, n in udp_counted().items() if n < per_server[s] + 1 - kernel_drops}
    formerr = {s.name: counted(devnet, s.name, "udp", "formerr") - formerr_before[s.name] for s in servers}
    errors = {s.name: server_log_errors(devnet, s.name) for s in servers}

    print(f"generated: {dict(fz.kinds)}")
    print(f"tcp connections: {dict(sorted((k, v) for k, v in tally.sent.items() if k.startswith('tcp')))}")
    print(f"dnspython's view of the UDP queries: {dict(tally.verdicts.most_common())}")
    print(f"refused by dnspython where the server is documented lenient (UDP queries): {dict(skipped.most_common())}")
    print(f"replies: {dict(tally.replies)}; by rcode: {dict(sorted(tally.rcodes.items()))}")
    for s in servers:
        rrl = {a: counted_rrl(devnet, s.name, a) - rrl_before[(s.name, a)] for a in ("drop", "slip")}
        print(
            f"{s.name}: udp counted +{udp_counted()[s.name]:.0f} (sent {per_server[s.name]} + 1 check),"
            f" formerr +{formerr[s.name]:.0f}, rrl {rrl},"
            f" tcp counted +{counted(devnet, s.name, 'tcp') - before[(s.name, 'tcp')]:.0f},"
            f" log errors {dict(errors[s.name].most_common(5))}"
        )
    print(f"kernel UDP receive-buffer drops during the run: {kernel_drops}; total {time.monotonic() - t0:.1f}s")
    if tally.failure_counts:
        print("FAILURES:\n" + tally.report())

    assert not exited, f"nameserver processes died: {exited}"
    assert not answers, f"not answering normally after the fuzz: {answers}"
    assert all(n > 0 for n in formerr.values()), f"no FORMERR counted: {formerr}"
    assert not uncounted, f"UDP datagrams not counted in akacdn_dns_replies_total: {uncounted}"
    assert not any(errors.values()), f"errors in the server logs: {errors}"
    assert not tally.failure_counts, "replies that break the contract:\n" + tally.report()
