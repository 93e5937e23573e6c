"""The operators' suspensions (machines or whole regions out of the maps), as every
mapping center keeps them.

Only the leader changes them (an operator's request to any center is forwarded to it);
each change bumps the version (leader term, count), and the leader sends the whole set
with its version in every status, so every center holds the newest set, persisted in
its state directory, and a new leader starts from it: suspensions survive a change of
leader and a restart. A suspended machine keeps running and heartbeating; it is only
left out of the maps, so it finishes what it serves.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from ..config import Network
from ..runtime import atomic_write, read_file
from .messages import Suspension

Version = tuple[int, int]


class _Saved(msgspec.Struct):
    version: Version
    items: list[Suspension]


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(_Saved)


class Suspensions:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.version: Version = (0, 0)
        self.items: dict[tuple[str, str], Suspension] = {}
        raw = read_file(path)
        if raw:
            try:
                saved = _dec.decode(raw)
                self.version, self.items = tuple(saved.version), {(s.kind, s.id): s for s in saved.items}  # type: ignore[assignment]
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
                pass  # an unreadable file: start empty, the leader's set comes with its status

    def _save(self) -> None:
        atomic_write(self.path, _enc.encode(_Saved(self.version, self.listed())))

    def listed(self) -> list[Suspension]:
        return sorted(self.items.values(), key=lambda s: (s.kind, s.id))

    def change(self, term: int, kind: str, ident: str, reason: str, suspend: bool) -> bool:
        """The leader's change (under its term); False when nothing changed."""
        key = (kind, ident)
        if suspend:
            old = self.items.get(key)
            if old is not None and old.reason == reason:
                return False
            self.items[key] = Suspension(kind, ident, reason, time.time())  # type: ignore[arg-type]
        elif self.items.pop(key, None) is None:
            return False
        n = self.version[1] + 1 if self.version[0] == term else 1
        self.version = (term, n)
        self._save()
        return True

    def adopt(self, version: Version, items: list[Suspension]) -> bool:
        """The leader's set, if newer than ours; True when adopted."""
        if tuple(version) <= self.version:
            return False
        self.version = tuple(version)  # type: ignore[assignment]
        self.items = {(s.kind, s.id): s for s in items}
        self._save()
        return True

    def machines(self, net: Network) -> dict[str, str]:
        """Every machine held out, with the reason."""
        out = {}
        regions = {s.id: s.reason for s in self.items.values() if s.kind == "region"}
        for m in net.machines:
            s = self.items.get(("machine", m.id))
            if s is not None:
                out[m.id] = f"suspended: {s.reason}"
            elif m.region in regions:
                out[m.id] = f"region {m.region} suspended: {regions[m.region]}"
        return out
