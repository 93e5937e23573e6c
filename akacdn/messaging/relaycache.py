"""A relay's read-through cache of the mapping centers' transport routes (`transport`).

A relay answers from its cache while the entry is younger than `fresh` and not older
than what the caller asks for (`?min=`: a version an announcement named), fetches once
for all concurrent callers otherwise, and answers stale (`X-Akacdn-Stale: 1`) when no
center answers. Bounded in entries and bytes, oldest out first.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

import aiohttp
from aiohttp import web

from ..runtime import Runtime
from .transport import TransportError, parse_version


class _Cached:
    __slots__ = ("at", "status", "headers", "body", "version")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.at = time.monotonic()
        self.status, self.headers, self.body = status, headers, body
        self.version = parse_version(headers.get("X-Akacdn-Version"))


_KEEP = ("X-Akacdn-Version", "X-Akacdn-Mac", "ETag", "Content-Type")


class RelayCache:
    """A relay's read-through cache of the centers' transport routes."""

    def __init__(self, rt: Runtime, fresh: float = 0.25, max_entries: int = 256, max_bytes: int = 256 * 2**20):
        self.rt = rt
        self.fresh, self.max_entries, self.max_bytes = fresh, max_entries, max_bytes
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._bytes = 0
        self._inflight: dict[str, asyncio.Future[_Cached]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.requests = rt.counter("akacdn_relay_http_requests", "Transport requests served", ("result",))

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/{center}/maps/{key}", self.serve)
        app.router.add_get("/v1/{center}/journal/{name}", self.serve)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def serve(self, req: web.Request) -> web.Response:
        try:
            center = self.rt.net.machine(req.match_info["center"])
        except KeyError:
            center = None
        if center is None or center.role != "mapper":
            raise web.HTTPNotFound(text="no such mapping center\n")
        query = "&".join(f"{k}={v}" for k, v in sorted(req.query.items()) if k != "min")
        path = req.path + (f"?{query}" if query else "")
        want = parse_version(req.query.get("min"))
        entry = self._cache.get(path)
        usable = entry is not None and (want is None or (entry.version is not None and entry.version >= want))
        if entry is not None and usable and time.monotonic() - entry.at < self.fresh:
            self.requests.labels("hit").inc()
        else:
            try:
                entry = await self._fetch(f"http://{center.address}:{self.rt.net.ports.management}{path}", path)
                self.requests.labels("fetched").inc()
            except TransportError as e:
                if entry is None:
                    self.requests.labels("failed").inc()
                    raise web.HTTPBadGateway(text=f"{center.id}: {e}\n") from None
                self.requests.labels("stale").inc()
                return self._answer(req, entry, stale=True)
        return self._answer(req, entry)

    def _answer(self, req: web.Request, entry: _Cached, stale: bool = False) -> web.Response:
        headers = dict(entry.headers)
        if stale:
            headers["X-Akacdn-Stale"] = "1"
        etag = headers.get("ETag")
        if entry.status == 200 and etag and req.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={k: v for k, v in headers.items() if k != "Content-Type"})
        ctype = headers.pop("Content-Type", "application/octet-stream").split(";")[0]
        return web.Response(status=entry.status, body=entry.body, headers=headers, content_type=ctype)

    async def _fetch(self, url: str, path: str) -> _Cached:
        running = self._inflight.get(path)
        if running is not None:
            return await asyncio.shield(running)
        fut: asyncio.Future[_Cached] = asyncio.get_running_loop().create_future()
        self._inflight[path] = fut
        try:
            entry = await self._get(url)
            self._store(path, entry)
            fut.set_result(entry)
            return entry
        except TransportError as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            del self._inflight[path]

    async def _get(self, url: str) -> _Cached:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.rt.net.messaging.http_timeout)
        try:
            async with self._session.get(url, timeout=timeout) as r:
                body = await r.read()
                if r.status not in (200, 404, 410):
                    raise TransportError(f"{r.status} from upstream")
                return _Cached(r.status, {k: r.headers[k] for k in _KEEP if k in r.headers}, body)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise TransportError(str(e) or type(e).__name__) from None

    def _store(self, path: str, entry: _Cached) -> None:
        old = self._cache.pop(path, None)
        if old is not None:
            self._bytes -= len(old.body)
        self._cache[path] = entry
        self._bytes += len(entry.body)
        while self._cache and (len(self._cache) > self.max_entries or self._bytes > self.max_bytes):
            _, dropped = self._cache.popitem(last=False)
            self._bytes -= len(dropped.body)
