"""A large plain hit's body as a file the kernel sends (sendfile(2)), as nginx serves its cache.

Copying a 100 KiB body from Python's memory into the socket costs more than letting the
kernel splice it from the page cache. So a stored variant whose body is at least
`MIN_BODY` gets, at its first plain hit, an unnamed file (in the store's directory: a
regular file system's page cache, where splicing is cheapest) holding its body. A hit
is then the head written from memory (`hit.Prepared`: it changes every second), then
one sendfile of the body: the two system calls nginx makes.

Why the head goes first, on its own: with one sendfile of head and body (an earlier
layout) the answer left as two full-size segments back to back. Under BBR (often the
system's congestion control) that kept each connection out of its startup phase, so
the kernel paced the second segment with a timer: one timer interrupt and a softirq per
hit, and the edge's CPU per 100 KiB hit rose by a fifth (`make bench-edge`, with
`perf stat -e timer:hrtimer_expire_entry`: `tcp_pace_kick` once per ~4 hits). The
small head first, as nginx sends it, leaves the connection's pacing rate where nginx's is.

The file is unnamed (gone with its descriptor, also after a crash) and closed when the
variant is dropped (the object's finaliser).
"""

from __future__ import annotations

import os
import tempfile
import weakref
from pathlib import Path

MIN_BODY = 32 * 1024  # below this, a write from memory costs less than a sendfile


class HitFile:
    """One stored variant's body in a file; `fd`, `size` for sendfile."""

    __slots__ = ("fd", "size", "__weakref__")

    def __init__(self, directory: Path, body: bytes) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory) as f:
            self.fd = os.dup(f.fileno())
        weakref.finalize(self, os.close, self.fd)
        view = memoryview(body)
        while view:
            view = view[os.write(self.fd, view) :]
        self.size = len(body)
