"""A large plain hit as one file the kernel sends (sendfile(2)), as nginx serves its cache.

Copying a 100 KiB body from Python's memory into the socket costs more than letting the
kernel splice it from the page cache. So a stored variant whose body is at least
`MIN_BODY` gets, at its first plain hit, an unnamed file (in the store's directory: a
regular file system's page cache, where splicing is cheapest) holding the whole answer:
the head built once, a fixed-width tail (`Age`, `Cache-Status`), the body. A hit is then
one sendfile of the whole file. The tail is rewritten in place (same width: the numbers
are padded with spaces, which HTTP parsers strip as OWS) when its whole seconds change;
a response still queued in the kernel may carry the newer second, never other bytes.

The file is unnamed (gone with its descriptor, also after a crash) and closed when the
variant is dropped (`close`, or the object's finaliser).
"""

from __future__ import annotations

import os
import tempfile
import weakref
from pathlib import Path

MIN_BODY = 32 * 1024  # below this, a write from memory costs less than a sendfile
WIDTH = 10  # digits of a delta-seconds value (up to 2^31)
TAIL = b"Age: %-10d\r\nCache-Status: akacdn; hit; ttl=%-10d\r\n\r\n"


class HitFile:
    """One stored variant's whole plain-hit answer in a file; `fd`, `size` for sendfile."""

    __slots__ = ("fd", "size", "_at", "_shown", "__weakref__")

    def __init__(self, directory: Path, head: bytes, body: bytes) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory) as f:
            self.fd = os.dup(f.fileno())
        weakref.finalize(self, os.close, self.fd)
        data = head + TAIL % (0, 0) + body
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        self.size = len(data)
        self._at = len(head)
        self._shown = (0, 0)

    def show(self, age: int, ttl: int) -> None:
        """Make the tail say this Age and ttl (written only when they changed)."""
        if (age, ttl) != self._shown:
            os.pwrite(self.fd, TAIL % (age, ttl), self._at)
            self._shown = (age, ttl)
