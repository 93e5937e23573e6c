"""The answer pipeline around a zone's pure answer function (the slow path, dnslib).

validate -> EDNS (version, NSID, ECS) -> CHAOS -> zone answer -> OPT -> truncate.

Error contract: `respond(data, source, answer, identity, max_udp)` never raises.
Fewer than 12 bytes, and responses (QR=1), are dropped. A message `query.parse_query`
refuses (see there: trailing bytes, a misplaced or second OPT, a truncated option...)
gets a header-only FORMERR. Then, in order: EDNS version > 0 gets BADVERS; a malformed
cookie (RFC 7873) gets FORMERR; other opcodes get NOTIMP; anything but one question, or a
malformed client-subnet option, gets FORMERR; any unexpected exception in the answer logic becomes SERVFAIL (kind
"bug"). Deliberately lenient: the contents of records other than the question and the
OPT (their RDATA is skipped by length), and EDNS options we do not use (EDE, padding).
Deliberately strict: a compression pointer into the header (no name lives there).
Every reply has AA per the zone, RA=0, RD and CD copied, the question kept, and an OPT
record (buffer 1232, DO copied, NSID and client-subnet when asked) when the query had
one; a UDP reply too big for the client's buffer goes out with TC=1, question and OPT
kept.

`Reply.varies` tells the fast path what the reply depends on beyond the query bytes:
"none", "bucket" (the source's /24 or /56) or "source" (exact address: not cached).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from typing import NamedTuple

from dnslib import CLASS, EDNS0, QTYPE, RCODE, RR, TXT, DNSHeader, DNSLabel, DNSQuestion, DNSRecord, EDNSOption

from .ecs import ECS_CODE, NSID_CODE, ClientSubnet, EcsError, ecs_reply, parse_ecs
from .packed import Packed, opt_record, splice
from .query import Query, QueryError, parse_query

EDNS_BUFFER = 1232
BADVERS = 16
VERSION = "akacdn 0.1"
COOKIE_CODE = 10
CACHEABLE = frozenset({"answer", "referral", "nxdomain", "nodata", "chaos", "refused", "no_map"})


class Client(NamedTuple):
    source: str  # the address the query came from (the resolver)
    subnet: ClientSubnet | None  # the EDNS client subnet, when sent with a source prefix > 0

    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """Whom to map: the client subnet when given, else the resolver."""
        if self.subnet is not None:
            return self.subnet.network().network_address
        return ipaddress.ip_address(self.source)


class Answer(NamedTuple):
    rcode: int
    aa: bool
    answer: list[RR]
    authority: list[RR]
    additional: list[RR]
    kind: str  # for counters: answer, referral, nxdomain, nodata, refused, servfail...
    scope: int = 0  # ECS scope prefix length when the answer depends on the client subnet
    varies: str = "none"  # none | bucket | source (see module docstring)
    packed: Packed | None = None  # the sections pre-packed (then the RR lists are not used)


class Reply(NamedTuple):
    data: bytes | None  # None: drop
    kind: str
    varies: str = "none"


AnswerFn = Callable[[DNSQuestion, Client], Answer]


def refused() -> Answer:
    return Answer(RCODE.REFUSED, False, [], [], [], "refused")


def _header_only(data: bytes, rcode: int) -> bytes | None:
    if len(data) < 12:
        return None
    qid, flags = struct.unpack("!HH", data[:4])
    if flags & 0x8000:
        return None  # never answer a response
    keep = flags & (0x7800 | 0x0100 | 0x0010)  # opcode, RD, CD
    return struct.pack("!HHHHHH", qid, 0x8000 | keep | rcode, 0, 0, 0, 0)


_CHAOS = {b"hostname.bind": "identity", b"id.server": "identity", b"version.bind": VERSION, b"version.server": VERSION}


def _chaos(q: DNSQuestion, identity: str) -> Answer:
    name = b".".join(q.qname.label).lower()
    text = _CHAOS.get(name)
    if text is not None and q.qtype in (QTYPE.TXT, QTYPE.ANY):
        rr = RR(q.qname, QTYPE.TXT, CLASS.CH, 0, TXT(identity if text == "identity" else text))
        return Answer(RCODE.NOERROR, True, [rr], [], [], "chaos")
    return refused()


def respond(data: bytes, source: str, answer: AnswerFn, identity: str, max_udp: int | None) -> Reply:
    """Answer one wire-format query; `max_udp` is None over TCP. Never raises."""
    try:
        return _respond(data, source, answer, identity, max_udp)
    except Exception:
        # dnslib parses names it cannot write back (labels over 63 bytes, names over 255):
        # the query was malformed after all
        return Reply(_header_only(data, RCODE.FORMERR), "formerr")


def _respond(data: bytes, source: str, answer: AnswerFn, identity: str, max_udp: int | None) -> Reply:
    if len(data) < 12:
        return Reply(None, "runt")  # nothing to answer to
    if data[2] & 0x80:
        return Reply(None, "response_dropped")
    try:
        query = parse_query(data)
    except QueryError:
        return Reply(_header_only(data, RCODE.FORMERR), "formerr")
    flags = query.flags
    opcode = (flags >> 11) & 0xF
    q = DNSQuestion(DNSLabel(list(query.labels)), query.qtype, query.qclass)
    opt = query.edns
    edns_flags = "do" if opt is not None and opt.do else ""

    def dnslib_reply() -> DNSRecord:
        header = DNSHeader(id=query.id, qr=1, opcode=opcode, aa=0, ra=0, rd=(flags >> 8) & 1, cd=(flags >> 4) & 1)
        reply = DNSRecord(header)
        if query.qdcount == 1:
            reply.questions = [q]
        return reply

    def done(rcode: int, kind: str) -> Reply:
        reply = dnslib_reply()
        reply.header.rcode = rcode & 0xF
        reply.ar = [EDNS0(udp_len=EDNS_BUFFER, flags=edns_flags, ext_rcode=rcode >> 4)] if opt is not None else []
        return Reply(bytes(reply.pack()), kind)

    if opt is not None and opt.version > 0:
        return done(BADVERS, "badvers")
    if opt is not None and any(c == COOKIE_CODE and not (len(v) == 8 or 16 <= len(v) <= 40) for c, v in opt.options):
        return done(RCODE.FORMERR, "formerr")  # RFC 7873: a malformed cookie
    if opcode != 0:  # other opcodes have their own rules about questions: not ours to judge
        return done(RCODE.NOTIMP, "notimp")
    if query.qdcount != 1:
        return done(RCODE.FORMERR, "formerr")
    options: list[EDNSOption] = []
    subnet: ClientSubnet | None = None
    ecs_asked = None
    for code, value in opt.options if opt is not None else ():
        if code == ECS_CODE:
            if ecs_asked is not None:
                return done(RCODE.FORMERR, "formerr")
            try:
                ecs_asked = parse_ecs(value)
            except EcsError:
                return done(RCODE.FORMERR, "formerr")
        elif code == NSID_CODE:  # RFC 5001: the payload of a query's NSID is ignored
            options.append(EDNSOption(NSID_CODE, identity.encode()))
    if ecs_asked is not None and ecs_asked.source > 0:
        subnet = ecs_asked
    try:
        if q.qclass == CLASS.CH:
            a = _chaos(q, identity)
        elif q.qclass != CLASS.IN:
            a = refused()
        else:
            a = answer(q, Client(source, subnet))
    except Exception:
        a = Answer(RCODE.SERVFAIL, False, [], [], [], "bug")
    if ecs_asked is not None:
        options.append(EDNSOption(ECS_CODE, ecs_reply(ecs_asked, a.scope if subnet else 0)))
    varies = "none" if subnet is not None and a.varies == "bucket" else a.varies
    if not query.plain_name:
        varies = "source"  # a compressed question: never keep it in the answer cache
    if a.packed is not None:
        wire = _spliced(data, query, a, options, max_udp)
        return Reply(wire, a.kind, varies)
    reply = dnslib_reply()
    reply.header.rcode = a.rcode
    reply.header.aa = int(a.aa)
    reply.rr = list(a.answer)
    reply.auth = list(a.authority)
    edns = [EDNS0(udp_len=EDNS_BUFFER, flags=edns_flags, opts=options)] if opt is not None else []
    reply.ar = list(a.additional) + edns
    wire = bytes(reply.pack())
    if max_udp is not None:
        limit = max(512, min(opt.payload, EDNS_BUFFER)) if opt is not None else 512
        if len(wire) > limit:
            reply.rr, reply.auth, reply.ar = [], [], edns
            reply.header.tc = 1
            wire = bytes(reply.pack())
    return Reply(wire, a.kind, varies)


def _spliced(data: bytes, query: Query, a: Answer, options: list[EDNSOption], max_udp: int | None) -> bytes:
    """The reply built by hand: header, the query's own question, pre-packed records, OPT."""
    assert a.packed is not None
    p, opt = a.packed, query.edns
    question = data[12 : query.question_end]
    edns = b""
    if opt is not None:
        edns = opt_record(EDNS_BUFFER, 0, opt.do, [(o.code, bytes(o.data)) for o in options])
    flags = 0x8000 | (query.flags & 0x0110) | (0x0400 if a.aa else 0) | a.rcode  # RD, CD copied
    more = 1 if edns else 0
    head = struct.pack("!HHHHHH", query.id, flags, 1, p.answer, p.authority, p.additional + more)
    wire = head + question + splice(p, len(question)) + edns
    if max_udp is not None:
        limit = max(512, min(opt.payload, EDNS_BUFFER)) if opt is not None else 512
        if len(wire) > limit:
            head = struct.pack("!HHHHHH", query.id, flags | 0x0200, 1, 0, 0, more)
            wire = head + question + edns
    return wire
