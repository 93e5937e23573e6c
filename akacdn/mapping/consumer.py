"""Keeping the last known good map (shell helper for TLNS and LLNS).

A `MapHolder` accepts a signed map when its signature verifies and its version is
newer than the one held, persists the signed bytes atomically, and loads them back at
start, so a nameserver answers from its last map with no mapping center at all, also
after its own restart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from ..runtime import Runtime, atomic_write, read_file
from .maps import AnyMap, MapError, newer, verify

M = TypeVar("M", bound=AnyMap)


class MapHolder(Generic[M]):
    def __init__(self, rt: Runtime, kind: type[M], key: str, on_change: Callable[[M], None]) -> None:
        self.rt = rt
        self.kind = kind
        self.key = key
        self.on_change = on_change
        self.keys = rt.net.mapper_keys()
        rt.on_reload(lambda net: setattr(self, "keys", net.mapper_keys()))
        self.path = rt.state_dir / f"lkg-{key}.map"
        self.current: M | None = None
        self.current_bytes: bytes | None = None  # the signed map as received
        self.accepted = rt.counter("akacdn_maps_accepted", "Maps accepted", ("map",))
        self.refused = rt.counter("akacdn_maps_refused", "Maps refused", ("map", "reason"))
        self.version = rt.gauge("akacdn_map_version_seq", "Sequence of the map in use", ("map",))
        self.term = rt.gauge("akacdn_map_version_term", "Leader term of the map in use", ("map",))

    def load_last_known_good(self) -> bool:
        """Start from the persisted map, if there is a valid one."""
        data = read_file(self.path)
        if data is None:
            return False
        ok = self._take(data, persist=False, source="disk")
        if not ok:
            self.rt.record("lkg_map_unusable", map=self.key, path=str(self.path))
        return ok

    def offer(self, data: bytes, persist: bool = True) -> bool:
        """A signed map arrived (over messaging, or from the parent process of a worker);
        True when it became the current map."""
        return self._take(data, persist=persist, source="messaging" if persist else "parent")

    def _take(self, data: bytes, *, persist: bool, source: str) -> bool:
        try:
            m = verify(self.keys, data)
        except MapError as e:
            self.refused.labels(self.key, e.reason).inc()
            self.rt.log.limited("map_refused", map=self.key, reason=e.reason)
            return False
        if not isinstance(m, self.kind) or m.key != self.key:
            self.refused.labels(self.key, "wrong_map").inc()
            return False
        if not newer(m.version, self.current.version if self.current else None):
            if self.current is not None and tuple(m.version) < tuple(self.current.version):
                self.refused.labels(self.key, "older").inc()
            return False
        if persist:
            atomic_write(self.path, data)
        self.current = m
        self.current_bytes = data
        self.accepted.labels(self.key).inc()
        self.term.labels(self.key).set(m.version[0])
        self.version.labels(self.key).set(m.version[1])
        self.rt.record("map_accepted", map=self.key, term=m.version[0], seq=m.version[1], source=source)
        self.on_change(m)
        return True
