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
from collections.abc import AsyncIterator, Callable


class Request:
    __slots__ = ("method", "target", "headers", "remote", "body")

    def __init__(self, method: str, target: str, headers: list[tuple[str, str]], remote: str, body: bytes = b""):
        self.method = method
        self.target = target  # as sent: origin-form or absolute-form
        self.headers = headers
        self.remote = remote
        self.body = body

    def header(self, name: str) -> str | None:
        """The first value of a field (name in lower case)."""
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


class BodyStreamError(Exception):
    """The origin body ended early or broke: readers stop, and the client's connection is
    closed without completing the message (never a short body passed off as whole)."""


class BodyStream:
    """One body arriving in chunks, read by any number of readers from its start.

    The writer calls `feed` per chunk and then `finish` (or `fail`). Readers iterate
    `chunks()`: what has arrived, then each new chunk as it comes."""

    def __init__(self, length: int | None) -> None:
        self.length = length  # announced length, None for chunked origin responses
        self.size = 0
        self.done = False
        self.error: BodyStreamError | None = None
        self._chunks: list[bytes] = []
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

    def whole(self) -> bytes:
        """The complete body (once `done` without error); readers may still be iterating."""
        return self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)

    async def chunks(self) -> AsyncIterator[bytes]:
        """Every chunk from the first, waiting for those not yet arrived."""
        i = 0
        while True:
            while i < len(self._chunks):
                yield self._chunks[i]
                i += 1
            if self.error is not None:
                raise self.error
            if self.done:
                return
            await self._changed.wait()

    async def read_all(self) -> bytes:
        """Wait for the end of the body and return it whole."""
        while not self.done:
            await self._changed.wait()
        if self.error is not None:
            raise self.error
        return self.whole()


Body = bytes | BodyStream


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
