"""Keeping a nameserver's map current (asyncio shell): maps come pushed over messaging,
and over the reliable transport (HTTP) when the push is not enough:

- at start (the map kept on disk may be old, and nothing is pushed until a map changes),
- when a center's `Announce` names a version newer than ours that has not arrived
  within `grace` (one map interval: the push is usually already here),
- when the messaging receiver gives up on a map message (lost chunks past the deadline),
- when nothing about maps was heard for `stale_after` (cut off from the real-time
  network: poll every `stale_after` while it lasts).

Every fetched map goes through the same `offer` as a pushed one (signature, version).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec

from ..messaging.transport import Fetcher
from ..runtime import Runtime, woken
from .maps import newer
from .messages import Announce

_announce = msgspec.msgpack.Decoder(Announce)


class MapFeed:
    def __init__(
        self, rt: Runtime, key: str, current: Callable[[], tuple[int, int] | None], offer: Callable[[bytes], bool]
    ):
        self.rt, self.key, self.current, self.offer = rt, key, current, offer
        self.fetcher = Fetcher(rt)
        self.grace = rt.net.timing.map_interval
        self.stale_after = max(10.0, 10 * rt.net.timing.map_interval)
        self._wanted: dict[str, tuple[tuple[int, int] | None, float]] = {}  # center -> (version, noted at)
        self._kick = asyncio.Event()
        self._heard = time.monotonic()
        self.fetched = rt.counter("akacdn_map_fetches", "Maps fetched over HTTP", ("reason", "result"))

    def heard(self) -> None:
        """A map arrived over messaging."""
        self._heard = time.monotonic()

    def on_announce(self, body: bytes) -> None:
        try:
            a = _announce.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            self.rt.log.limited("announce_refused", reason="malformed")
            return
        self._heard = time.monotonic()
        version = a.maps.get(self.key)
        if version is None or a.center not in {m.id for m in self.rt.net.by_role("mapper")}:
            return
        if newer(version, self.current()) and a.center not in self._wanted:
            self._wanted[a.center] = (tuple(version), time.monotonic())  # type: ignore[assignment]
            self._kick.set()

    def on_lost(self, topic: str, sender: str, seq: int) -> None:
        if topic == f"map.{self.key}":
            self._wanted[sender] = (None, time.monotonic() - self.grace)  # at once
            self._kick.set()

    async def fetch(self, center: str, want: tuple[int, int] | None, reason: str) -> bool:
        data = await self.fetcher.map(center, self.key, have=self.current(), want=want)
        if data is None:
            self.fetched.labels(reason, "nothing_newer").inc()
            return False
        ok = self.offer(data)
        self.fetched.labels(reason, "accepted" if ok else "refused").inc()
        return ok

    async def run(self) -> None:
        """Until cancelled."""
        try:
            for m in self.rt.net.by_role("mapper"):
                await self.fetch(m.id, None, "start")
            while True:
                self._kick.clear()
                await woken(self._kick, self.grace)
                now = time.monotonic()
                for center, (version, noted) in list(self._wanted.items()):
                    if version is not None and not newer(version, self.current()):
                        del self._wanted[center]  # the push brought it
                    elif now - noted >= self.grace:
                        del self._wanted[center]
                        await self.fetch(center, version, "announced" if version else "lost")
                if now - self._heard >= self.stale_after:
                    self._heard = now
                    for m in self.rt.net.by_role("mapper"):
                        await self.fetch(m.id, None, "stale")
        finally:
            await self.fetcher.close()
