"""The edge daemon (aiohttp): customer by Host, memory cache, origin on a miss.

Every response names the machine that served it (`Via`, `X-Served-By`) and its cache
outcome (`X-Cache: HIT|MISS|STALE`, `Cache-Status` per RFC 9211, `Age` on hits).
Unknown hosts get 421 and never cause a fetch: the edge is not an open proxy.
"""

from __future__ import annotations

import asyncio
import hmac
import time
import uuid
from collections.abc import Callable
from typing import Literal

import msgspec
from aiohttp import web

from ..mapping.report import send_heartbeats
from ..messaging.client import MessagingClient
from ..messaging.envelope import Envelope
from ..runtime import Runtime
from . import arl
from .customers import CustomerIndex
from .disk import DiskStore
from .fetch import Fetcher, OriginError
from .policy import freshness
from .purge import PURGE_TOPIC, Purge, PurgeError, Seen, selector
from .store import CachedObject, MemoryStore

ALLOWED = "GET, HEAD"


class _PurgeRequest(msgspec.Struct, forbid_unknown_fields=True):
    kind: Literal["url", "customer", "serial"]
    values: list[str]


_purge_dec = msgspec.msgpack.Decoder(Purge)


class Edge:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.customers = CustomerIndex(rt.net)
        rt.on_reload(lambda net: setattr(self, "customers", CustomerIndex(net)))
        self.store = MemoryStore(budget=rt.net.edge.memory_bytes)
        self.disk = DiskStore(rt.state_dir / "cache", rt.net.edge.disk_bytes)
        rt.record("cache_loaded", objects=self.disk.load(), dropped=self.disk.dropped)
        self.via = f"1.1 {rt.machine.id} (akacdn)"
        self.fetcher = Fetcher(self.via)
        self.requests = rt.counter("akacdn_edge_requests", "Requests by outcome", ("outcome",))
        self.refused = rt.counter("akacdn_edge_refused", "Requests refused", ("reason",))
        self.objects = rt.gauge("akacdn_edge_cache_objects", "Objects in the memory store")
        self.bytes = rt.gauge("akacdn_edge_cache_bytes", "Bytes in the memory store")
        self.disk_errors = rt.counter("akacdn_edge_disk_errors", "Disk store writes that failed")
        self.disk_objects = rt.gauge("akacdn_edge_disk_objects", "Objects in the disk store")
        self.disk_dropped = rt.gauge("akacdn_edge_disk_dropped", "Damaged store files deleted since start")
        self._served = 0
        self.seen = Seen()
        self.publish: Callable[[str, bytes], None] | None = None
        self.purges = rt.counter("akacdn_edge_purges", "Purges applied", ("source",))
        self.purge_refused = rt.counter("akacdn_edge_purge_refused", "Purges refused", ("reason",))
        rt.not_ready("socket", "HTTP socket not bound yet")

    def status(self, interval: float) -> tuple[bool, float, str]:
        """Heartbeat content: healthy, requests per second since the last beat."""
        load, self._served = self._served / interval, 0
        self.objects.set(len(self.store))
        self.bytes.set(self.store.used)
        self.disk_objects.set(len(self.disk))
        self.disk_dropped.set(self.disk.dropped)
        return True, load, ""

    def _respond(self, req: web.Request, obj: CachedObject, outcome: str, now: float) -> web.Response:
        headers = list(obj.headers)
        headers += [("Via", self.via), ("X-Served-By", self.rt.machine.id)]
        if outcome == "HIT":
            headers += [("Age", str(obj.age(now))), ("X-Cache", "HIT")]
            headers.append(("Cache-Status", f"akacdn; hit; ttl={int(obj.ttl - (now - obj.stored_at))}"))
        elif outcome == "STALE":
            headers += [("Age", str(obj.age(now))), ("X-Cache", "STALE")]
            headers.append(("Cache-Status", "akacdn; hit; fwd=stale; detail=origin-unreachable"))
        else:
            stored = "; stored" if obj.ttl > 0 else ""
            headers += [("X-Cache", "MISS"), ("Cache-Status", f"akacdn; fwd=uri-miss{stored}")]
        self.requests.labels(outcome.lower()).inc()
        resp = web.Response(status=obj.status, body=None if req.method == "HEAD" else obj.body)
        for k, v in headers:
            resp.headers.add(k, v)
        if req.method == "HEAD":
            resp.headers["Content-Length"] = str(len(obj.body))
        return resp

    async def handle(self, req: web.Request) -> web.StreamResponse:
        self._served += 1
        found = self.customers.lookup(req.headers.get("Host"))
        if found is None:
            self.refused.labels("unknown_host").inc()
            return web.Response(
                status=421,
                text=f"akacdn: no customer is configured for host {req.headers.get('Host', '')!r}\n",
                headers={"X-Served-By": self.rt.machine.id},
            )
        customer, serial_host = found
        if req.method not in ("GET", "HEAD"):
            self.refused.labels("method").inc()
            return web.Response(status=405, headers={"Allow": ALLOWED}, text="akacdn: method not allowed\n")
        target, override = req.path_qs, None
        if serial_host and arl.is_arl(target):
            try:
                a = arl.parse(target)
            except arl.ARLError as e:
                self.refused.labels("bad_arl").inc()
                return web.Response(status=400, text=f"akacdn: bad ARL: {e}\n")
            if a.serial != customer.serial or a.origin_host not in customer.hostnames:
                self.refused.labels("arl_not_configured").inc()
                return web.Response(status=403, text="akacdn: the ARL names another customer or origin\n")
            target, override = a.target, a.ttl  # the ARL's TTL overrides the origin's freshness
        key = (customer.name, target)
        now = time.time()
        obj = self.store.get(key)
        if obj is None:
            obj = self.disk.get(key)  # warm from before a restart
            if obj is not None:
                self.store.put(key, obj)
        if obj is not None and obj.fresh(now):
            return self._respond(req, obj, "HIT", now)
        try:
            got = await self.fetcher.fetch(customer, target)
        except OriginError as e:
            self.rt.log.limited("origin_error", customer=customer.name, error=str(e))
            if obj is not None:
                return self._respond(req, obj, "STALE", time.time())
            self.requests.labels("origin_error").inc()
            return web.Response(status=502, text="akacdn: origin unreachable\n", headers={"X-Cache": "MISS"})
        fetched = CachedObject(got.status, got.headers, got.body, time.time(), 0)
        ttl = freshness(got.status, got.headers, customer.default_ttl)
        if ttl is not None and override is not None:
            ttl = override  # storable, but fresh for as long as the ARL says
        if ttl is not None and ttl > 0:
            fetched.ttl = ttl
            self.store.put(key, fetched)
            try:
                self.disk.put(key, fetched)
            except OSError as e:  # a full or failing disk costs warmth, never the response
                self.disk_errors.inc()
                self.rt.log.limited("disk_write_failed", error=str(e))
        return self._respond(req, fetched, "MISS", time.time())

    # purges ------------------------------------------------------------------------
    def apply_purge(self, purge: Purge, source: str) -> int:
        """Remove what a purge names from both tiers, once per purge id."""
        if not self.seen.first_time(purge.id):
            return 0
        match = selector(purge, list(self.rt.net.customers), self.customers.for_host)
        removed = len(set(self.store.delete_where(match)) | set(self.disk.delete_where(match)))
        self.purges.labels(source).inc()
        self.rt.record("purged", id=purge.id, kind=purge.kind, values=purge.values, removed=removed, source=source)
        return removed

    def on_message(self, env: Envelope) -> None:
        try:
            self.apply_purge(_purge_dec.decode(env.body), "messaging")
        except (msgspec.DecodeError, msgspec.ValidationError, PurgeError) as e:
            self.purge_refused.labels("bad_message").inc()
            self.rt.log.limited("purge_message_refused", error=str(e))

    async def purge_api(self, req: web.Request) -> web.Response:
        """POST /purge {"kind": "url"|"customer"|"serial", "values": [...]}, bearer token."""
        token = self.rt.net.purge_token
        given = req.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            self.purge_refused.labels("unauthorized").inc()
            return web.json_response({"error": "a valid purge token is required"}, status=403)
        try:
            body = msgspec.json.decode(await req.read(), type=_PurgeRequest)
            purge = Purge(uuid.uuid4().hex, body.kind, body.values)
            removed = self.apply_purge(purge, "api")
        except (msgspec.DecodeError, msgspec.ValidationError, PurgeError) as e:
            self.purge_refused.labels("bad_request").inc()
            return web.json_response({"error": str(e)}, status=400)
        if self.publish is not None:
            self.publish(PURGE_TOPIC, msgspec.msgpack.encode(purge))
        return web.json_response({"id": purge.id, "removed_here": removed, "published": self.publish is not None})

    async def serve(self) -> None:
        app = web.Application(client_max_size=1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.rt.machine.address, self.rt.net.ports.http, reuse_address=True)
        await site.start()
        self.rt.log.info("listening", address=self.rt.machine.address, port=self.rt.net.ports.http)
        self.rt.ready("socket")
        try:
            await asyncio.Future()
        finally:
            await runner.cleanup()


async def main(rt: Runtime) -> None:
    edge = Edge(rt)
    client = MessagingClient(rt, [PURGE_TOPIC], edge.on_message)
    edge.publish = client.publish
    await client.start()
    await edge.fetcher.start()
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(edge.serve())
            tg.create_task(rt.serve_management(lambda app: app.router.add_post("/purge", edge.purge_api)))
            tg.create_task(rt.watchdog())
            tg.create_task(send_heartbeats(rt, client, edge.status))
            tg.create_task(client.keep_subscribed())
    finally:
        client.close()
        await edge.fetcher.close()
