"""Origin requests with request coalescing (asyncio shell).

Concurrent misses for one key (and the same request fields a response may vary on)
share one origin request: the first caller fetches, the others await its result and
are told they were collapsed. Unsafe methods are forwarded one by one. Origin
connections are pooled (keep-alive) with connect and read timeouts.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from ..config import Customer
from .fields import end_to_end
from .forwarding import origin_request_fields
from .message import BodyStream, BodyStreamError, FileBody
from .upstream import ERROR_HEADER, HEADER_NAME, Attempt, Upstreams

# request fields that make a different origin answer whatever the response's Vary says
# (credentials, conditionals, and the protocol: an origin may redirect http to https)
COLLAPSE_ON = frozenset(
    {
        "authorization",
        "cookie",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-unmodified-since",
        "x-forwarded-proto",
    }
)


class Client(NamedTuple):
    """Who asked, as the origin is told (Forwarded, X-Forwarded-*)."""

    ip: str
    scheme: str = "http"
    host: str | None = None  # the Host the client asked for
    from_child: bool = False  # a child edge asked (tiered distribution): not to a parent again


# what aiohttp would add on its own: the edge sends the client's (or none)
SKIP_AUTO = ("Accept", "Accept-Encoding", "User-Agent")
# another edge's own fields in its answer (the asking edge sets its own)
EDGE_OWN = frozenset({"x-cache", "x-served-by", ERROR_HEADER.lower()})


def host_for_origin(customer: Customer) -> str:
    """The Host an origin is asked for: the customer's first hostname, else the origin's own."""
    return customer.hostnames[0] if customer.hostnames else urlsplit(customer.origin).netloc


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
    def __init__(
        self, via: str, spool_dir: Path | None = None, max_body: int = 2 * 2**30, config_dir: Path | None = None
    ) -> None:
        self.via = via
        self.config_dir = config_dir or Path.cwd()  # where customers' origin_ca_file paths start
        self._tls: dict[tuple[str, float], ssl.SSLContext] = {}  # CA file, its mtime -> context
        self.spool_dir = spool_dir  # where bodies too large for memory are spooled
        self.max_body = max_body
        self._inflight: dict[tuple[object, ...], asyncio.Future[OriginResponse]] = {}
        self._pumps: set[asyncio.Task[None]] = set()  # bodies still arriving
        self._session: aiohttp.ClientSession | None = None
        self.upstreams: Upstreams | None = None  # parents and SureRoute paths (None: always direct)
        self.source = ""  # the address upstream connections leave from ("": the kernel's choice)
        self.hop_timeout = aiohttp.ClientTimeout(total=None, connect=6, sock_connect=3, sock_read=10)  # paths left

    async def start(self) -> None:
        # bodies stream: no total; `connect` bounds the wait for a pooled connection too (an
        # unreachable origin fills the pool with hanging connects: later misses fail, not queue)
        timeout = aiohttp.ClientTimeout(total=None, connect=6, sock_connect=3, sock_read=10)
        local = (self.source, 0) if self.source else None
        connector = aiohttp.TCPConnector(limit=256, limit_per_host=64, keepalive_timeout=30, local_addr=local)
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
        client: Client,
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
        self, customer: Customer, target: str, headers: list[tuple[str, str]], client: Client
    ) -> OriginResponse:
        """GET without collapsing (a waiter whose request the shared answer did not fit)."""
        resp = await self._request(customer, "GET", target, headers, client, None)
        resp.asked_with = headers
        return resp

    async def forward(
        self, customer: Customer, method: str, target: str, headers: list[tuple[str, str]], client: Client, body: bytes
    ) -> OriginResponse:
        """An unsafe request, passed to the origin as it is (never coalesced)."""
        return await self._request(customer, method, target, headers, client, body)

    def origin_headers(
        self, customer: Customer, method: str, headers: list[tuple[str, str]], client: Client
    ) -> list[tuple[str, str]]:
        """The request fields for the origin: the client's end-to-end ones and the edge's
        Via, Forwarded, X-Forwarded-*, then the customer's rules (`forwarding`)."""
        origin_host = host_for_origin(customer)
        return origin_request_fields(
            headers,
            method=method,
            client_ip=client.ip,
            proto=client.scheme,
            client_host=client.host,
            origin_host=origin_host,
            via=self.via,
            rules=customer.request_headers,
        )

    def origin_tls(self, customer: Customer) -> ssl.SSLContext | bool:
        """How an https origin's certificate is checked: the system CAs (True), a
        customer's CA bundle, or not at all (`origin_verify = false`)."""
        if not customer.origin_verify:
            return False
        if not customer.origin_ca_file:
            return True
        path = self.config_dir / customer.origin_ca_file
        try:
            key = (str(path), path.stat().st_mtime)
        except OSError:
            key = (str(path), 0.0)
        ctx = self._tls.get(key)
        if ctx is None:
            ctx = ssl.create_default_context(cafile=path)  # OSError/SSLError: an OriginError
            if len(self._tls) > 256:
                self._tls.clear()
            self._tls[key] = ctx
        return ctx

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

    async def relay(
        self, customer: Customer, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> OriginResponse:
        """A SureRoute tunnel's request, straight to the origin: the asking edge prepared its
        fields (Via, Forwarded, X-Forwarded-*, the customer's rules); this edge adds its Via."""
        fields = [(k, v) for k, v in end_to_end(headers) if k.lower() not in ("host", "via", HEADER_NAME.lower())]
        via = ", ".join([v for k, v in headers if k.lower() == "via"] + [self.via])
        fields += [("Host", host_for_origin(customer)), ("Via", via)]
        direct = [Attempt(customer.origin.rstrip("/"), "direct")]
        return await self._request(customer, method, target, fields, Client(""), body, direct)

    async def race(self, a: Attempt, customer: Customer, target: str, timeout: float) -> float:
        """Fetch a SureRoute test object over one path: seconds to its whole answer (any
        status but 5xx); OriginError when the path failed."""
        assert self._session is not None
        host = a.host or host_for_origin(customer)
        fields = {"Host": host, "Via": self.via, "Cache-Control": "no-cache", "User-Agent": "akacdn-sureroute"}
        if a.grant is not None:
            fields[HEADER_NAME] = a.grant
        url = URL(a.base + target, encoded=True)
        tls = self.origin_tls(customer) if a.base[:6].lower() == "https:" else True
        t0 = time.monotonic()
        try:
            async with self._session.get(
                url, headers=fields, allow_redirects=False, ssl=tls, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as r:
                while await r.content.read(64 * 1024):
                    pass
                if r.status >= 500 or ERROR_HEADER in r.headers:
                    raise OriginError(f"{a.label}: {r.status}")
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as e:
            raise OriginError(f"{a.label}: {type(e).__name__}: {e}") from None
        return time.monotonic() - t0

    async def _request(
        self,
        customer: Customer,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        client: Client,
        body: bytes | None,
        attempts: list[Attempt] | None = None,
    ) -> OriginResponse:
        """Send a request along its attempts (parents, SureRoute paths; else direct) until one
        answers; an idempotent request moves on at once when a path fails."""
        if attempts is None:
            fields = self.origin_headers(customer, method, headers, client)
            if self.upstreams is not None:
                attempts = self.upstreams.attempts(customer, method, target, customer.name + target, client.from_child)
            else:
                attempts = [Attempt(customer.origin.rstrip("/"), "direct")]
        else:
            fields = headers
        for i, a in enumerate(attempts):
            more = i + 1 < len(attempts)
            sent, t0 = time.time(), time.monotonic()
            if self.upstreams is not None:
                self.upstreams.started(a)
            try:
                r = await self._send(customer, a, method, target, fields, body, more)
            except OriginError:
                if self.upstreams is not None:
                    self.upstreams.outcome(customer, a, False, time.monotonic() - t0)
                if more:
                    continue
                raise
            except BaseException:  # cancelled (the client left, shutdown): no verdict on the path
                if self.upstreams is not None:
                    self.upstreams.abandoned(a)
                raise
            if a.grant is not None and ERROR_HEADER in r.headers:  # the other edge's verdict: the path failed
                why = r.headers[ERROR_HEADER]
                r.release()
                if self.upstreams is not None:
                    self.upstreams.outcome(customer, a, False, time.monotonic() - t0)
                if more:
                    continue
                raise OriginError(f"{a.label}: {why}")
            if self.upstreams is not None:
                self.upstreams.outcome(customer, a, True, time.monotonic() - t0)
            return self._answer(r, method, sent, a)
        raise OriginError("no way to the origin")  # (attempts is never empty)

    async def _send(
        self,
        customer: Customer,
        a: Attempt,
        method: str,
        target: str,
        fields: list[tuple[str, str]],
        body: bytes | None,
        more: bool,
    ) -> aiohttp.ClientResponse:
        assert self._session is not None
        hdrs = CIMultiDict(fields)
        if a.grant is not None:
            hdrs[HEADER_NAME] = a.grant
            if a.host is not None:
                hdrs["Host"] = a.host
        url = a.base + target
        extra: dict[str, object] = {"timeout": self.hop_timeout} if more else {}
        try:
            tls = self.origin_tls(customer) if url[:6].lower() == "https:" else True
            return await self._session.request(
                method,
                URL(url, encoded=True) if a.grant is not None else url,  # the target the grant is bound to
                headers=hdrs,
                data=body,
                allow_redirects=False,
                ssl=tls,
                skip_auto_headers=SKIP_AUTO,
                **extra,  # type: ignore[arg-type]
            )
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as e:
            prefix = "" if a.label == "direct" else f"{a.label}: "
            raise OriginError(f"{prefix}{type(e).__name__}: {e}") from None

    def _answer(self, r: aiohttp.ClientResponse, method: str, sent: float, a: Attempt) -> OriginResponse:
        if r.content_length is not None and r.content_length > self.max_body:
            r.close()
            raise OriginError("origin body over the size limit")
        out = [(str(k), str(v)) for k, v in end_to_end(r.headers)]  # plain str, not istr
        if a.grant is not None:
            out = [(k, v) for k, v in out if k.lower() not in EDGE_OWN]
        stream = BodyStream(r.content_length if method != "HEAD" else 0, self.spool_dir)
        pump = asyncio.get_running_loop().create_task(self._pump(r, stream))
        self._pumps.add(pump)
        pump.add_done_callback(self._pumps.discard)
        return OriginResponse(r.status, out, stream, sent, time.time())
