"""Pre-built wire answers (pure): the nameservers' fast path.

Theory of operation. A reply depends on the query bytes after the ID (flags, question,
EDNS options including the client subnet) and, for some answers, on the source's /24
(/56): the map state is fixed between two maps, and the cache is cleared when a map
arrives. So a reply built once by the slow path (dnslib) is stored under the query
bytes after the ID; a later identical query is answered by patching in its ID.

Values are the reply after its ID: `bytes` when the reply is the same for every
source, or a dict bucket -> bytes when it depends on the source's bucket. Queries with
upper-case letters (0x20 randomisation) are stored under the key with the question
name lower-cased (only the name: other bytes keep their case), and answered by splicing
the query's own question back in. Questions with compression pointers are never kept.
The cache holds at most `max_entries` keys; when full it is cleared (counted).
"""

from __future__ import annotations

import socket

from .query import plain_question_length

Entry = bytes | dict[bytes, bytes]


def bucket_of(source: str) -> bytes:
    """The bucket of a source address as raw bytes: its /24 (IPv4) or /56 (IPv6).

    The same bytes as the UDP engine reads straight out of the sockaddr."""
    if ":" in source:
        return socket.inet_pton(socket.AF_INET6, source)[:7]
    return socket.inet_pton(socket.AF_INET, source)[:3]


def _lower_name(key: bytes, qlen: int) -> bytes:
    """The key (query after its ID) with only the question name lower-cased: the
    letters in other fields (a client-subnet address, a type number) stay as they are."""
    end = 10 + qlen - 4
    return key[:10] + key[10:end].lower() + key[end:]


class AnswerCache:
    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self.entries: dict[bytes, Entry] = {}
        self.flushes = 0

    def clear(self) -> None:
        self.entries.clear()

    def lookup(self, data: bytes, bucket: bytes) -> bytes | None:
        """The whole reply for this query from a source in `bucket`, or None on a miss."""
        key = data[2:]
        v = self.entries.get(key)
        splice = False
        if v is None:
            qlen = plain_question_length(data)
            if qlen is None:
                return None
            low = _lower_name(key, qlen)
            if low == key:
                return None
            v = self.entries.get(low)
            if v is None:
                return None
            splice = True
        if v.__class__ is not bytes:
            v = v.get(bucket)  # type: ignore[union-attr]
            if v is None:
                return None
        if splice:
            return data[:2] + v[:10] + data[12 : 12 + qlen] + v[10 + qlen :]  # type: ignore[index]
        return data[:2] + v  # type: ignore[operator]

    def store(self, data: bytes, bucket: bytes, reply: bytes, varies: str) -> None:
        """Keep a slow-path reply for identical queries ("source"-varying ones are never kept)."""
        qlen = plain_question_length(data)
        if varies == "source" or qlen is None:
            return  # a question with compression pointers is never kept
        key = data[2:]
        low = _lower_name(key, qlen)
        body = reply[2:]
        if low != key:
            body = _lower_name(body, qlen)
            key = low
        if len(self.entries) >= self.max_entries:
            self.entries.clear()
            self.flushes += 1
        if varies == "bucket":
            per = self.entries.get(key)
            if per is None or per.__class__ is bytes:
                per = {}
                self.entries[key] = per
            per[bucket] = body  # type: ignore[index]
        else:
            self.entries[key] = body
