"""The disk tier's byte count, right across the edge's worker processes.

Every change to the cache directory's object files (a file renamed into place, a file
unlinked) goes through `Usage` and is counted as it happens, with the file's real size
(a replaced file's old size comes off). With `[edge] workers` > 1 the processes share one
directory and one count: an 8-byte counter in `<cache>/.usage`, mapped into each process
and changed under a POSIX record lock, so the disk budget holds for all of them together
(not once per process). Alone, the count is a plain integer. Threads of one process (large
objects are written in a thread) take a mutex first: record locks belong to the process.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_COUNT = struct.Struct("=q")


class Usage:
    def __init__(self, root: Path, shared: bool) -> None:
        self._mutex = threading.Lock()
        self._local = 0
        self._fd = -1
        self._map: mmap.mmap | None = None
        if shared:
            root.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(root / ".usage", os.O_RDWR | os.O_CREAT, 0o600)
            with self.locked():
                if os.fstat(self._fd).st_size < _COUNT.size:
                    os.ftruncate(self._fd, _COUNT.size)
            self._map = mmap.mmap(self._fd, _COUNT.size)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the count (and the directory's files) still; not re-entrant."""
        with self._mutex:
            if self._fd < 0:
                yield
                return
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    @property
    def total(self) -> int:
        """Bytes of object files in the directory (as last counted)."""
        return self._local if self._map is None else _COUNT.unpack_from(self._map)[0]

    def _set(self, value: int) -> None:
        if self._map is None:
            self._local = value
        else:
            _COUNT.pack_into(self._map, 0, value)

    def recount(self, files: Iterator[Path]) -> int:
        """Set the count from the files themselves (at start); call with the lock held."""
        total = 0
        for path in files:
            try:
                total += path.stat().st_size
            except OSError:
                continue
        self._set(total)
        return total

    def replace(self, tmp: Path, path: Path) -> None:
        """Rename a finished file into place, counting it (less the file it replaces)."""
        with self.locked():
            try:
                old = path.stat().st_size
            except FileNotFoundError:
                old = 0
            os.replace(tmp, path)
            self._set(self.total + path.stat().st_size - old)

    def unlink(self, path: Path) -> bool:
        """Delete a file, uncounting it; False if it was gone already (another process)."""
        with self.locked():
            return self.unlink_locked(path)

    def unlink_locked(self, path: Path) -> bool:
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return False
        self._set(self.total - size)
        return True

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            os.close(self._fd)
            self._map, self._fd = None, -1
