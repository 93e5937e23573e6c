"""Query validation and reply building around a pure answer function.

Error contract: `respond(data, client, zone)` never raises. Undecodable bytes (and
names dnslib reads but cannot write back) get FORMERR when a 12-byte header is there to
answer to, and are dropped otherwise;
responses (QR=1) are dropped, other opcodes get NOTIMP, anything but one question gets
FORMERR, EDNS version > 0 gets BADVERS, and any unexpected exception in the answer
logic becomes SERVFAIL (counted as "bug"). Every reply has AA per the zone, RA=0, RD
copied, the question kept, and an OPT record (buffer 1232) when the query had one;
a UDP reply too big for the client's buffer is sent with TC=1, question and OPT kept.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

from dnslib import CLASS, EDNS0, QTYPE, RCODE, RR, TXT, DNSHeader, DNSQuestion, DNSRecord

EDNS_BUFFER = 1232
BADVERS = 16
VERSION = "akacdn 0.1"


class Answer(NamedTuple):
    rcode: int
    aa: bool
    answer: list[RR]
    authority: list[RR]
    additional: list[RR]
    kind: str  # for counters: answer, referral, nxdomain, nodata, refused, servfail...


class Reply(NamedTuple):
    data: bytes | None  # None: drop
    kind: str


AnswerFn = Callable[[DNSQuestion, str], Answer]


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


def respond(data: bytes, client: str, answer: AnswerFn, identity: str, max_udp: int | None) -> Reply:
    """Answer one wire-format query; `max_udp` is None over TCP. Never raises."""
    try:
        return _respond(data, client, answer, identity, max_udp)
    except Exception:
        # dnslib parses names it cannot write back (labels over 63 bytes, names over 255):
        # the query was malformed after all
        return Reply(_header_only(data, RCODE.FORMERR), "formerr")


def _respond(data: bytes, client: str, answer: AnswerFn, identity: str, max_udp: int | None) -> Reply:
    try:
        req = DNSRecord.parse(data)
    except Exception:  # dnslib raises DNSError and others (IndexError, UnicodeError...)
        return Reply(_header_only(data, RCODE.FORMERR), "formerr")
    h = req.header
    if h.qr:
        return Reply(None, "response_dropped")
    opt = _opt(req)
    reply = DNSRecord(DNSHeader(id=h.id, qr=1, opcode=h.opcode, aa=0, ra=0, rd=h.rd))
    reply.questions = list(req.questions)
    if opt is not None:
        reply.add_ar(EDNS0(udp_len=EDNS_BUFFER))
    if h.opcode != 0:
        reply.header.rcode = RCODE.NOTIMP
        return Reply(bytes(reply.pack()), "notimp")
    if len(req.questions) != 1:
        reply.header.rcode = RCODE.FORMERR
        return Reply(bytes(reply.pack()), "formerr")
    if opt is not None and (opt.ttl >> 16) & 0xFF > 0:
        reply.ar = [EDNS0(udp_len=EDNS_BUFFER, ext_rcode=BADVERS >> 4)]
        reply.header.rcode = BADVERS & 0xF
        return Reply(bytes(reply.pack()), "badvers")
    q = req.questions[0]
    try:
        if q.qclass == CLASS.CH:
            a = _chaos(q, identity)
        elif q.qclass != CLASS.IN:
            a = refused()
        else:
            a = answer(q, client)
    except Exception:
        a = Answer(RCODE.SERVFAIL, False, [], [], [], "bug")
    reply.header.rcode = a.rcode
    reply.header.aa = int(a.aa)
    reply.rr = list(a.answer)
    reply.auth = list(a.authority)
    reply.ar = list(a.additional) + reply.ar
    wire = bytes(reply.pack())
    if max_udp is not None:
        limit = max(512, min(opt.rclass, EDNS_BUFFER)) if opt is not None else 512
        if len(wire) > limit:
            reply.rr, reply.auth = [], []
            reply.ar = [EDNS0(udp_len=EDNS_BUFFER)] if opt is not None else []
            reply.header.tc = 1
            wire = bytes(reply.pack())
    return Reply(wire, a.kind)
