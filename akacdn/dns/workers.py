"""`[dns] workers = N`: N nameserver processes sharing the DNS port (SO_REUSEPORT).

The daemon's process forks N-1 workers before it creates any event loop. Each worker
serves DNS only; the parent also does messaging, maps, management and reloads. They
talk over one socketpair per worker, in frames of `kind (1 byte) + length (4) + body`:

  parent -> worker   M  a signed map the parent accepted (verified again, not persisted)
                     R  reload the config (the parent got SIGHUP)
  worker -> parent   S  the worker's DNS counters (msgpack), every second

A worker that loses its parent exits (EOF on the link, and PR_SET_PDEATHSIG); a parent
that loses a worker exits non-zero, so systemd restarts the whole set from the last
known good map: a crashed worker is never silently missing.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import struct
from collections.abc import Callable

import msgspec

_HEAD = struct.Struct("!cI")
MAX_FRAME = 16 * 2**20


class Link:
    """One end of a parent-worker socketpair, as asyncio streams."""

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock = sock
        self.index = index
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(sock=self.sock)

    def send(self, kind: bytes, body: bytes) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(_HEAD.pack(kind, len(body)) + body)

    async def receive(self) -> tuple[bytes, bytes]:
        """The next frame; raises EOFError when the other side is gone."""
        assert self.reader is not None
        try:
            kind, size = _HEAD.unpack(await self.reader.readexactly(_HEAD.size))
            if size > MAX_FRAME:
                raise EOFError("oversized frame")
            return kind, await self.reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            raise EOFError(str(e)) from None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        else:
            self.sock.close()


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def fork_workers(count: int, worker: Callable[[int, Link], int]) -> list[Link]:
    """Fork `count` workers; each runs `worker(index, link)` and exits with its result.

    Returns the parent's links. Call before any event loop exists in this process."""
    links: list[Link] = []
    for index in range(1, count + 1):
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                parent_end.close()
                for other in links:
                    other.sock.close()
                _die_with_parent()
                code = worker(index, Link(child_end, index))
            finally:
                os._exit(code)
        child_end.close()
        links.append(Link(parent_end, index))
    return links


_stats_enc = msgspec.msgpack.Encoder()
Snapshot = dict[str, list[tuple[list[str], float]]]
_stats_dec = msgspec.msgpack.Decoder(Snapshot)


def encode_stats(snapshot: Snapshot) -> bytes:
    return _stats_enc.encode(snapshot)


def decode_stats(body: bytes) -> Snapshot:
    return _stats_dec.decode(body)
