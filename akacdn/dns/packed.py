"""Pre-packed answer sections (pure): the slow path's way around dnslib's cost.

Building a referral with dnslib (16 RR objects, then compression) costs hundreds of
microseconds; most answers are the same records for many queries. So the zones pack
their records once per map (`Packed`) and `wire.respond` splices them after the
query's own question:

* records owned by the question name use the pointer 0xC00C (the question always
  starts at offset 12), so they fit any question (`owned_by_question`);
* other records (referral NS and glue, an SOA) are packed by dnslib into a message
  with no question, so their compression pointers only point inside the records
  themselves; `splice` moves those pointers by the question's length.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from dnslib import QTYPE, RR, DNSHeader, DNSRecord

_FIXED = struct.Struct("!HHIH")
_NAME_RDATA = {QTYPE.NS, QTYPE.CNAME, QTYPE.PTR}


class Packed(NamedTuple):
    answer: int  # record counts per section
    authority: int
    additional: int
    records: bytes  # as they follow a question-less header (offset 12)
    pointers: tuple[int, ...]  # offsets in `records` of compression pointers to move


def _skip_name(data: bytes, i: int, pointers: list[int], base: int) -> int:
    while True:
        n = data[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            pointers.append(i - base)
            return i + 2
        i += n + 1


def pack_records(answer: list[RR], authority: list[RR], additional: list[RR]) -> Packed:
    """Pack records (owned by names other than the question) for splicing."""
    rec = DNSRecord(DNSHeader())
    rec.rr, rec.auth, rec.ar = list(answer), list(authority), list(additional)
    data = bytes(rec.pack())
    pointers: list[int] = []
    i = 12
    for _ in range(len(answer) + len(authority) + len(additional)):
        i = _skip_name(data, i, pointers, 12)
        rtype, _, _, rdlen = _FIXED.unpack_from(data, i)
        i += _FIXED.size
        if rtype in _NAME_RDATA:
            _skip_name(data, i, pointers, 12)
        elif rtype == QTYPE.SOA:
            _skip_name(data, _skip_name(data, i, pointers, 12), pointers, 12)
        i += rdlen
    return Packed(len(answer), len(authority), len(additional), data[12:], tuple(pointers))


def owned_by_question(rtype: int, ttl: int, rdatas: list[bytes]) -> Packed:
    """Answer records owned by the question name (A, AAAA: raw address bytes)."""
    head = b"\xc0\x0c"
    body = b"".join(head + _FIXED.pack(rtype, 1, ttl, len(r)) + r for r in rdatas)
    return Packed(len(rdatas), 0, 0, body, ())


def join(first: Packed, second: Packed) -> Packed:
    """Sections of two packs (the second's records follow the first's)."""
    shift = len(first.records)
    return Packed(
        first.answer + second.answer,
        first.authority + second.authority,
        first.additional + second.additional,
        first.records + second.records,
        first.pointers + tuple(p + shift for p in second.pointers),
    )


def splice(packed: Packed, question_length: int) -> bytes:
    """The records, their pointers moved past a question of the given length."""
    if not packed.pointers or not question_length:
        return packed.records
    out = bytearray(packed.records)
    for p in packed.pointers:
        target = ((out[p] & 0x3F) << 8 | out[p + 1]) + question_length
        out[p] = 0xC0 | (target >> 8)
        out[p + 1] = target & 0xFF
    return bytes(out)


def opt_record(payload: int, ext_rcode: int, do: bool, options: list[tuple[int, bytes]]) -> bytes:
    """An OPT pseudo-record (EDNS version 0)."""
    rdata = b"".join(struct.pack("!HH", code, len(value)) + value for code, value in options)
    ttl = (ext_rcode << 24) | (0x8000 if do else 0)
    return b"\x00" + _FIXED.pack(QTYPE.OPT, payload, ttl, len(rdata)) + rdata
