"""Response rate limiting (pure), against reflection and amplification.

Per (client bucket, answer) at most `rate` responses per second; past it, every
`slip`-th response goes out truncated (TC=1, no records: a real client retries over
TCP, a spoofed victim gets a tiny packet) and the others are dropped. The bucket is the
source's /24 (IPv4) or /56 (IPv6); the answer is the reply's question with the name
lower-cased (`rrl_key`), so 0x20 letter case or fresh cookies do not evade it. All
NXDOMAIN answers to one bucket share one budget, so random-name floods are limited too.
Windows are whole seconds (time passed in). The table holds at most `max_entries` keys
per window; past that, new keys pass (fail open: legitimate clients are never starved
by a table-filling flood, and the flood itself is already past its own limits).
"""

from __future__ import annotations

import struct

from .query import plain_question_length

SEND, SLIP, DROP = 0, 1, 2


class RateLimiter:
    def __init__(self, rate: int, slip: int, max_entries: int = 500_000) -> None:
        self.rate = rate
        self.slip = slip
        self.max_entries = max_entries
        self.window = -1
        self.counts: dict[tuple[bytes, bytes], int] = {}

    def check(self, bucket: bytes, answer: bytes, now_second: int) -> int:
        """SEND, SLIP or DROP for one response."""
        if now_second != self.window:
            self.window = now_second
            self.counts = {}
        k = (bucket, answer)
        n = self.counts.get(k)
        if n is None:
            if len(self.counts) >= self.max_entries:
                return SEND
            n = 0
        n += 1
        self.counts[k] = n
        if n <= self.rate:
            return SEND
        if self.slip and (n - self.rate) % self.slip == 0:
            return SLIP
        return DROP


def rrl_key(reply: bytes) -> bytes:
    """What a response counts against: its question (name lower-cased, type, class), or
    b"nxdomain" for every NXDOMAIN. Taken from our reply, not the query, so random
    letter case, cookies or other options in queries do not make new keys."""
    if reply[3] & 0xF == 3:
        return b"nxdomain"
    qlen = plain_question_length(reply)
    return reply[12 : 12 + qlen].lower() if qlen is not None else reply[2:]


def truncated(reply: bytes) -> bytes | None:
    """The TC=1 form of one of our own replies: header (TC set, rcode and flags kept),
    question and OPT record; None when the reply has no question to keep."""
    if len(reply) < 12 or reply[4:6] != b"\x00\x01":
        return None
    qlen = plain_question_length(reply)
    if qlen is None:
        return None
    end = 12 + qlen
    opt = _opt_record(reply, end)
    flags = struct.unpack_from("!H", reply, 2)[0] | 0x0200
    counts = struct.pack("!HHHH", 1, 0, 0, 1 if opt else 0)
    return reply[:2] + struct.pack("!H", flags) + counts + reply[12:end] + opt


def _opt_record(reply: bytes, after: int) -> bytes:
    """Our replies put the OPT record last: find it by its fixed start and exact length."""
    i = reply.rfind(b"\x00\x00\x29", after)
    while i >= after:
        if i + 11 <= len(reply):
            (rdlen,) = struct.unpack_from("!H", reply, i + 9)
            if i + 11 + rdlen == len(reply):
                return reply[i:]
        i = reply.rfind(b"\x00\x00\x29", after, i)
    return b""
