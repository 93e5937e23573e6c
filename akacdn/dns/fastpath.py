"""Pre-built wire answers (pure): the nameservers' fast path.

Theory of operation. A reply depends on the query bytes after the ID (flags, question,
EDNS options including the client subnet) and, for some answers, on the source's /24
(/56): the map state is fixed between two maps, and the cache is cleared when a map
arrives. So a reply built once by the slow path (dnslib) is stored under the query
bytes after the ID; a later identical query is answered by patching in its ID.

Values are the reply after its ID: `bytes` when the reply is the same for every
source, or a dict bucket -> bytes when it depends on the source's bucket. Queries with
upper-case letters (0x20 randomisation) are stored under the lower-cased key with a
lower-cased question, and answered by splicing the query's own question back in.
The cache holds at most `max_entries` keys; when full it is cleared (counted).
"""

from __future__ import annotations

import socket

Entry = bytes | dict[bytes, bytes]


def bucket_of(source: str) -> bytes:
    """The bucket of a source address as raw bytes: its /24 (IPv4) or /56 (IPv6).

    The same bytes as the UDP engine reads straight out of the sockaddr."""
    if ":" in source:
        return socket.inet_pton(socket.AF_INET6, source)[:7]
    return socket.inet_pton(socket.AF_INET, source)[:3]


def question_length(data: bytes) -> int:
    """Length of the first question (name + type + class) of a well-formed query."""
    i = 12
    n = data[i]
    while n:
        i += n + 1
        n = data[i]
    return i + 5 - 12


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
            low = key.lower()
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
            qlen = question_length(data)
            return data[:2] + v[:10] + data[12 : 12 + qlen] + v[10 + qlen :]  # type: ignore[index]
        return data[:2] + v  # type: ignore[operator]

    def store(self, data: bytes, bucket: bytes, reply: bytes, varies: str) -> None:
        """Keep a slow-path reply for identical queries ("source"-varying ones are never kept)."""
        if varies == "source" or len(data) < 12:
            return
        key = data[2:]
        low = key.lower()
        body = reply[2:]
        if low != key:
            qlen = question_length(data)
            body = body[:10] + body[10 : 10 + qlen].lower() + body[10 + qlen :]
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
