"""The reliable transport: HTTP/TCP (aiohttp) for what must not be lost or is too big to
wait for on the real-time network: the latest signed maps, and journals (purges).

Routes, on every mapping center's management port (its own documents) and on every
relay's (a cache of the centers: `RelayCache`):

    GET /v1/<center>/maps/<key>[?min=T.S]   the newest document under `key` (a signed
        map: opaque bytes here), `X-Akacdn-Version: T.S`, `ETag`; 304 for a matching
        `If-None-Match`; 404 when there is none yet
    GET /v1/<center>/journal/<name>?since=N  a `journal.Page` (msgpack) of the entries
        after N; 410 with an empty page when N is older than the journal keeps

Journal pages carry `X-Akacdn-Mac: <key id>:<hex HMAC-SHA256 of the body>` with the
network's message key (relays cannot alter them; maps carry their own Ed25519
signature). A relay answers from its cache while the entry is younger than `fresh`
and not older than what the caller asks for (`min`), fetches once for all concurrent
callers otherwise, and answers stale (`X-Akacdn-Stale: 1`) when no center answers.

`Fetcher` is the consumer side: it tries the relays (own region first), then the
center itself, each with `[messaging] http_timeout`, and checks what comes back.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable

import aiohttp
from aiohttp import web

from ..runtime import Runtime
from .journal import Journal, Page, decode_page

Version = tuple[int, ...]


class TransportError(Exception):
    pass


def version_text(v: Version) -> str:
    return ".".join(str(x) for x in v)


def parse_version(text: str | None) -> Version | None:
    if not text:
        return None
    try:
        return tuple(int(x) for x in text.split("."))
    except ValueError:
        return None


def mac(keys: dict[int, bytes], key_id: int, body: bytes) -> str:
    return f"{key_id}:{hmac.digest(keys[key_id], body, hashlib.sha256).hex()}"


def check_mac(keys: dict[int, bytes], header: str | None, body: bytes) -> bool:
    if not header or ":" not in header:
        return False
    kid, _, tag = header.partition(":")
    key = keys.get(int(kid)) if kid.isdigit() else None
    return key is not None and hmac.compare_digest(tag, hmac.digest(key, body, hashlib.sha256).hex())


class Documents:
    """A center's newest documents by key (signed maps), with their versions."""

    def __init__(self) -> None:
        self._docs: dict[str, tuple[Version, bytes]] = {}

    def put(self, key: str, version: Version, body: bytes) -> None:
        self._docs[key] = (tuple(version), body)

    def get(self, key: str) -> tuple[Version, bytes] | None:
        return self._docs.get(key)


def _since(req: web.Request) -> int:
    try:
        return max(0, int(req.query.get("since", "0")))
    except ValueError:
        raise web.HTTPBadRequest(text="since must be a number\n") from None


def center_routes(rt: Runtime, docs: Documents, journals: dict[str, Journal]) -> Callable[[web.Application], None]:
    """The routes a mapping center serves its own documents and journals on."""
    me = rt.machine.id

    async def get_map(req: web.Request) -> web.Response:
        if req.match_info["center"] != me:
            raise web.HTTPNotFound(text=f"this is {me}\n")
        got = docs.get(req.match_info["key"])
        if got is None:
            raise web.HTTPNotFound(text="no such map yet\n")
        version, body = got
        etag = f'"{version_text(version)}"'
        headers = {"X-Akacdn-Version": version_text(version), "ETag": etag, "Cache-Control": "no-cache"}
        if req.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers=headers, content_type="application/octet-stream")

    async def get_journal(req: web.Request) -> web.Response:
        journal = journals.get(req.match_info["name"])
        if req.match_info["center"] != me or journal is None:
            raise web.HTTPNotFound(text="no such journal\n")
        page, body = journal.encode_page(_since(req))
        headers = {
            "X-Akacdn-Version": str(page.head),
            "X-Akacdn-Mac": mac(rt.net.message_keys, rt.net.message_key_id, body),
            "Cache-Control": "no-cache",
        }
        return web.Response(status=410 if page.gone else 200, body=body, headers=headers,
                            content_type="application/msgpack")  # fmt: skip

    def add(app: web.Application) -> None:
        app.router.add_get("/v1/{center}/maps/{key}", get_map)
        app.router.add_get("/v1/{center}/journal/{name}", get_journal)

    return add


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


class Fetcher:
    """A consumer's side of the transport: relays first (caches), then the center."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._session: aiohttp.ClientSession | None = None
        self.fetches = rt.counter("akacdn_transport_fetches", "Transport requests made", ("what", "result"))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def sources(self, center: str) -> list[str]:
        net = self.rt.net
        port = net.ports.management
        region = self.rt.machine.region
        relays = sorted(net.by_role("relay"), key=lambda r: (not region or r.region != region, r.id))
        bases = [f"http://{r.address}:{port}" for r in relays]
        try:
            bases.append(f"http://{net.machine(center).address}:{port}")
        except KeyError:
            pass
        return bases

    async def _get(self, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.rt.net.messaging.http_timeout)
        async with self._session.get(url, timeout=timeout, headers=headers) as r:
            return r.status, dict(r.headers), await r.read()

    async def map(
        self, center: str, key: str, have: Version | None = None, want: Version | None = None
    ) -> bytes | None:
        """The center's newest `key` document newer than `have` (None: we have it, or
        nobody answered with one). `want`: a version we know exists (from an announcement)."""
        query = f"?min={version_text(want)}" if want else ""
        headers = {"If-None-Match": f'"{version_text(have)}"'} if have else {}
        for base in self.sources(center):
            try:
                status, got, body = await self._get(f"{base}/v1/{center}/maps/{key}{query}", headers)
            except (aiohttp.ClientError, TimeoutError, OSError):
                self.fetches.labels("map", "unreachable").inc()
                continue
            version = parse_version(got.get("X-Akacdn-Version"))
            if status == 304:
                self.fetches.labels("map", "not_modified").inc()
                if want is None or (version is not None and version >= want):
                    return None
                continue
            if status != 200:
                self.fetches.labels("map", str(status)).inc()
                continue
            if want is not None and (version is None or version < want):  # a stale cache: ask the next
                self.fetches.labels("map", "behind").inc()
                continue
            self.fetches.labels("map", "ok").inc()
            return body
        return None

    async def journal(self, center: str, name: str, since: int) -> Page:
        """A page of a center's journal after `since`; TransportError when no source
        answered with one we can trust."""
        for base in self.sources(center):
            try:
                status, got, body = await self._get(f"{base}/v1/{center}/journal/{name}?since={since}", {})
            except (aiohttp.ClientError, TimeoutError, OSError):
                self.fetches.labels("journal", "unreachable").inc()
                continue
            if status not in (200, 410):
                self.fetches.labels("journal", str(status)).inc()
                continue
            if not check_mac(self.rt.net.message_keys, got.get("X-Akacdn-Mac"), body):
                self.fetches.labels("journal", "bad_mac").inc()
                continue
            try:
                page = decode_page(body)
            except Exception:  # msgspec's DecodeError/ValidationError: a bad page from a source
                self.fetches.labels("journal", "malformed").inc()
                continue
            self.fetches.labels("journal", "gone" if page.gone else "ok").inc()
            return page
        raise TransportError(f"no source answered for {center}'s journal {name}")
