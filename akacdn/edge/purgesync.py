"""Purges that must not be lost (asyncio shell): the edge's place in each mapping
center's purge journal, and catching up on what it missed.

Each center journals every purge (`messaging.journal`) and publishes each entry on the
`purge` topic. The edge applies entries as they come and keeps, per center, the
journal's id and the highest sequence up to which it applied everything (persisted in
`purge-cursor.json` after each advance). It reads the journal over HTTP
(`messaging.transport.Fetcher`) from its cursor:

- at start, before it serves anything from its disk tier (an edge that was down missed
  purges, and its disk tier survived the restart);
- when an entry arrives out of order (a gap), when the receiver gives up on a purge
  message, or when a center's `Announce` shows a head beyond the cursor for `grace`.

A cursor older than the journal keeps (410 Gone), or a journal the edge never read
while it holds cached objects, means purges may have been missed that can no longer be
named: the disk tier is dropped (`wipe`), and the cursor moves to the head. A journal
with a new id (a center whose state was lost) is read from its start.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import msgspec

from ..mapping.messages import Announce
from ..messaging.journal import Entry, decode_entry
from ..messaging.transport import Fetcher, TransportError
from ..runtime import Runtime, atomic_write, read_file, woken

JOURNAL = "purge"


class Cursor:
    __slots__ = ("journal", "seq", "above")

    def __init__(self, journal: str, seq: int) -> None:
        self.journal, self.seq = journal, seq
        self.above: set[int] = set()  # applied out of order, above seq

    def advance(self, seq: int) -> bool:
        """Applied entry `seq`; True when the contiguous cursor moved."""
        if seq <= self.seq:
            return False
        if seq != self.seq + 1:
            self.above.add(seq)
            return False
        self.seq = seq
        while self.seq + 1 in self.above:
            self.seq += 1
            self.above.discard(self.seq)
        return True


_announce = msgspec.msgpack.Decoder(Announce)


class PurgeSync:
    def __init__(
        self, rt: Runtime, apply: Callable[[bytes, str], None], wipe: Callable[[], int], cached: Callable[[], int]
    ):
        """`apply(body, source)` applies one purge (idempotent by its id); `wipe()` drops
        the disk tier; `cached()` counts the objects held (a fresh edge need not catch up)."""
        self.rt = rt
        self.apply, self.wipe, self.cached = apply, wipe, cached
        self.path = rt.state_dir / "purge-cursor.json"
        self.cursors: dict[str, Cursor] = {}
        self.fetcher = Fetcher(rt)
        self.grace = rt.net.timing.map_interval
        self._behind: dict[str, float] = {}  # center -> since when we think we are behind
        self._kick = asyncio.Event()
        self.synced = False  # every center's journal read once since start
        self.caught = rt.counter("akacdn_edge_purge_catchups", "Journal reads", ("result",))
        self._load()

    def _load(self) -> None:
        raw = read_file(self.path)
        if not raw:
            return
        try:
            for center, (journal, seq) in json.loads(raw).items():
                self.cursors[str(center)] = Cursor(str(journal), int(seq))
        except (ValueError, TypeError):
            self.rt.record("purge_cursor_unusable", path=str(self.path))
            self.cursors = {}

    def _save(self) -> None:
        data = {c: [cur.journal, cur.seq] for c, cur in self.cursors.items()}
        atomic_write(self.path, json.dumps(data, sort_keys=True).encode())

    def _centers(self) -> list[str]:
        return [m.id for m in self.rt.net.by_role("mapper")]

    # -- live input -----------------------------------------------------------------------
    def on_entry(self, center: str, body: bytes) -> None:
        """A journal entry published by a center."""
        if center not in self._centers():
            self.caught.labels("unknown_center").inc()
            return
        try:
            entry = decode_entry(body)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            self.caught.labels("malformed_entry").inc()
            return
        self.apply(entry.body, "messaging")
        c = self.cursors.get(center)
        if c is None or c.journal != entry.journal:
            self._behind.setdefault(center, 0.0)  # read it from where we are: at once
            self._kick.set()
            return
        if c.advance(entry.seq):
            self._save()
        elif c.above:
            self._behind.setdefault(center, time.monotonic())
            self._kick.set()

    def on_announce(self, body: bytes) -> None:
        try:
            a = _announce.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            return
        got = a.journals.get(JOURNAL)
        if got is None or a.center not in self._centers():
            return
        journal, head = got
        c = self.cursors.get(a.center)
        if c is None or c.journal != journal or head > c.seq:
            self._behind.setdefault(a.center, time.monotonic())
            self._kick.set()
        else:
            self._behind.pop(a.center, None)

    def on_lost(self, topic: str, sender: str, seq: int) -> None:
        if topic == JOURNAL:
            self._behind[sender] = 0.0
            self._kick.set()

    # -- catching up ----------------------------------------------------------------------
    async def catch_up(self, center: str) -> bool:
        """Read `center`'s journal from our cursor to its head; False when unreachable."""
        c = self.cursors.get(center)
        since = c.seq if c is not None else 0
        while True:
            try:
                page = await self.fetcher.journal(center, JOURNAL, since)
            except TransportError as e:
                self.caught.labels("unreachable").inc()
                self.rt.log.limited("purge_catchup_failed", center=center, error=str(e))
                return False
            fresh = c is None and not self.cached()
            if c is not None and page.journal != c.journal and since:  # a new journal: from its start
                c, since = None, 0
                continue
            if page.gone or (c is None and not fresh and page.first > 1):
                removed = self.wipe()
                self.rt.record("purge_journal_gone", center=center, since=since, head=page.head, wiped=removed)
                self.caught.labels("gone").inc()
                c = self.cursors[center] = Cursor(page.journal, page.head)
                self._save()
                return True
            if fresh:  # nothing cached: no past purge concerns us
                c = self.cursors[center] = Cursor(page.journal, page.head)
                self._save()
                self.caught.labels("fresh").inc()
                return True
            if c is None:
                c = self.cursors[center] = Cursor(page.journal, 0)
            for entry in page.entries:
                self._apply_entry(c, entry)
            self._save()
            self.caught.labels("ok").inc()
            if not page.more:
                self._behind.pop(center, None)
                return True
            since = c.seq

    def _apply_entry(self, c: Cursor, entry: Entry) -> None:
        if entry.seq > c.seq and entry.seq not in c.above:
            self.apply(entry.body, "journal")
        c.advance(entry.seq)

    async def start(self) -> bool:
        """Catch up with every center (concurrently); True when all answered."""
        centers = self._centers()
        results = await asyncio.gather(*(self.catch_up(c) for c in centers))
        self.synced = all(results)
        return self.synced

    async def run(self, on_synced: Callable[[], None]) -> None:
        """Until cancelled: catch up whenever we are behind (and, until every center was
        read once, every second); `on_synced` when that first happens after start."""
        try:
            while True:
                self._kick.clear()
                await woken(self._kick, self.grace)
                if not self.synced:
                    if await self.start():
                        on_synced()
                    continue
                now = time.monotonic()
                for center, since in list(self._behind.items()):
                    if now - since >= self.grace or since == 0.0:
                        await self.catch_up(center)
        finally:
            await self.fetcher.close()
