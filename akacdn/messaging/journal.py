"""An append-only journal of opaque entries, numbered from 1 and kept on disk (for what
must not be lost: purges). The mapping centers keep one; consumers read it by sequence
over HTTP (`transport`) and get each new entry over messaging as an `Entry`.

File format: a sequence of records `u32 length | msgpack [seq, at, body]`, appended and
fsynced one at a time; the journal's identity (`id`, random, made with the file) is the
first record's body. A torn last record (a crash mid-append) is cut off at load. The
journal keeps the newest `retain` entries: when the file holds twice that, it is
rewritten (atomically) with the newest `retain`. A reader whose `since` is older than
the oldest kept entry is told so (`Page.gone`), like a Kubernetes watch's 410: it must
start over from a snapshot (for purges: drop everything cached before).
"""

from __future__ import annotations

import os
import secrets
import struct
from collections import deque
from pathlib import Path

import msgspec

from ..runtime import atomic_write

_LEN = struct.Struct(">I")


class Entry(msgspec.Struct, array_like=True, frozen=True):
    """One journal entry as published on messaging: which journal, its sequence, the body."""

    journal: str
    seq: int
    at: float
    body: bytes


class Page(msgspec.Struct, frozen=True):
    """A read of the journal: entries after `since` (up to a page), the head, and whether
    `since` was older than what is kept (`gone`: the reader must reset)."""

    journal: str
    head: int
    first: int  # the oldest sequence kept
    entries: list[Entry]
    gone: bool = False
    more: bool = False


class _Record(msgspec.Struct, array_like=True, frozen=True):
    seq: int
    at: float
    body: bytes


_enc = msgspec.msgpack.Encoder()
_rec = msgspec.msgpack.Decoder(_Record)
_page = msgspec.msgpack.Decoder(Page)
_entry = msgspec.msgpack.Decoder(Entry)


def decode_page(data: bytes) -> Page:
    return _page.decode(data)


def decode_entry(data: bytes) -> Entry:
    return _entry.decode(data)


class Journal:
    def __init__(self, path: Path, retain: int = 100_000, page: int = 1000) -> None:
        self.path = path
        self.retain = retain
        self.page_size = page
        self._entries: deque[_Record] = deque()
        self.id = ""
        self._records = 0
        self._load()

    @property
    def head(self) -> int:
        return self._entries[-1].seq if self._entries else self._base

    def _load(self) -> None:
        self._base = 0
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        records, good = [], 0
        pos = 0
        while pos + 4 <= len(data):
            (n,) = _LEN.unpack_from(data, pos)
            if pos + 4 + n > len(data):
                break
            try:
                records.append(_rec.decode(data[pos + 4 : pos + 4 + n]))
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
                break
            pos += 4 + n
            good = pos
        if not records:
            self.id = secrets.token_hex(8)
            self._rewrite([])
            return
        if good != len(data):  # a torn or damaged tail: keep what is whole
            with open(self.path, "r+b") as f:
                f.truncate(good)
        self.id = records[0].body.decode()
        body = records[1:]
        self._base = max(0, body[0].seq - 1) if body else records[0].seq
        self._entries.extend(body[-self.retain :])
        if body and len(body) > self.retain:
            self._base = self._entries[0].seq - 1
        self._records = len(records)

    def _rewrite(self, keep: list[_Record]) -> None:
        base = keep[0].seq - 1 if keep else self.head if self._entries else self._base
        out = bytearray()
        for rec in [_Record(base, 0.0, self.id.encode()), *keep]:
            raw = _enc.encode(rec)
            out += _LEN.pack(len(raw)) + raw
        atomic_write(self.path, bytes(out))
        self._records = 1 + len(keep)

    def append(self, body: bytes, at: float) -> Entry:
        """Add an entry, durably (fsync) before it is returned."""
        rec = _Record(self.head + 1, at, body)
        raw = _enc.encode(rec)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            f.write(_LEN.pack(len(raw)) + raw)
            f.flush()
            os.fsync(f.fileno())
        self._entries.append(rec)
        self._records += 1
        if len(self._entries) > self.retain:
            self._entries.popleft()
            self._base = self._entries[0].seq - 1
        if self._records > 2 * self.retain + 1:
            self._rewrite(list(self._entries))
        return Entry(self.id, rec.seq, rec.at, rec.body)

    def read(self, since: int) -> Page:
        """Entries after `since`, at most a page."""
        first = self._entries[0].seq if self._entries else self.head + 1
        if since < first - 1:
            return Page(self.id, self.head, first, [], gone=True)
        start = since - first + 1
        picked = [self._entries[i] for i in range(max(0, start), min(len(self._entries), start + self.page_size))]
        more = start + self.page_size < len(self._entries)
        entries = [Entry(self.id, r.seq, r.at, r.body) for r in picked]
        return Page(self.id, self.head, first, entries, more=more)

    def encode_page(self, since: int) -> tuple[Page, bytes]:
        page = self.read(since)
        return page, _enc.encode(page)


def encode(obj: object) -> bytes:
    return _enc.encode(obj)
