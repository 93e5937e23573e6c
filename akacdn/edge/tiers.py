"""The edge's store: the memory tier over the disk tier (asyncio shell around both)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..runtime import Runtime
from .disk import DiskStore
from .store import Key, MemoryStore, Variant


class TieredStore:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        # each worker process has its own memory tier: the budget is split between them
        self.memory = MemoryStore(budget=rt.net.edge.memory_bytes // rt.net.edge.workers)
        # the worker processes share the disk tier (and its budget)
        self.disk = DiskStore(rt.state_dir / "cache", rt.net.edge.disk_bytes, shared=rt.net.edge.workers > 1)
        rt.record("cache_loaded", objects=self.disk.load(), dropped=self.disk.dropped)
        self.disk_errors = rt.counter("akacdn_edge_disk_errors", "Disk store writes that failed")
        # Until the purges missed while down are applied, objects the disk tier got before
        # this time are not served (a miss goes to the origin and overwrites them): a purged
        # object is never served again. 0: every stored object is good.
        self.distrust_before = 0.0

    def variants(self, key: Key) -> list[Variant] | None:
        """A key's variants: from memory, else from disk (warm from before a restart)."""
        got = self.memory.get(key)
        if got is None:
            got = self.disk.get(key)
            if got is not None and self.distrust_before:
                got = [v for v in got if v.entry.response_time >= self.distrust_before] or None
            if got is not None:
                self.memory.put(key, got)
        return got

    def keep(self, key: Key, variants: list[Variant]) -> None:
        self.memory.put(key, variants)
        try:
            self.disk.put(key, variants)
        except OSError as e:  # a full or failing disk costs warmth, never the response
            self.disk_errors.inc()
            self.rt.log.limited("disk_write_failed", error=str(e))

    async def keep_large(self, key: Key, variants: list[Variant]) -> None:
        """`keep` for variants with a large body in a file: copied into the disk tier in a
        thread (the memory tier does not take them), so clients are not held up meanwhile."""
        try:
            path = await asyncio.to_thread(self.disk.write, key, variants)
        except OSError as e:
            self.disk_errors.inc()
            self.rt.log.limited("disk_write_failed", error=str(e))
            return
        if path is not None:
            self.memory.delete(key)  # an older, smaller copy must not shadow it
            self.disk.add(key, path)

    def drop(self, key: Key) -> None:
        self.memory.delete(key)
        self.disk.delete(key)

    def delete_where(self, match: Callable[[Key], bool]) -> int:
        """Remove every key that matches from both tiers; returns how many keys."""
        return len(set(self.memory.delete_where(match)) | set(self.disk.delete_where(match)))
