"""The disk tier of the edge's store: cached objects that survive a restart.

One file per key under `<state>/cache/<2 hex>/<sha256 of key>`, written atomically
(temporary file, fsync, rename). A file is `MAGIC`, a 4-byte header length, the msgpack
header (the key, and per Vary variant its secondary key, `rfc9111.Entry`, body length
and CRC-32), then the bodies. The index (key -> file, size, last use) is rebuilt at start from the
headers alone; a file whose header does not decode or whose size disagrees with it is
deleted and counted, and a body whose CRC does not match is deleted and counted when
read: a damaged object is never served. The byte budget evicts least recently used
files first; the bytes are counted by `diskusage.Usage`, once for all the worker processes
that share the directory.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import msgspec

from .diskusage import Usage
from .message import BodyStreamError, FileBody
from .rfc9111 import Entry, VaryKey
from .store import Variant

MAGIC = b"AKC2"
INLINE = 16 * 2**20  # bodies up to this are read whole (and may go to the memory tier)
_LEN = struct.Struct("!I")
Key = tuple[str, str]


class _Part(msgspec.Struct, array_like=True):
    vary_key: VaryKey | None
    entry: Entry
    length: int
    crc: int


class _Header(msgspec.Struct, array_like=True):
    key: tuple[str, str]
    parts: list[_Part]

    @property
    def length(self) -> int:
        return sum(p.length for p in self.parts)


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(_Header)


def _crc(body: bytes | FileBody) -> int:
    if isinstance(body, FileBody):
        assert body.crc is not None, "a whole body's CRC is known"
        return body.crc
    return zlib.crc32(body)


def _writer_alive(tmp: Path) -> bool:
    """Whether the process writing a temporary file (`.<name>.<pid>.<thread>`) still runs."""
    parts = tmp.name.split(".")
    try:
        pid = int(parts[2]) if len(parts) == 4 else 0
        if pid <= 0:
            return False
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


def _name(key: Key) -> str:
    return hashlib.sha256(f"{key[0]}\0{key[1]}".encode()).hexdigest()


class DiskStore:
    def __init__(self, root: Path, budget: int, shared: bool = False) -> None:
        self.root = root
        self.budget = budget
        self.dropped = 0  # damaged files deleted
        self.shared = shared  # other processes write here too (`[edge] workers` > 1)
        self.usage = Usage(root, shared)
        self._index: OrderedDict[Key, Path] = OrderedDict()  # least recently used first

    @property
    def used(self) -> int:
        """Bytes of object files in the directory (all processes' when shared)."""
        return self.usage.total

    def _path(self, key: Key) -> Path:
        name = _name(key)
        return self.root / name[:2] / name

    def load(self) -> int:
        """Rebuild the index from the files on disk; returns how many objects it holds."""
        self.root.mkdir(parents=True, exist_ok=True)
        found: list[tuple[float, Key, Path]] = []
        for path in self.root.glob("*/*"):
            if path.name.startswith("."):
                if not _writer_alive(path):
                    path.unlink(missing_ok=True)  # a write that never finished
                continue
            header = self._read_header(path)
            if header is None:
                continue
            found.append((path.stat().st_atime, header.key, path))
        for _, key, path in sorted(found):
            self._index[key] = path
        with self.usage.locked():
            self.usage.recount(p for p in self.root.glob("*/*") if not p.name.startswith("."))
        self._evict()
        return len(self._index)

    def _drop(self, path: Path) -> None:
        self.dropped += 1
        self.usage.unlink(path)

    def _read_header(self, path: Path) -> _Header | None:
        try:
            with open(path, "rb") as f:
                head = f.read(8)
                if len(head) != 8 or head[:4] != MAGIC:
                    raise ValueError("bad magic")
                (n,) = _LEN.unpack(head[4:])
                header = _dec.decode(f.read(n))
            if path.stat().st_size != 8 + n + header.length:
                raise ValueError("size does not match the header")
            return header
        except (OSError, ValueError, msgspec.DecodeError, msgspec.ValidationError):
            self._drop(path)
            return None

    def get(self, key: Key) -> list[Variant] | None:
        """The object, or None (absent, or damaged: then it is deleted and counted). Bodies
        up to `INLINE` bytes are read and checked now; larger ones come as a `FileBody`
        read in pieces when served (checked as its last piece is read)."""
        path = self._index.get(key)
        if path is None:
            if not self.shared:
                return None
            # another worker process may have stored it since this one built its index
            path = self._index[key] = self._path(key)
        f = None
        try:
            f = open(path, "rb")  # noqa: SIM115 -- a large body's FileBody keeps it open
            head = f.read(8)
            (n,) = _LEN.unpack_from(head, 4)
            header = _dec.decode(f.read(n))
            if head[:4] != MAGIC or os.fstat(f.fileno()).st_size != 8 + n + header.length or tuple(header.key) != key:
                raise ValueError("damaged")
            variants, at, kept = [], 8 + n, False
            for part in header.parts:
                body: bytes | FileBody
                if part.length > INLINE:
                    body, kept = FileBody(f, at, part.length, part.crc, path), True
                else:
                    body = os.pread(f.fileno(), part.length, at)
                    if len(body) != part.length or zlib.crc32(body) != part.crc:
                        raise ValueError("damaged")
                variants.append(Variant(part.vary_key, part.entry, body))
                at += part.length
            if not kept:
                f.close()
        except FileNotFoundError:  # not stored, or evicted or purged by another worker: not damage
            del self._index[key]
            return None
        except (OSError, ValueError, struct.error, msgspec.DecodeError, msgspec.ValidationError):
            if f is not None:
                f.close()
            del self._index[key]
            self._drop(path)
            return None
        self._index.move_to_end(key)
        return variants

    def put(self, key: Key, variants: list[Variant]) -> None:
        """Write a key's variants atomically, then evict to the budget."""
        path = self.write(key, variants)
        if path is not None:
            self.add(key, path)

    def write(self, key: Key, variants: list[Variant]) -> Path | None:
        """Write a key's file atomically (and count it); its path, or None when over the budget. Only
        file I/O (safe in a thread for large bodies); `add` then indexes it. A `FileBody`
        (a spooled large body) is copied in pieces, never read whole."""
        total = sum(len(v.body) for v in variants)
        if total > self.budget:
            return None
        parts = [_Part(v.vary_key, v.entry, len(v.body), _crc(v.body)) for v in variants]
        header = _enc.encode(_Header(key, parts))
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            with open(tmp, "wb") as f:
                f.write(MAGIC + _LEN.pack(len(header)) + header)
                for v in variants:
                    if isinstance(v.body, FileBody):
                        for piece in v.body.pieces():
                            f.write(piece)
                    else:
                        f.write(v.body)
                f.flush()
                os.fsync(f.fileno())
            self.usage.replace(tmp, path)
        except BodyStreamError as e:  # a spool that does not read back as it was written
            tmp.unlink(missing_ok=True)
            raise OSError(str(e)) from None
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        return path

    def add(self, key: Key, path: Path) -> None:
        """Index a file `write` wrote, then evict to the budget."""
        self._index.pop(key, None)
        self._index[key] = path
        self._evict(spare=key)

    def delete(self, key: Key) -> None:
        path = self._index.pop(key, None)
        if path is not None:
            self.usage.unlink(path)

    def delete_where(self, match: Callable[[Key], bool]) -> list[Key]:
        """Remove every object whose key matches; returns their keys."""
        doomed = [k for k in self._index if match(k)]
        for k in doomed:
            self.delete(k)
        return doomed

    def _evict(self, spare: Key | None = None) -> None:
        """Delete least recently used files (of those this process knows) until the
        directory is within the budget; never `spare`, the object just stored (while other
        processes hold the rest, they evict at their next store)."""
        if self.usage.total <= self.budget:
            return
        with self.usage.locked():
            while self.usage.total > self.budget and self._index:
                key, path = next(iter(self._index.items()))
                if key == spare:
                    if len(self._index) == 1:
                        break
                    self._index.move_to_end(key)
                    continue
                del self._index[key]
                self.usage.unlink_locked(path)

    def __len__(self) -> int:
        return len(self._index)
