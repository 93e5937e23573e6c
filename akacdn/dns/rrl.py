"""Response rate limiting (pure), against reflection and amplification.

Per (client bucket, answer) at most `rate` responses per second; past it, every
`slip`-th response goes out truncated (TC=1, no records: a real client retries over
TCP, a spoofed victim gets a tiny packet) and the others are dropped. The bucket is the
source's /24 (IPv4) or /56 (IPv6). All NXDOMAIN answers to one bucket share one budget,
so random-name floods are limited too. Windows are whole seconds (time passed in). The
table holds at most `max_entries` keys per window; past that, new keys pass (fail open:
legitimate clients are never starved by a table-filling flood, and the flood itself is
already past its own limits).
"""

from __future__ import annotations

import struct

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


def truncated(data: bytes, qlen: int) -> bytes:
    """A TC=1 reply to a query: its ID, RD and opcode, its question, nothing else."""
    flags = struct.unpack("!H", data[2:4])[0]
    out = 0x8000 | 0x0200 | (flags & 0x7900)  # QR, TC, opcode and RD copied
    return data[:2] + struct.pack("!HHHHH", out, 1, 0, 0, 0) + data[12 : 12 + qlen]
