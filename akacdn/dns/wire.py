"""The answer pipeline around a zone's pure answer function (the slow path, dnslib).

validate -> EDNS (version, NSID, ECS) -> CHAOS -> zone answer -> OPT -> truncate.

Error contract: `respond(data, source, answer, identity, max_udp)` never raises.
Undecodable bytes (and names dnslib reads but cannot write back) get FORMERR when a
12-byte header is there to answer to, and are dropped otherwise; responses (QR=1) are
dropped; other opcodes get NOTIMP; anything but one question gets FORMERR; EDNS
version > 0 gets BADVERS; a malformed client-subnet option gets FORMERR; any
unexpected exception in the answer logic becomes SERVFAIL (kind "bug"). Every reply
has AA per the zone, RA=0, RD and CD copied, the question kept, and an OPT record
(buffer 1232, NSID and client-subnet when asked) when the query had one; a UDP reply
too big for the client's buffer goes out with TC=1, question and OPT kept.

`Reply.varies` tells the fast path what the reply depends on beyond the query bytes:
"none", "bucket" (the source's /24 or /56) or "source" (exact address: not cached).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from typing import NamedTuple

from dnslib import CLASS, EDNS0, QTYPE, RCODE, RR, TXT, DNSHeader, DNSQuestion, DNSRecord, EDNSOption

from .ecs import ECS_CODE, NSID_CODE, ClientSubnet, EcsError, ecs_reply, parse_ecs

EDNS_BUFFER = 1232
BADVERS = 16
VERSION = "akacdn 0.1"
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
    rd = flags & 0x0100
    return struct.pack("!HHHHHH", qid, 0x8000 | rd | (flags & 0x7800) | rcode, 0, 0, 0, 0)


def _opt(req: DNSRecord) -> RR | None:
    for rr in req.ar:
        if rr.rtype == QTYPE.OPT:
            return rr
    return None


def _chaos(q: DNSQuestion, identity: str) -> Answer:
    name = str(q.qname).lower().rstrip(".")
    texts = {"hostname.bind": identity, "id.server": identity, "version.bind": VERSION, "version.server": VERSION}
    if name in texts and q.qtype in (QTYPE.TXT, QTYPE.ANY):
        rr = RR(q.qname, QTYPE.TXT, CLASS.CH, 0, TXT(texts[name]))
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
    try:
        req = DNSRecord.parse(data)
    except Exception:  # dnslib raises DNSError and others (IndexError, UnicodeError...)
        return Reply(_header_only(data, RCODE.FORMERR), "formerr")
    h = req.header
    if h.qr:
        return Reply(None, "response_dropped")
    opt = _opt(req)
    reply = DNSRecord(DNSHeader(id=h.id, qr=1, opcode=h.opcode, aa=0, ra=0, rd=h.rd, cd=h.cd))
    reply.questions = list(req.questions)

    def done(rcode: int, kind: str) -> Reply:
        reply.header.rcode = rcode
        reply.ar = [EDNS0(udp_len=EDNS_BUFFER)] if opt is not None else []
        return Reply(bytes(reply.pack()), kind)

    if h.opcode != 0:
        return done(RCODE.NOTIMP, "notimp")
    if len(req.questions) != 1 or sum(1 for rr in req.ar if rr.rtype == QTYPE.OPT) > 1:
        return done(RCODE.FORMERR, "formerr")
    options: list[EDNSOption] = []
    subnet: ClientSubnet | None = None
    ecs_asked = None
    if opt is not None:
        if (opt.ttl >> 16) & 0xFF > 0:
            reply.ar = [EDNS0(udp_len=EDNS_BUFFER, ext_rcode=BADVERS >> 4)]
            reply.header.rcode = BADVERS & 0xF
            return Reply(bytes(reply.pack()), "badvers")
        for o in opt.rdata or []:
            if o.code == ECS_CODE:
                if ecs_asked is not None:
                    return done(RCODE.FORMERR, "formerr")
                try:
                    ecs_asked = parse_ecs(bytes(o.data))
                except EcsError:
                    return done(RCODE.FORMERR, "formerr")
            elif o.code == NSID_CODE:
                options.append(EDNSOption(NSID_CODE, identity.encode()))
        if ecs_asked is not None and ecs_asked.source > 0:
            subnet = ecs_asked
    q = req.questions[0]
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
    reply.header.rcode = a.rcode
    reply.header.aa = int(a.aa)
    reply.rr = list(a.answer)
    reply.auth = list(a.authority)
    edns = [EDNS0(udp_len=EDNS_BUFFER, opts=options)] if opt is not None else []
    reply.ar = list(a.additional) + edns
    wire = bytes(reply.pack())
    if max_udp is not None:
        limit = max(512, min(opt.rclass, EDNS_BUFFER)) if opt is not None else 512
        if len(wire) > limit:
            reply.rr, reply.auth, reply.ar = [], [], edns
            reply.header.tc = 1
            wire = bytes(reply.pack())
    return Reply(wire, a.kind, "none" if subnet is not None and a.varies == "bucket" else a.varies)
