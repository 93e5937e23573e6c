"""Origin requests with request coalescing (asyncio shell).

Concurrent misses for one key (and the same request fields a response may vary on)
share one origin request: the first caller fetches, the others await its result and
are told they were collapsed. Unsafe methods are forwarded one by one. Origin
connections are pooled (keep-alive) with connect and read timeouts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from ..config import Customer
from .fields import end_to_end
from .message import BodyStream, BodyStreamError, FileBody

# request fields forwarded to the origin (a denylist would pass on anything a client invents)
FORWARDED = frozenset(
    {
        "accept",
        "accept-language",
        "authorization",
        "cache-control",
        "content-type",
        "cookie",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-unmodified-since",
        "pragma",
        "referer",
        "user-agent",
    }
)


# request fields that make a different origin answer whatever the response's Vary says
COLLAPSE_ON = frozenset(
    {"authorization", "cookie", "if-match", "if-modified-since", "if-none-match", "if-unmodified-since"}
)


class OriginResponse:
    """An origin's answer as soon as its head arrived; `body` streams in behind it."""

    __slots__ = ("status", "headers", "body", "request_time", "response_time", "asked_with", "forget")

    def __init__(
        self, status: int, headers: list[tuple[str, str]], body: BodyStream, request_time: float, response_time: float
    ) -> None:
        self.status, self.headers, self.body = status, headers, body
        self.request_time, self.response_time = request_time, response_time
        self.asked_with: list[tuple[str, str]] = []  # the client request fields it was fetched for
        self.forget: Callable[[], None] = lambda: None  # no more requests collapse into this one

    async def whole(self) -> bytes | FileBody:
        """The complete body (bytes, or its spool file when large); OriginError when the
        origin broke off."""
        try:
            await self.body.ended()
        except BodyStreamError as e:
            raise OriginError(str(e)) from None
        return self.body.stored()


class OriginError(Exception):
    pass


class Fetcher:
    def __init__(self, via: str, spool_dir: Path | None = None, max_body: int = 2 * 2**30) -> None:
        self.via = via
        self.spool_dir = spool_dir  # where bodies too large for memory are spooled
        self.max_body = max_body
        self._inflight: dict[tuple[object, ...], asyncio.Future[OriginResponse]] = {}
        self._pumps: set[asyncio.Task[None]] = set()  # bodies still arriving
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=3, sock_read=10)  # bodies stream: no total
        connector = aiohttp.TCPConnector(limit=256, limit_per_host=64, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=connector, auto_decompress=False)

    async def close(self) -> None:
        for t in list(self._pumps):
            t.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self._session:
            await self._session.close()

    async def fetch(
        self,
        customer: Customer,
        target: str,
        headers: list[tuple[str, str]],
        client: str,
        vary_on: tuple[str, ...] = (),
    ) -> tuple[OriginResponse, bool]:
        """GET target from the customer's origin; (response, collapsed into another's request).

        Requests collapse on the target and the fields that change the origin's answer by
        protocol (conditionals, credentials), not on the rest (User-Agent, Accept...): a
        waiter checks the answer's Vary against its own request (`OriginResponse.asked_with`)
        and asks again, collapsing this time on the fields named by `vary_on` too."""
        on = COLLAPSE_ON | set(vary_on)
        shared = tuple(sorted((k.lower(), v) for k, v in headers if k.lower() in on))
        key = (customer.name, target, shared)
        fut = self._inflight.get(key)
        if fut is not None:
            return await asyncio.shield(fut), True
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut

        def forget() -> None:
            if self._inflight.get(key) is fut:
                del self._inflight[key]

        try:
            resp = await self._request(customer, "GET", target, headers, client, None)
        except BaseException as e:
            forget()
            fut.set_exception(e if isinstance(e, OriginError) else OriginError(repr(e)))
            fut.exception()  # mark retrieved: waiters may be none
            raise
        resp.asked_with = headers
        resp.forget = forget
        fut.set_result(resp)
        # later misses join while the body arrives (they read it from its start), not after
        resp.body.when_done(forget)
        return resp, False

    async def fetch_alone(
        self, customer: Customer, target: str, headers: list[tuple[str, str]], client: str
    ) -> OriginResponse:
        """GET without collapsing (a waiter whose request the shared answer did not fit)."""
        resp = await self._request(customer, "GET", target, headers, client, None)
        resp.asked_with = headers
        return resp

    async def forward(
        self, customer: Customer, method: str, target: str, headers: list[tuple[str, str]], client: str, body: bytes
    ) -> OriginResponse:
        """An unsafe request, passed to the origin as it is (never coalesced)."""
        return await self._request(customer, method, target, headers, client, body)

    def origin_headers(self, customer: Customer, headers: list[tuple[str, str]], client: str) -> dict[str, str]:
        out = {k: v for k, v in headers if k.lower() in FORWARDED}
        out.update({"Via": self.via, "Accept-Encoding": "identity", "X-Forwarded-For": client})
        if customer.hostnames:
            out["Host"] = customer.hostnames[0]
        return out

    async def _pump(self, r: aiohttp.ClientResponse, body: BodyStream) -> None:
        """Feed the body to its readers as it arrives, within the size limit and as long
        as announced; a short or broken body fails the stream (never passed off as whole)."""
        try:
            async for chunk in r.content.iter_chunked(64 * 1024):
                if body.size + len(chunk) > self.max_body:
                    body.fail("origin body over the size limit")
                    return
                body.feed(chunk)
            if body.length is not None and body.size != body.length:
                body.fail(f"origin body cut short: {body.size} of {body.length} bytes")
            else:
                body.finish()
        except (aiohttp.ClientError, TimeoutError) as e:
            body.fail(f"{type(e).__name__}: {e}")
        finally:
            if not body.done:  # cancelled
                body.fail("edge shutting down")
            r.release()

    async def _request(
        self,
        customer: Customer,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        client: str,
        body: bytes | None,
    ) -> OriginResponse:
        assert self._session is not None
        url = customer.origin.rstrip("/") + target
        sent = time.time()
        try:
            r = await self._session.request(
                method, url, headers=self.origin_headers(customer, headers, client), data=body, allow_redirects=False
            )
        except (aiohttp.ClientError, TimeoutError) as e:
            raise OriginError(f"{type(e).__name__}: {e}") from None
        if r.content_length is not None and r.content_length > self.max_body:
            r.close()
            raise OriginError("origin body over the size limit")
        out = [(str(k), str(v)) for k, v in end_to_end(r.headers)]  # plain str, not istr
        stream = BodyStream(r.content_length if method != "HEAD" else 0, self.spool_dir)
        pump = asyncio.get_running_loop().create_task(self._pump(r, stream))
        self._pumps.add(pump)
        pump.add_done_callback(self._pumps.discard)
        return OriginResponse(r.status, out, stream, sent, time.time())
