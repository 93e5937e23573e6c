"""The leader's orders to every daemon, as its `Announce` carries them each map interval:
the recovery mode (roll, or recover in place) and the release order. Only the newest
term's leader is followed (a deposed leader's announce is ignored)."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from ..mapping.messages import Announce
from ..runtime import Runtime

_announce = msgspec.msgpack.Decoder(Announce)


class Orders:
    def __init__(self, rt: Runtime, on_release: Callable[[bytes, str], None] | None = None) -> None:
        self.rt = rt
        self.on_release = on_release
        self.term = 0
        self.centers = {m.id for m in rt.net.by_role("mapper")}

    def on_announce(self, body: bytes) -> None:
        try:
            a = _announce.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            return  # counted where the map feed decodes it
        if a.term <= 0 or a.term < self.term or a.center not in self.centers:
            return
        self.term = a.term
        if self.rt.recovery is not None:
            self.rt.recovery.set_mode(a.mode)
        if self.on_release is not None and a.release:
            self.on_release(a.release, a.center)
