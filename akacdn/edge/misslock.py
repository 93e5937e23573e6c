"""Cross-process miss locks for `[edge] workers` > 1 (asyncio shell).

Within a process, concurrent misses for one key collapse into one origin request
(`fetch.Fetcher`). Across worker processes they meet here: the first worker to miss a
key takes the key's lock, fetches and stores the object in the shared disk tier, then
releases; a worker that finds the lock taken waits, then finds the object on disk. Like
nginx's `proxy_cache_lock`, the wait is bounded (`WAIT`): past it the waiter fetches.

The locks are POSIX record locks on one byte each of one file (`BUCKETS` bytes, the
key's hash picks the byte): no file per key, and the kernel drops a dead worker's locks.
Record locks belong to the process, so one miss per key per process holds it (`Hold`)
and the others in that process wait behind the hold or join its fetch; two keys of one
process on one byte count their holds (the last one unlocks). Keys of two processes
sharing a byte only wait for each other a little longer.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from prometheus_client import Counter

BUCKETS = 65536
WAIT = 10.0  # seconds a miss waits for another worker's fetch of the same key
POLL = 0.005


class Hold:
    """This process's hold on one key's miss lock: taken by the key's first miss here and kept
    until the fetched object is stored (or that miss ends without fetching). The other misses
    for the key in this process never touch the lock (record locks belong to the process, so
    theirs would be the same lock, and their unlock would free it mid-fetch): they wait until
    the first has its answer (`decided`), then join its fetch while the body streams
    (`joinable`), or else wait until the hold is released, then look again."""

    def __init__(self, on_release: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        self.decided: asyncio.Future[None] = loop.create_future()
        self.released: asyncio.Future[None] = loop.create_future()
        self.passed = False  # handed to whoever releases it once the object is stored
        self.joinable = False  # its fetch is streaming: other misses here may collapse into it
        self._unlock: Callable[[], None] | None = None
        self._on_release = on_release

    def decide(self) -> None:
        if not self.decided.done():
            self.decided.set_result(None)

    def release(self) -> None:
        """Free the lock (if it was taken; a timed-out wait holds none); idempotent."""
        if self.released.done():
            return
        if self._unlock is not None:
            self._unlock()
            self._unlock = None
        self.joinable = False
        self.decide()
        self.released.set_result(None)
        self._on_release()


class MissLocks:
    def __init__(self, root: Path, waits: Counter, timeouts: Counter) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(root / ".misslocks", os.O_RDWR | os.O_CREAT, 0o600)
        self.waits = waits  # misses that had to wait for another worker's fetch
        self.timeouts = timeouts  # ... and waited in vain (then fetched themselves)
        self._mine: dict[int, int] = {}  # bytes this process has locked -> holds on each

    @staticmethod
    def bucket(key: tuple[str, str]) -> int:
        digest = hashlib.blake2b(f"{key[0]}\0{key[1]}".encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big") % BUCKETS

    def _try(self, bucket: int) -> bool:
        if bucket in self._mine:  # another key of ours on this byte: no other process has it
            self._mine[bucket] += 1
            return True
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, bucket)
        except OSError:
            return False
        self._mine[bucket] = 1
        return True

    def unlock(self, bucket: int) -> None:
        """Let go of one hold on the byte; the lock itself goes with this process's last."""
        self._mine[bucket] -= 1
        if not self._mine[bucket]:
            del self._mine[bucket]
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, bucket)

    async def acquire(self, key: tuple[str, str], hold: Hold) -> None:
        """Take the key's lock for `hold`, waiting (polling, bounded) while another worker
        holds it; past the bound the hold goes on without it."""
        bucket = self.bucket(key)
        if self._try(bucket):
            hold._unlock = lambda: self.unlock(bucket)
            return
        self.waits.inc()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while loop.time() < deadline:
            await asyncio.sleep(POLL)
            if self._try(bucket):
                hold._unlock = lambda: self.unlock(bucket)
                return
        self.timeouts.inc()

    def close(self) -> None:
        os.close(self._fd)
