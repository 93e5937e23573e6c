"""The memory tier of the edge's store: variants per key, under a byte budget, least
recently used out first.

A key is (customer, request target). Each key holds the variants of that resource
(RFC 9111 4.1, Vary): the secondary key (the request fields the response varies on,
None when it does not vary), the `rfc9111.Entry` (status, headers, ages, lifetime) and
the body. At most `MAX_VARIANTS` per key: a new one pushes out the oldest.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import msgspec

from .hit import Prepared
from .message import FileBody
from .rfc9111 import Entry, VaryKey

Key = tuple[str, str]
MAX_VARIANTS = 8


class Variant(msgspec.Struct):
    vary_key: VaryKey | None
    entry: Entry
    body: bytes | FileBody  # a FileBody only from the disk tier (large objects)
    prepared: Prepared | None = None  # the plain-hit answer, built at the first hit


def size(variants: list[Variant]) -> int:
    return sum(len(v.body) for v in variants)


def with_variant(variants: list[Variant], new: Variant) -> list[Variant]:
    """The variants of a key once `new` is stored: it replaces one with the same secondary key."""
    kept = [v for v in variants if v.vary_key != new.vary_key]
    return (kept + [new])[-MAX_VARIANTS:]


class MemoryStore:
    def __init__(self, budget: int = 256 * 2**20, max_object: int = 16 * 2**20) -> None:
        self.budget = budget
        self.max_object = max_object
        self.used = 0
        self._objects: OrderedDict[Key, list[Variant]] = OrderedDict()
        # a key's variants without marking it used: the plain hit's lookup (the dict's own
        # `get`, no Python frame); it marks its keys used once a second (`touch`)
        self.peek: Callable[[Key], list[Variant] | None] = self._objects.get

    def get(self, key: Key) -> list[Variant] | None:
        """A key's variants, the key then the most recently used."""
        got = self._objects.get(key)
        if got is not None:
            self._objects.move_to_end(key)
        return got

    def touch(self, key: Key) -> None:
        """Mark a key (still stored) the most recently used."""
        self._objects.move_to_end(key)

    def put(self, key: Key, variants: list[Variant]) -> bool:
        """Keep a key's variants; False when one body is bigger than an object may be (or
        lives in a file: large objects are served from the disk tier)."""
        if any(isinstance(v.body, FileBody) or len(v.body) > self.max_object for v in variants):
            return False
        self.delete(key)
        self._objects[key] = variants
        self.used += size(variants)
        while self.used > self.budget and self._objects:
            _, old = self._objects.popitem(last=False)
            self.used -= size(old)
        return True

    def delete(self, key: Key) -> None:
        old = self._objects.pop(key, None)
        if old is not None:
            self.used -= size(old)

    def delete_where(self, match: Callable[[Key], bool]) -> list[Key]:
        """Remove every key that matches; returns them."""
        doomed = [k for k in self._objects if match(k)]
        for k in doomed:
            self.delete(k)
        return doomed

    def __len__(self) -> int:
        return len(self._objects)

    def forget_prepared(self) -> None:
        """Drop every plain-hit answer built so far (a reload may change what they say)."""
        for variants in self._objects.values():
            for v in variants:
                v.prepared = None


class SecondRequest:
    """Admission for `cache_on_second_request`: a key is admitted the second time it is
    seen within the last `max_keys` keys seen once (a one-hit wonder never is)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._once: OrderedDict[Key, None] = OrderedDict()

    def admit(self, key: Key) -> bool:
        if key in self._once:
            del self._once[key]
            return True
        self._once[key] = None
        if len(self._once) > self.max_keys:
            self._once.popitem(last=False)
        return False
