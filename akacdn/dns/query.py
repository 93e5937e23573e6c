"""A strict parser for DNS queries (pure): what the slow path answers from.

Why not dnslib's parser: fuzzing against dnspython showed it accepts malformed queries
(trailing bytes, an OPT owned by a non-root name or outside the additional section,
two OPTs, truncated option headers) and refuses well-formed ones (labels that are not
UTF-8, empty RDATA). A query needs little: the header, one question, and the OPT
record's fields and options; every other record is only checked for structure.

`parse_query(data)` returns a `Query` or raises `QueryError` (answered FORMERR when a
header is there to answer to). The question name may use compression pointers (each
strictly before the name and the previous target, never into the header, at most 127); `Query.plain_name` says
whether it used none, which is what the answer cache requires.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

OPT, TSIG = 41, 250
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")


class QueryError(ValueError):
    pass


class Edns(NamedTuple):
    payload: int  # the requester's UDP payload size
    ext_rcode: int
    version: int
    do: bool
    options: list[tuple[int, bytes]]


class Query(NamedTuple):
    id: int
    flags: int
    qdcount: int
    labels: tuple[bytes, ...]  # the question name, as sent (case kept)
    qtype: int
    qclass: int
    plain_name: bool  # no compression pointer in the question name
    question_end: int  # offset just past the first question
    edns: Edns | None


def _name(data: bytes, i: int) -> tuple[tuple[bytes, ...], int, bool]:
    """Labels of the name at i, the offset after it, and whether it was pointer-free."""
    labels: list[bytes] = []
    end = -1
    hops = 0
    total = 0
    limit = i  # a pointer must land before this: the name's start, then the last target
    while True:
        if i >= len(data):
            raise QueryError("name runs past the end")
        n = data[i]
        if n == 0:
            i += 1
            break
        kind = n & 0xC0
        if kind == 0xC0:
            if i + 1 >= len(data):
                raise QueryError("truncated pointer")
            target = ((n & 0x3F) << 8) | data[i + 1]
            if end < 0:
                end = i + 2
            if target < 12 or target >= limit:  # strictly backwards, never into the header
                raise QueryError("bad compression pointer")
            limit = target
            hops += 1
            if hops > 127:
                raise QueryError("pointer loop")
            i = target
            continue
        if kind:
            raise QueryError("unknown label type")
        label = data[i + 1 : i + 1 + n]
        if len(label) != n:
            raise QueryError("label runs past the end")
        total += n + 1
        if total > 254:
            raise QueryError("name longer than 255 bytes")
        labels.append(label)
        i += n + 1
    return tuple(labels), (end if end >= 0 else i), end < 0


def _options(rdata: bytes) -> list[tuple[int, bytes]]:
    out = []
    i = 0
    while i < len(rdata):
        if i + 4 > len(rdata):
            raise QueryError("truncated EDNS option header")
        code, size = struct.unpack_from("!HH", rdata, i)
        value = rdata[i + 4 : i + 4 + size]
        if len(value) != size:
            raise QueryError("EDNS option runs past the OPT record")
        out.append((code, value))
        i += 4 + size
    return out


def parse_query(data: bytes) -> Query:
    """Parse and check a whole query message; raises QueryError."""
    if len(data) < 12:
        raise QueryError("shorter than a header")
    qid, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    i = 12
    labels: tuple[bytes, ...] = ()
    qtype = qclass = 0
    plain = True
    question_end = 12
    for k in range(qd):
        name, i, pointer_free = _name(data, i)
        if i + 4 > len(data):
            raise QueryError("truncated question")
        if k == 0:
            labels, plain = name, pointer_free
            qtype, qclass = struct.unpack_from("!HH", data, i)
            question_end = i + 4
        i += 4
    edns = None
    records = an + ns + ar
    for k in range(records):
        owner, i, _ = _name(data, i)
        if i + _RR.size > len(data):
            raise QueryError("truncated record")
        rtype, rclass, ttl, rdlen = _RR.unpack_from(data, i)
        start = i + _RR.size
        if start + rdlen > len(data):
            raise QueryError("record data runs past the end")
        additional = k >= an + ns
        if rtype == OPT:
            if not additional or edns is not None or owner:
                raise QueryError("misplaced or repeated OPT record")
            options = _options(data[start : start + rdlen])
            edns = Edns(rclass, ttl >> 24, (ttl >> 16) & 0xFF, bool(ttl & 0x8000), options)
        elif rtype == TSIG and (not additional or k != records - 1 or rclass != 255):
            raise QueryError("misplaced TSIG record")
        i = start + rdlen
    if i != len(data):
        raise QueryError("trailing bytes after the last record")
    return Query(qid, flags, qd, labels, qtype, qclass, plain, question_end, edns)


def plain_question_length(data: bytes) -> int | None:
    """Length of the first question when its name has no pointer; None otherwise or if malformed."""
    if len(data) < 17:
        return None
    i = 12
    while True:
        if i >= len(data):
            return None
        n = data[i]
        if n == 0:
            break
        if n & 0xC0:
            return None
        i += n + 1
    end = i + 5
    return end - 12 if end <= len(data) else None
