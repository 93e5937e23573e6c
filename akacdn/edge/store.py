"""The memory store: cached objects under a byte budget, least recently used out first."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import msgspec


class CachedObject(msgspec.Struct):
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    stored_at: float  # wall-clock seconds, for Age
    ttl: int

    def age(self, now: float) -> int:
        return max(0, int(now - self.stored_at))

    def fresh(self, now: float) -> bool:
        return now - self.stored_at < self.ttl


class MemoryStore:
    def __init__(self, budget: int = 256 * 2**20, max_object: int = 16 * 2**20) -> None:
        self.budget = budget
        self.max_object = max_object
        self.used = 0
        self._objects: OrderedDict[tuple[str, str], CachedObject] = OrderedDict()

    def get(self, key: tuple[str, str]) -> CachedObject | None:
        obj = self._objects.get(key)
        if obj is not None:
            self._objects.move_to_end(key)
        return obj

    def put(self, key: tuple[str, str], obj: CachedObject) -> bool:
        """Store an object; False when it is bigger than one object may be."""
        if len(obj.body) > self.max_object:
            return False
        self.delete(key)
        self._objects[key] = obj
        self.used += len(obj.body)
        while self.used > self.budget and self._objects:
            _, old = self._objects.popitem(last=False)
            self.used -= len(old.body)
        return True

    def delete(self, key: tuple[str, str]) -> None:
        old = self._objects.pop(key, None)
        if old is not None:
            self.used -= len(old.body)

    def delete_where(self, match: Callable[[tuple[str, str]], bool]) -> list[tuple[str, str]]:
        """Remove every object whose key matches; returns their keys."""
        doomed = [k for k in self._objects if match(k)]
        for k in doomed:
            self.delete(k)
        return doomed

    def __len__(self) -> int:
        return len(self._objects)
