"""The edge's HTTP messages as the request flow sees them, whatever server carries them.

`Request` is a parsed client request (the HTTP/1.1 shell in `http1` fills it in);
`Response` is what the flow answers: a status, the header lines (framing is the
server's job: it adds `Content-Length` or chunked coding, `Date` when missing, and
`Connection`), and a body that is either bytes or a `BodyStream` still arriving from
the origin. `BodyStream` lets any number of readers (coalesced clients, the store)
read one origin body as it arrives.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import BinaryIO


class Request:
    __slots__ = ("method", "target", "headers", "remote", "body", "scheme", "from_child")

    def __init__(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        remote: str,
        body: bytes = b"",
        scheme: str = "http",
    ):
        self.method = method
        self.target = target  # as sent: origin-form or absolute-form
        self.headers = headers
        self.remote = remote
        self.body = body
        self.scheme = scheme  # "https" when it came over TLS
        self.from_child = False  # a child edge's miss (tiered distribution): never to a parent again

    def header(self, name: str) -> str | None:
        """The first value of a field (name in lower case)."""
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


class BodyStreamError(Exception):
    """The origin body ended early or broke: readers stop, and the client's connection is
    closed without completing the message (never a short body passed off as whole)."""


READ = 256 * 1024  # bytes per read from a spool or a stored file


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class FileBody:
    """A body (or a byte range of one) kept in a file, read in pieces, never whole: a
    large object on disk, or a spooled origin body. `crc` (of the whole part) is checked
    as the last piece is read; a mismatch raises `BodyStreamError` (never served whole)."""

    __slots__ = ("file", "offset", "length", "crc", "path")

    def __init__(self, file: BinaryIO, offset: int, length: int, crc: int | None, path: Path | None = None) -> None:
        self.file, self.offset, self.length, self.crc = file, offset, length, crc
        self.path = path  # the store's file: deleted when found damaged

    def __len__(self) -> int:
        return self.length

    def part(self, start: int, stop: int) -> FileBody:
        """A byte range of it (its CRC is of the whole, so not checked for a range)."""
        return FileBody(self.file, self.offset + start, stop - start, None, self.path)

    def pieces(self) -> Iterator[bytes]:
        fd, at, end, crc = self.file.fileno(), self.offset, self.offset + self.length, 0
        while at < end:
            data = os.pread(fd, min(READ, end - at), at)
            if not data:
                raise BodyStreamError("stored body shorter than its header says")
            at += len(data)
            if self.crc is not None:
                crc = zlib.crc32(data, crc)
                if at == end and crc != self.crc:
                    if self.path is not None:
                        self.path.unlink(missing_ok=True)  # the index drops it at its next use
                    raise BodyStreamError("stored body damaged (CRC)")
            yield data


class BodyStream:
    """One body arriving in chunks, read by any number of readers from its start.

    The writer calls `feed` per chunk and then `finish` (or `fail`). Readers iterate
    `chunks()`: what has arrived, then each new chunk as it comes. Up to `in_memory`
    bytes are kept as chunks; past that the whole body goes to an unnamed spool file in
    `spool_dir` (readers go on from there by offset), so a large body is never held in
    memory; `stored()` hands the result to the store either way."""

    def __init__(self, length: int | None, spool_dir: Path | None = None, in_memory: int = 16 * 2**20) -> None:
        self.length = length  # announced length, None for chunked origin responses
        self.size = 0
        self.crc = 0
        self.done = False
        self.error: BodyStreamError | None = None
        self._chunks: list[bytes] = []
        self._spool: BinaryIO | None = None
        self._spool_dir, self._in_memory = spool_dir, in_memory
        self._changed = asyncio.Event()
        self._when_done: list[Callable[[], None]] = []

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        if self.done:
            for call in self._when_done:
                call()
            self._when_done.clear()

    def when_done(self, call: Callable[[], None]) -> None:
        """Call `call` once the body has ended (whole or broken); now if it has."""
        if self.done:
            call()
        else:
            self._when_done.append(call)

    def feed(self, chunk: bytes) -> None:
        self.crc = zlib.crc32(chunk, self.crc)
        if self._spool is None and self._spool_dir is not None and self.size + len(chunk) > self._in_memory:
            # unnamed (gone with its last reader), unbuffered (readers pread what was written)
            self._spool = tempfile.TemporaryFile(dir=self._spool_dir, buffering=0)
            _write_all(self._spool.fileno(), b"".join(self._chunks))
            self._chunks = []
        if self._spool is not None:
            _write_all(self._spool.fileno(), chunk)
        else:
            self._chunks.append(chunk)
        self.size += len(chunk)
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()

    def fail(self, reason: str) -> None:
        self.error = BodyStreamError(reason)
        self.done = True
        self._wake()

    def stored(self) -> bytes | FileBody:
        """The complete body (once `done` without error): bytes, or the spool file."""
        if self._spool is not None:
            return FileBody(self._spool, 0, self.size, self.crc)
        return self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)

    async def chunks(self) -> AsyncIterator[bytes]:
        """Every byte from the first, in chunks, waiting for those not yet arrived."""
        i = sent = 0
        while True:
            if self._spool is None:
                while i < len(self._chunks) and self._spool is None:
                    chunk = self._chunks[i]
                    i += 1
                    sent += len(chunk)
                    yield chunk
            else:
                while sent < self.size:
                    data = os.pread(self._spool.fileno(), min(READ, self.size - sent), sent)
                    if not data:
                        raise BodyStreamError("spool shorter than what was written to it")
                    sent += len(data)
                    yield data
            if self.error is not None:
                raise self.error
            if self.done and sent >= self.size:
                return
            if sent >= self.size:
                await self._changed.wait()

    async def ended(self) -> None:
        """Wait for the end of the body; raises `BodyStreamError` if it broke."""
        while not self.done:
            await self._changed.wait()
        if self.error is not None:
            raise self.error

    async def read_all(self) -> bytes:
        """Wait for the end of the body and return it whole (for bodies that were not spooled)."""
        await self.ended()
        body = self.stored()
        return body if isinstance(body, bytes) else b"".join(body.pieces())


Body = bytes | BodyStream | FileBody


class Response:
    __slots__ = ("status", "headers", "body", "length", "x_cache")

    def __init__(
        self, status: int, headers: list[tuple[str, str]], body: Body, length: int | None, x_cache: str
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body  # b"" for HEAD, 304, 204
        self.length = length  # the Content-Length to announce; None: not known (chunked)
        self.x_cache = x_cache

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None
