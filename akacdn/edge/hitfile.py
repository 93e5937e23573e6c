"""A large plain hit as one file the kernel sends (sendfile(2)), as nginx serves its cache.

Copying a 100 KiB body from Python's memory into the socket costs more than letting the
kernel splice it from the page cache. So a stored variant whose body is at least
`MIN_BODY` gets, at its first plain hit, an unnamed file (in the store's directory: a
regular file system's page cache, where splicing is cheapest) holding the whole answer:
the head built once, a fixed-width tail (`Age`, `Cache-Status`), the body. The tail is
rewritten in place (same width: the numbers are padded with spaces, which HTTP parsers
strip as OWS) when its whole seconds change; a response still queued in the kernel may
carry the newer second, never other bytes.

The body starts on a page boundary (the file begins with padding): whole pages splice
cheaper. How it is sent depends on the body's size (`head_first`); both ways were measured on
loopback with BBR (this machine's congestion control, and many hosts'), with wrk and
`make bench-edge`, the bench's 256 KiB `SO_SNDBUF`:
- Up to `HEAD_FIRST_MAX`, the head is written from memory, then the body is one
  sendfile, as nginx sends every answer. One sendfile of a whole 100 KiB answer made
  BBR leave its startup phase on the edge's connections (`ss -ti`: pacing_gain 1.25, a
  pacing rate near the measured bandwidth), and the kernel paced each answer's second
  segment with a timer: `tcp_pace_kick` fired once per 4-12 hits (`perf record -e
  timer:hrtimer_expire_entry`), a timer interrupt and softirq each on the edge's core,
  and the edge's CPU per hit ran up to a fifth higher. With the head first its
  connections stay at startup's pacing rate, as nginx's do, and are never paced.
- Above it, the whole answer is one sendfile. Head first, larger answers stalled: the
  client's delayed ACKs held each until a tail-loss probe (`nstat`: a spurious
  retransmission per hit), or the edge ran flat out for a third of the answers. Per
  CPU-second and requests per second, head first against whole: 256 KiB bodies 35-42k
  and 27-30k against 17-18k and 17-18k; 288 KiB 9-10k and 9-10k against 25k and 24k;
  512 KiB 14-16k against 21k; 1 MiB 6k against 11k (and a third of the requests).
  The limit lies where loopback's 64 KiB segments meet the congestion window; on a
  real network it will lie elsewhere.

The file is unnamed (gone with its descriptor, also after a crash) and closed when the
variant is dropped (the object's finaliser).
"""

from __future__ import annotations

import os
import tempfile
import weakref
from pathlib import Path

MIN_BODY = 32 * 1024  # below this, a write from memory costs less than a sendfile
HEAD_FIRST_MAX = 256 * 1024  # bodies up to this size: head written, then the body's sendfile
PAGE = 4096
WIDTH = 10  # digits of a delta-seconds value (up to 2^31)
TAIL = b"Age: %-10d\r\nCache-Status: akacdn; hit; ttl=%-10d\r\n\r\n"


class HitFile:
    """One stored variant's whole plain-hit answer in a file, from `start` to `size` (the
    body from `body_at`, on a page); `head_first`: send the head from memory, then the body."""

    __slots__ = ("fd", "start", "size", "body_at", "head_first", "_at", "_shown", "__weakref__")

    def __init__(self, directory: Path, head: bytes, body: bytes) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory) as f:
            self.fd = os.dup(f.fileno())
        weakref.finalize(self, os.close, self.fd)
        answer = head + TAIL % (0, 0)
        pad = -len(answer) % PAGE  # the body starts on a page (whole pages splice cheaper)
        data = bytes(pad) + answer + body
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        self.start = pad
        self.size = len(data)
        self.body_at = pad + len(answer)
        self.head_first = len(body) <= HEAD_FIRST_MAX
        self._at = pad + len(head)
        self._shown = (0, 0)

    def show(self, age: int, ttl: int) -> None:
        """Make the tail say this Age and ttl (written only when they changed)."""
        if (age, ttl) != self._shown:
            os.pwrite(self.fd, TAIL % (age, ttl), self._at)
            self._shown = (age, ttl)
