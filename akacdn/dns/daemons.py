"""The TLNS and LLNS daemons: a zone, its map holder, a DNS server, messaging; and,
with `[dns] workers = N`, the worker processes that share the DNS port (`..workers`).
Besides R and S, the parent sends its workers M: a signed map it accepted (verified
again by the worker, not persisted)."""

from __future__ import annotations

import asyncio
import contextlib

from ..mapping.consumer import MapHolder
from ..mapping.follow import MapFeed
from ..mapping.maps import AnyMap, LowMap, TopMap
from ..mapping.messages import ANNOUNCE_TOPIC
from ..mapping.report import send_heartbeats
from ..messaging.client import Message, MessagingClient
from ..recovery.follow import BundleFollower
from ..recovery.orders import Orders
from ..runtime import Runtime
from ..workers import Link, decode_stats, encode_stats, from_parent
from .lowlevel import LowLevelZone
from .server import DnsServer
from .toplevel import TopLevelZone

Zone = TopLevelZone | LowLevelZone


def _zone(rt: Runtime) -> tuple[Zone, type[AnyMap], str]:
    if rt.machine.role == "tlns":
        return TopLevelZone(rt.net), TopMap, "top"
    return LowLevelZone(rt.net, rt.machine.region), LowMap, "low"


class Nameserver:
    """A zone answering from the map its holder keeps, through a DNS server."""

    def __init__(self, rt: Runtime, on_map: list[bytes] | None = None) -> None:
        self.rt = rt
        self.zone, kind, key = _zone(rt)
        self.server = DnsServer(rt, self.zone.answer)  # registers its sockets as not ready yet
        self.holder: MapHolder[AnyMap] = MapHolder(rt, kind, key, self._use_map)
        rt.on_reload(self._reconfigure)
        rt.not_ready("map", "no map yet (none on disk, none received)")
        if self.holder.load_last_known_good():
            rt.ready("map")

    def _use_map(self, m: AnyMap) -> None:
        self.zone.use_map(m)  # type: ignore[arg-type]
        if isinstance(m, LowMap) and self.rt.recovery is not None:  # quarantined: faults fail in place
            self.rt.recovery.contained = frozenset(q.serial for q in m.quarantines)
        self.server.map_changed()

    def _reconfigure(self, _: object) -> None:
        self.zone.configure(self.rt.net)
        self.server.map_changed()

    def offer(self, data: bytes, persist: bool = True) -> bool:
        if self.holder.offer(data, persist=persist):
            self.rt.ready("map")
            return True
        return False

    def version(self) -> tuple[int, int] | None:
        m = self.holder.current
        return (m.version[0], m.version[1]) if m is not None else None


async def _worker_link(rt: Runtime, ns: Nameserver, link: Link) -> None:
    """Parent side: tell the worker about maps and reloads, take its counters."""
    await link.open()
    if ns.holder.current_bytes is not None:
        link.send(b"M", ns.holder.current_bytes)
    try:
        while True:
            kind, body = await link.receive()
            if kind == b"S":
                ns.server.stats.workers[link.index] = decode_stats(body)
    except EOFError:
        raise RuntimeError(f"DNS worker {link.index} exited") from None


async def nameserver_main(rt: Runtime, links: list[Link] | None = None) -> None:
    """The daemon's own process: serves DNS too, and feeds its workers."""
    links = links or []
    follower = BundleFollower(rt)  # the release bundle this machine runs, from the last run on
    follower.load_last_known_good()
    ns = Nameserver(rt)

    def offer(data: bytes) -> bool:
        if ns.offer(data):
            for link in links:
                link.send(b"M", data)
            return True
        return False

    feed = MapFeed(rt, ns.holder.key, ns.version, offer)
    orders = Orders(rt, follower.on_order)  # the network's recovery mode, the bundle to run

    def on_message(env: Message) -> None:
        if env.topic == ANNOUNCE_TOPIC:
            feed.on_announce(env.body)
            orders.on_announce(env.body)
        else:
            feed.heard()
            offer(env.body)

    rt.on_reload(lambda _: [link.send(b"R", b"") for link in links])
    if rt.recovery is not None:
        rt.recovery.on_mode.append(lambda mode: [link.send(b"X", mode.encode()) for link in links])
    client = MessagingClient(rt, [f"map.{ns.holder.key}", ANNOUNCE_TOPIC], on_message, on_lost=feed.on_lost)
    await client.start()
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(ns.server.serve())
            tg.create_task(client.run())
            tg.create_task(feed.run())
            tg.create_task(follower.run())
            tg.create_task(rt.serve_management())
            tg.create_task(rt.watchdog())
            for link in links:
                tg.create_task(_worker_link(rt, ns, link))
            tg.create_task(send_heartbeats(rt, client, lambda _: _status(ns.holder), lambda: _held(ns.holder)))
    finally:
        client.close()
        for link in links:
            link.close()


async def worker_main(rt: Runtime, link: Link) -> None:
    """A worker process: DNS only; maps, reloads (and the bundle the parent runs) and the
    recovery mode from the parent."""
    BundleFollower(rt).follow_disk()
    ns = Nameserver(rt)
    await link.open()

    def on_frame(kind: bytes, body: bytes) -> None:
        if kind == b"M":
            ns.offer(body, persist=False)
        elif kind == b"X" and rt.recovery is not None:
            rt.recovery.set_mode(body.decode())

    async def stats() -> None:
        while True:
            await asyncio.sleep(1.0)
            link.send(b"S", encode_stats(ns.server.stats.snapshot()))

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(ns.server.serve())
            tg.create_task(from_parent(link, rt.reload, on_frame))
            tg.create_task(stats())
    finally:
        with contextlib.suppress(Exception):
            link.close()


def _status(holder: MapHolder[AnyMap]) -> tuple[bool, float, str]:
    # a nameserver with no map cannot answer: it says so instead of claiming health
    return holder.current is not None, 0.0, "" if holder.current else "no map"


def _held(holder: MapHolder[AnyMap]) -> dict[str, tuple[int, int, float]]:
    m = holder.current
    return {holder.key: (m.version[0], m.version[1], m.made_at)} if m is not None else {}
