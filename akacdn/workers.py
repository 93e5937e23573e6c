"""Worker processes sharing a daemon's port (SO_REUSEPORT): `[dns] workers = N` for the
nameservers, `[edge] workers = N` for the edge.

The daemon's process forks N-1 workers before it creates any event loop. Each worker
serves its port only; the parent also does messaging, maps, management and reloads.
They talk over one socketpair per worker, in frames of `kind (1 byte) + length (4) +
body`. Common kinds (each daemon adds its own):

  parent -> worker   R  reload the config (the parent got SIGHUP)
  worker -> parent   S  the worker's counters (msgpack), every second

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
from collections.abc import Callable, Iterator

import msgspec
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

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


# --- a worker's whole metrics registry, added up in the parent's /metrics ---------------------

_Sample = tuple[str, dict[str, str], float]
_Family = tuple[str, str, str, list[_Sample]]  # name, type, help, samples
_families_dec = msgspec.msgpack.Decoder(list[_Family])


def registry_snapshot(registry: CollectorRegistry) -> bytes:
    """Every sample of a registry but the `_created` timestamps, for the parent to add up."""
    fams = [
        (
            m.name,
            m.type,
            m.documentation,
            [(s.name, s.labels, s.value) for s in m.samples if not s.name.endswith("_created")],
        )
        for m in registry.collect()
    ]
    return _stats_enc.encode(fams)


class MergedMetrics:
    """The parent's registry with its workers' samples added in: counters, gauges and
    histogram buckets of one name and labels are summed (so a gauge reads as the total
    over the processes, e.g. cached objects)."""

    def __init__(self, own: CollectorRegistry) -> None:
        self.own = own
        self.workers: dict[int, list[_Family]] = {}

    def take(self, index: int, body: bytes) -> None:
        try:
            self.workers[index] = _families_dec.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            pass  # a bad frame from our own worker: keep its last good snapshot

    def collect(self) -> Iterator[Metric]:
        fams = {m.name: m for m in self.own.collect()}
        for snapshot in self.workers.values():
            for name, kind, doc, samples in snapshot:
                fam = fams.get(name)
                if fam is None:
                    fam = fams[name] = Metric(name, doc, kind)
                at = {(s.name, tuple(sorted(s.labels.items()))): i for i, s in enumerate(fam.samples)}
                for sample_name, labels, value in samples:
                    i = at.get((sample_name, tuple(sorted(labels.items()))))
                    if i is None:
                        fam.add_sample(sample_name, labels, value)
                    else:
                        old = fam.samples[i]
                        fam.samples[i] = old._replace(value=old.value + value)
        yield from fams.values()


async def from_parent(link: Link, reload: Callable[[], object], handle: Callable[[bytes, bytes], None]) -> None:
    """Worker side: the parent's frames until it is gone (then RuntimeError: the worker
    exits). R reloads the config; every other kind goes to `handle(kind, body)`."""
    while True:
        try:
            kind, body = await link.receive()
        except EOFError:
            raise RuntimeError("parent gone") from None
        if kind == b"R":
            reload()
        else:
            handle(kind, body)
