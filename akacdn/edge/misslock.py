"""Cross-process miss locks for `[edge] workers` > 1 (asyncio shell).

Within a process, concurrent misses for one key collapse into one origin request
(`fetch.Fetcher`). Across worker processes they meet here: the first worker to miss a
key takes the key's lock, fetches and stores the object in the shared disk tier, then
releases; a worker that finds the lock taken waits, then finds the object on disk. Like
nginx's `proxy_cache_lock`, the wait is bounded (`WAIT`): past it the waiter fetches.

The locks are POSIX record locks on one byte each of one file (`BUCKETS` bytes, the
key's hash picks the byte): no file per key, and the kernel drops a dead worker's locks.
Record locks belong to the process, so the handler keeps one waiter per key per process
(`Handler._gates`) and lets the others collapse behind it. Two keys sharing a byte only
wait for each other a little longer.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
from pathlib import Path

BUCKETS = 65536
WAIT = 10.0  # seconds a miss waits for another worker's fetch of the same key
POLL = 0.005


class Held:
    """A taken lock (or none, when the wait timed out); release is idempotent."""

    def __init__(self, locks: MissLocks | None, bucket: int) -> None:
        self._locks, self._bucket = locks, bucket
        self.passed = False  # handed to whoever releases it once the object is stored

    def release(self) -> None:
        if self._locks is not None:
            self._locks.unlock(self._bucket)
            self._locks = None


class MissLocks:
    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(root / ".misslocks", os.O_RDWR | os.O_CREAT, 0o600)
        self.waited = 0  # acquisitions that had to wait for another worker
        self.timeouts = 0

    @staticmethod
    def bucket(key: tuple[str, str]) -> int:
        digest = hashlib.blake2b(f"{key[0]}\0{key[1]}".encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big") % BUCKETS

    def _try(self, bucket: int) -> bool:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, bucket)
            return True
        except OSError:
            return False

    def unlock(self, bucket: int) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, bucket)

    async def acquire(self, key: tuple[str, str]) -> Held:
        """Take the key's lock, waiting (polling, bounded) while another worker holds it."""
        bucket = self.bucket(key)
        if self._try(bucket):
            return Held(self, bucket)
        self.waited += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while loop.time() < deadline:
            await asyncio.sleep(POLL)
            if self._try(bucket):
                return Held(self, bucket)
        self.timeouts += 1
        return Held(None, bucket)

    def close(self) -> None:
        os.close(self._fd)
