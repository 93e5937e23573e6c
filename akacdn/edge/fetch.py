"""Origin fetches with request coalescing (asyncio shell).

Concurrent misses for one key share one origin request: the first caller fetches, the
others await its result. Origin connections are pooled (keep-alive) with connect and
read timeouts.
"""

from __future__ import annotations

import asyncio

import aiohttp

from ..config import Customer
from .policy import end_to_end


class OriginResponse:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


class OriginError(Exception):
    pass


class Fetcher:
    def __init__(self, via: str, max_body: int = 64 * 2**20) -> None:
        self.via = via
        self.max_body = max_body
        self._inflight: dict[tuple[str, str], asyncio.Future[OriginResponse]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.origin_requests = 0

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=30, sock_connect=3, sock_read=10)
        connector = aiohttp.TCPConnector(limit=256, limit_per_host=64, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=connector, auto_decompress=False)

    async def close(self) -> None:
        if self._session:
            await self._session.close()

    async def fetch(self, customer: Customer, path_qs: str) -> OriginResponse:
        """GET path_qs from the customer's origin; one request for concurrent callers."""
        key = (customer.name, path_qs)
        fut = self._inflight.get(key)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            resp = await self._get(customer, path_qs)
            fut.set_result(resp)
            return resp
        except BaseException as e:
            fut.set_exception(e if isinstance(e, OriginError) else OriginError(repr(e)))
            fut.exception()  # mark retrieved: waiters may be none
            raise
        finally:
            del self._inflight[key]

    async def _get(self, customer: Customer, path_qs: str) -> OriginResponse:
        assert self._session is not None
        host = customer.hostnames[0] if customer.hostnames else None
        headers = {"Via": self.via, "Accept-Encoding": "identity"}
        if host:
            headers["Host"] = host
        url = customer.origin.rstrip("/") + path_qs
        self.origin_requests += 1
        try:
            async with self._session.get(url, headers=headers, allow_redirects=False) as r:
                body = await r.content.read(self.max_body + 1)
                if len(body) > self.max_body:
                    raise OriginError("origin body over the size limit")
                headers = [(str(k), str(v)) for k, v in end_to_end(r.headers)]  # plain str, not istr
                return OriginResponse(r.status, headers, body)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise OriginError(f"{type(e).__name__}: {e}") from None
