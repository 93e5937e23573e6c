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
signature). Relays serve the same routes from `relaycache.RelayCache`.

`Fetcher` is the consumer side: it tries the relays (own region first), then the
center itself, each with `[messaging] http_timeout`, and checks what comes back.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..runtime import Runtime, load_aiohttp
from .journal import Journal, Page, decode_page

if TYPE_CHECKING:  # aiohttp is imported when first used: a nameserver serves before it loads
    import aiohttp
    from aiohttp import web

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
    from aiohttp import web

    try:
        return max(0, int(req.query.get("since", "0")))
    except ValueError:
        raise web.HTTPBadRequest(text="since must be a number\n") from None


def center_routes(rt: Runtime, docs: Documents, journals: dict[str, Journal]) -> Callable[[web.Application], None]:
    """The routes a mapping center serves its own documents and journals on."""
    from aiohttp import web

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
        """(status, headers, body); OSError (or TimeoutError) when the source did not answer."""
        await load_aiohttp()  # the first use (a nameserver's first map fetch, at start): off the loop
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.rt.net.messaging.http_timeout)
        try:
            async with self._session.get(url, timeout=timeout, headers=headers) as r:
                return r.status, dict(r.headers), await r.read()
        except aiohttp.ClientError as e:
            raise OSError(f"{type(e).__name__}: {e}") from None

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
            except (TimeoutError, OSError):
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
            except (TimeoutError, OSError):
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
