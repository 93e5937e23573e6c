"""The edge daemon: the HTTP server (`http1`) and its worker processes, the store, purges,
heartbeats.

The request flow is `handler.Handler`. Every response names the machine that served it
(`Via`, `X-Served-By`) and its cache outcome (`X-Cache`, `Cache-Status` per RFC 9211,
`Age` when served from the store). Unknown hosts get 421 and never cause a fetch: the
edge is not an open proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ssl
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import aiohttp
import msgspec
from aiohttp import web

from ..config import Network
from ..mapping.consumer import MapHolder
from ..mapping.follow import MapFeed
from ..mapping.maps import LowMap, RegionServers
from ..mapping.messages import ANNOUNCE_TOPIC, PROBE_TOPIC, PURGE_REQUEST_TOPIC, PURGE_TOPIC, REPORT_TOPIC, Report
from ..mapping.prober import Prober
from ..mapping.report import send_heartbeats
from ..mapping.routing import PrefixTable
from ..messaging.client import Message, MessagingClient
from ..messaging.journal import decode_entry
from ..recovery.follow import BundleFollower
from ..recovery.orders import Orders
from ..runtime import Runtime
from ..workers import Link, MergedMetrics, from_parent, registry_snapshot
from .customers import CustomerIndex
from .fetch import Fetcher
from .handler import Handler
from .http1 import Http1Server
from .misslock import MissLocks
from .purge import Purge, PurgeError, Seen, selector
from .purgesync import PurgeSync
from .tiers import TieredStore
from .tls import Certificates
from .upstream import Upstreams


class _PurgeRequest(msgspec.Struct, forbid_unknown_fields=True):
    kind: Literal["url", "customer", "serial"]
    values: list[str]


_purge_dec = msgspec.msgpack.Decoder(Purge)


class Edge:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.customers = CustomerIndex(rt.net)
        self.store = TieredStore(rt)
        self.via = f"1.1 {rt.machine.id} (akacdn)"
        self.fetcher = Fetcher(self.via, rt.state_dir / "cache", config_dir=Path(rt.net.path).parent)
        self.upstreams = self.fetcher.upstreams = Upstreams(rt)
        # upstream connections leave from this machine's own address (what a peering sees)
        self.fetcher.source = rt.machine.host_address or rt.machine.address
        self._hop_timeout(rt.net)
        self.client_networks = _client_networks(rt.net)  # demand is reported per client network
        self.handler = Handler(rt, self.store, self.fetcher, lambda: self.customers)
        self.upstreams.on_origin = lambda c: self.handler.counts.origin(c.serial)
        rt.on_reload(self.configure)
        if rt.net.edge.workers > 1:  # the misses are shared with the workers (the disk tier too)
            waits = rt.counter("akacdn_edge_miss_lock_waits", "Misses that waited for another worker's fetch")
            timeouts = rt.counter("akacdn_edge_miss_lock_timeouts", "Miss-lock waits that gave up and fetched")
            self.handler.locks = MissLocks(rt.state_dir / "cache", waits, timeouts)
        self.objects = rt.gauge("akacdn_edge_cache_objects", "Keys in the memory store")
        self.bytes = rt.gauge("akacdn_edge_cache_bytes", "Bytes in the memory store")
        self.disk_objects = rt.gauge("akacdn_edge_disk_objects", "Keys in the disk store")
        self.disk_dropped = rt.gauge("akacdn_edge_disk_dropped", "Damaged store files deleted since start")
        # one count for the whole shared directory: the parent reports it, workers leave it 0
        self.disk_bytes = rt.gauge("akacdn_edge_disk_bytes", "Bytes of objects in the disk store")
        self.reports_disk_bytes = True
        self.seen = Seen()
        self._contained: list[int] = []  # quarantined serials (the low-level map's)
        self.journaled: dict[str, asyncio.Future[dict[str, int]]] = {}  # purge id -> centers' sequences
        self.publish: Callable[[str, bytes], object] | None = None
        self.to_workers: Callable[[bytes, bytes], object] | None = None  # `[edge] workers` > 1
        self.purges = rt.counter("akacdn_edge_purges", "Purges applied", ("source",))
        self.purge_refused = rt.counter("akacdn_edge_purge_refused", "Purges refused", ("reason",))
        self.cert_refused = rt.counter("akacdn_edge_certificate_refused", "TLS certificates that failed to load")
        self.certificates = Certificates(rt.net, self._certificate_refused)
        self.http: Http1Server | None = None
        self.prober: Prober | None = None  # the parent process's (`main`)
        self._tls_listening = False
        rt.not_ready("socket", "HTTP socket not bound yet")

    def _certificate_refused(self, file: str, why: str) -> None:
        self.cert_refused.inc()
        self.rt.log.error("certificate_refused", file=file, reason=why, kept="the certificate in use")

    def routes(self, app: web.Application) -> None:
        """The edge's own management routes: purges in, its upstream choices out."""
        app.router.add_post("/purge", self.purge_api)
        app.router.add_get("/upstreams", self.upstreams_api)

    async def upstreams_api(self, _: web.Request) -> web.Response:
        """SureRoute's route per customer (primary, last race, each path's result) and the
        parents' health: what this edge (process) does with its misses now."""
        return web.json_response(self.upstreams.status())

    def _hop_timeout(self, net: Network) -> None:
        """How long an upstream attempt may take to connect and answer while others are left."""
        s = net.sureroute
        self.fetcher.hop_timeout = aiohttp.ClientTimeout(
            total=None, connect=2 * s.connect_timeout, sock_connect=s.connect_timeout, sock_read=s.head_timeout
        )

    def configure(self, net: object) -> None:
        """A reloaded config (or a release bundle applied): customers, fault injection."""
        self.customers = CustomerIndex(self.rt.net)
        self.handler.forget_plain()
        self.client_networks = _client_networks(self.rt.net)
        self._hop_timeout(self.rt.net)
        self.handler.configure_faults(self.rt)
        self.certificates.update(self.rt.net)
        if self.certificates.enabled and not self._tls_listening and self.http is not None:
            # the first certificate: HTTPS from now on (the handler owns and awaits the task)
            self.handler._own(asyncio.get_running_loop().create_task(self._listen_tls()))

    def use_map(self, low: LowMap) -> None:
        """The low-level map's quarantines: a serial constrained to other servers is refused
        here (503), so its requests of death reach only its few servers; on those, a fault
        of it fails in place (`Recovery.contained`)."""
        me = self.rt.machine.id
        barred = {q.serial: f"quarantined to {', '.join(q.servers)}" for q in low.quarantines if me not in q.servers}
        contained = sorted(q.serial for q in low.quarantines)
        if (barred, contained) != (self.handler.barred, self._contained):
            self.rt.record("quarantines", barred=sorted(barred), contained=contained, version=list(low.version))
            if self.to_workers is not None:
                self.to_workers(b"Q", msgspec.msgpack.encode((barred, contained)))
        self.handler.barred, self._contained = barred, contained
        if self.rt.recovery is not None:
            self.rt.recovery.contained = frozenset(contained)
        if self.prober is not None:
            self.prober.use_map(low)
        if low.regions != self.upstreams.regions:  # the live edges: parents, SureRoute detours
            self.upstreams.use_map(low)
            if self.to_workers is not None:
                self.to_workers(b"M", msgspec.msgpack.encode(low.regions))

    def status(self, interval: float) -> tuple[bool, float, str]:
        """Heartbeat content: healthy, requests per second since the last beat."""
        self.refresh_gauges()  # (and the counts: `Handler.flush`)
        load, self.handler.served = self.handler.served / interval, 0
        return True, load, ""

    def refresh_gauges(self) -> None:
        self.handler.flush()
        self.objects.set(len(self.store.memory))
        self.bytes.set(self.store.memory.used)
        self.disk_objects.set(len(self.store.disk))
        self.disk_dropped.set(self.store.disk.dropped)
        if self.reports_disk_bytes:
            self.disk_bytes.set(self.store.disk.used)

    # purges ------------------------------------------------------------------------
    def apply_purge(self, purge: Purge, source: str) -> int:
        """Remove what a purge names from both tiers, once per purge id."""
        if not self.seen.first_time(purge.id):
            return 0
        match = selector(purge, list(self.rt.net.customers), self.customers.for_host)
        removed = self.store.delete_where(match)
        if self.to_workers is not None:
            self.to_workers(b"P", msgspec.msgpack.encode(purge))
        self.purges.labels(source).inc()
        self.rt.record("purged", id=purge.id, kind=purge.kind, values=purge.values, removed=removed, source=source)
        return removed

    def apply_body(self, body: bytes, source: str) -> None:
        """A purge as the journal holds it (the msgpack `Purge` an edge published)."""
        try:
            self.apply_purge(_purge_dec.decode(body), source)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, PurgeError) as e:
            self.purge_refused.labels("bad_message").inc()
            self.rt.log.limited("purge_message_refused", error=str(e))

    def wipe_disk(self) -> int:
        """Drop every stored object (purges were missed that can no longer be named)."""
        removed = self.store.delete_where(lambda _: True)
        if self.to_workers is not None:
            self.to_workers(b"W", b"")
        return removed

    def note_journaled(self, center: str, body: bytes) -> None:
        """Tell a waiting purge API call that a center journaled its purge."""
        if not self.journaled:
            return
        try:
            entry = decode_entry(body)
            purge_id = _purge_dec.decode(entry.body).id
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            return
        waiting = self.journaled.get(purge_id)
        if waiting is not None and not waiting.done():
            waiting.set_result({center: entry.seq})

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
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, PurgeError) as e:
            self.purge_refused.labels("bad_request").inc()
            return web.json_response({"error": str(e)}, status=400)
        journaled: dict[str, int] = {}
        if self.publish is not None:
            waiting = self.journaled[purge.id] = asyncio.get_running_loop().create_future()
            try:
                self.publish(PURGE_REQUEST_TOPIC, msgspec.msgpack.encode(purge))
                async with asyncio.timeout(2.0):  # a mapping center journals it: durable network-wide
                    journaled = await waiting
            except TimeoutError:
                pass
            finally:
                del self.journaled[purge.id]
        answer: dict[str, object] = {
            "id": purge.id,
            "removed_here": removed,
            "published": self.publish is not None,
            "journaled": journaled,
        }
        if not journaled:
            answer["warning"] = (
                "no mapping center journaled this purge within 2 s: edges that miss it will not catch up; "
                "check the centers and purge again (purges are idempotent)"
            )
        return web.json_response(answer)

    async def _listen(self, port: int, tls: ssl.SSLContext | None = None) -> None:
        assert self.http is not None
        shared = self.rt.net.edge.workers > 1
        addresses = self.rt.net.service_addresses(self.rt.machine)  # IP takeover: and the peers'
        for address in addresses:
            freebind = bool(self.rt.machine.host_address)
            await self.http.listen(
                address, port, reuse_port=shared, freebind=freebind, tls=tls, sndbuf=self.rt.net.edge.sndbuf
            )
        self.rt.log.info("listening", addresses=addresses, port=port, tls=tls is not None)

    async def _listen_tls(self) -> None:
        self._tls_listening = True
        await self._listen(self.rt.net.ports.https, self.certificates.server)

    async def serve(self) -> None:
        self.http = server = Http1Server(self.handler)
        try:
            await self._listen(self.rt.net.ports.http)
            if self.certificates.enabled:
                await self._listen_tls()
            self.rt.ready("socket")
            async with asyncio.TaskGroup() as tg:
                tg.create_task(server.sweep())
                tg.create_task(self.upstreams.run(self.fetcher.race))  # SureRoute's races
        finally:
            await server.close()


_report_dec = msgspec.msgpack.Decoder(Report)


def _client_networks(net: Network) -> PrefixTable[str]:
    return PrefixTable((c.prefix, c.prefix) for c in net.client_networks)


async def publish_reports(rt: Runtime, edge: Edge, client: MessagingClient) -> None:
    """Per-serial counts to the mapping centers, every heartbeat interval."""
    interval = rt.net.timing.heartbeat_interval
    while True:
        await asyncio.sleep(interval)
        edge.handler.flush()
        report = edge.handler.counts.drain(rt.machine.id, rt.machine.region, interval, edge.client_networks)
        if report is not None:
            client.publish(REPORT_TOPIC, msgspec.msgpack.encode(report))


async def _worker_link(edge: Edge, merged: MergedMetrics, link: Link) -> None:
    """Parent side of `[edge] workers`: take each worker's counters (metrics, per-serial
    counts, requests served); purges and reloads go the other way (`Edge.to_workers`)."""
    try:
        while True:
            kind, body = await link.receive()
            if kind == b"S":
                merged.take(link.index, body)
            elif kind == b"C":
                served, report = body[:8], body[8:]
                edge.handler.served += int.from_bytes(served, "big")
                if report:
                    with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
                        edge.handler.counts.merge(_report_dec.decode(report))
    except EOFError:
        raise RuntimeError(f"edge worker {link.index} exited") from None


async def main(rt: Runtime, links: list[Link] | None = None) -> None:
    links = links or []
    follower = BundleFollower(rt)  # the release bundle this machine runs, from the last run on
    follower.load_last_known_good()
    edge = Edge(rt)
    merged = MergedMetrics(rt.registry)
    if links:
        rt.exposed = merged
        edge.to_workers = lambda kind, body: [link.send(kind, body) for link in links]
        rt.on_reload(lambda _: edge.to_workers(b"R", b"") if edge.to_workers else None)
        if rt.recovery is not None:
            rt.recovery.on_mode.append(lambda mode: edge.to_workers(b"X", mode.encode()) if edge.to_workers else None)
    sync = PurgeSync(rt, edge.apply_body, edge.wipe_disk, lambda: len(edge.store.disk))
    # the low-level map, for its quarantines (kept as last known good like an LLNS's)
    holder: MapHolder[LowMap] = MapHolder(rt, LowMap, "low", edge.use_map)
    holder.load_last_known_good()

    def version() -> tuple[int, int] | None:
        return (holder.current.version[0], holder.current.version[1]) if holder.current else None

    feed = MapFeed(rt, "low", version, holder.offer)
    orders = Orders(rt, follower.on_order)

    def on_message(env: Message) -> None:
        if env.topic == PURGE_TOPIC:
            edge.note_journaled(env.sender, env.body)
            sync.on_entry(env.sender, env.body)
        elif env.topic == ANNOUNCE_TOPIC:
            sync.on_announce(env.body)
            feed.on_announce(env.body)
            orders.on_announce(env.body)
        elif env.topic == "map.low":
            feed.heard()
            holder.offer(env.body)

    def on_lost(topic: str, sender: str, seq: int) -> None:
        sync.on_lost(topic, sender, seq)
        feed.on_lost(topic, sender, seq)

    client = MessagingClient(rt, [PURGE_TOPIC, ANNOUNCE_TOPIC, "map.low"], on_message, on_lost=on_lost)
    edge.publish = client.publish
    # measured mapping: this machine's share of its region's probes (from its own address)
    edge.prober = Prober(rt, lambda body: client.publish(PROBE_TOPIC, body), edge.fetcher.source)
    if holder.current is not None:
        edge.prober.use_map(holder.current)
    await client.start()
    await edge.fetcher.start()
    for link in links:  # open now: the purge catch-up's verdict goes to the workers first
        await link.open()
    started = time.time()

    def trust_disk(trusted: bool) -> None:
        edge.store.distrust_before = 0.0 if trusted else started
        if edge.to_workers is not None:
            edge.to_workers(b"D", repr(edge.store.distrust_before).encode())
        rt.record("disk_tier", trusted=trusted)

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(client.run())
            tg.create_task(feed.run())
            tg.create_task(follower.run())
            tg.create_task(rt.serve_management(edge.routes))
            tg.create_task(rt.watchdog())
            # purges missed while down are applied before the disk tier serves again
            rt.not_ready("purges", "reading the purge journal")
            try:
                async with asyncio.timeout(rt.net.messaging.catchup_wait):
                    synced = await sync.start()
            except TimeoutError:
                synced = False
            trust_disk(synced)
            rt.ready("purges")
            tg.create_task(sync.run(lambda: trust_disk(True)))
            tg.create_task(edge.serve())
            tg.create_task(send_heartbeats(rt, client, edge.status))
            tg.create_task(publish_reports(rt, edge, client))
            tg.create_task(edge.prober.run())
            for link in links:
                tg.create_task(_worker_link(edge, merged, link))
    finally:
        client.close()
        for link in links:
            link.close()
        await edge.handler.close()
        await edge.fetcher.close()


async def worker_main(rt: Runtime, link: Link) -> None:
    """An edge worker process: serves HTTP on the shared port; purges, reloads (and the
    bundle the parent runs), quarantines and the recovery mode come from the parent, its
    counters go to it every second."""
    BundleFollower(rt).follow_disk()
    edge = Edge(rt)
    edge.reports_disk_bytes = False
    await link.open()
    await edge.fetcher.start()

    go = asyncio.Event()  # serve once the parent has caught up with the purge journal

    def on_frame(kind: bytes, body: bytes) -> None:
        if kind == b"P":
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, PurgeError):
                edge.apply_purge(_purge_dec.decode(body), "parent")
        elif kind == b"W":
            edge.store.delete_where(lambda _: True)
        elif kind == b"Q":
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
                barred, contained = msgspec.msgpack.decode(body, type=tuple[dict[int, str], list[int]])
                edge.handler.barred = barred
                if rt.recovery is not None:
                    rt.recovery.contained = frozenset(contained)
        elif kind == b"M":
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                regions = msgspec.msgpack.decode(body, type=tuple[RegionServers, ...])
                edge.upstreams.use_map(LowMap((0, 0), 0.0, regions))
        elif kind == b"X" and rt.recovery is not None:
            rt.recovery.set_mode(body.decode())
        elif kind == b"D":
            with contextlib.suppress(ValueError):
                edge.store.distrust_before = float(body)
            go.set()

    async def serve() -> None:
        await go.wait()
        await edge.serve()

    async def to_parent() -> None:
        while True:
            await asyncio.sleep(1.0)
            edge.refresh_gauges()  # (and the counts: `Handler.flush`)
            served, edge.handler.served = edge.handler.served, 0
            link.send(b"S", registry_snapshot(rt.registry))
            report = edge.handler.counts.drain(rt.machine.id, rt.machine.region, 1.0, edge.client_networks)
            body = msgspec.msgpack.encode(report) if report is not None else b""
            if report is not None or served:
                link.send(b"C", served.to_bytes(8, "big") + body)

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(serve())
            tg.create_task(from_parent(link, rt.reload, on_frame))
            tg.create_task(to_parent())
    finally:
        link.close()
        await edge.handler.close()
        await edge.fetcher.close()
