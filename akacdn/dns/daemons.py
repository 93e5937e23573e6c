"""The TLNS and LLNS daemons: a zone, its map holder, a DNS server, messaging."""

from __future__ import annotations

import asyncio

from ..mapping.consumer import MapHolder
from ..mapping.maps import LowMap, TopMap
from ..mapping.report import send_heartbeats
from ..messaging.client import MessagingClient
from ..messaging.envelope import Envelope
from ..runtime import Runtime
from .lowlevel import LowLevelZone
from .server import DnsServer
from .toplevel import TopLevelZone


async def _serve(rt: Runtime, zone: TopLevelZone | LowLevelZone, holder: MapHolder, heartbeat: bool) -> None:
    server = DnsServer(rt, zone.answer)  # registers its sockets as not ready yet
    rt.on_reload(zone.configure)
    rt.not_ready("map", "no map yet (none on disk, none received)")
    if holder.load_last_known_good():
        rt.ready("map")

    def on_message(env: Envelope) -> None:
        if holder.offer(env.body):
            rt.ready("map")

    client = MessagingClient(rt, [f"map.{holder.key}"], on_message)
    await client.start()
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(server.serve())
            tg.create_task(client.keep_subscribed())
            tg.create_task(rt.serve_management())
            tg.create_task(rt.watchdog())
            if heartbeat:
                tg.create_task(send_heartbeats(rt, client, lambda _: _llns_status(holder)))
    finally:
        client.close()


def _llns_status(holder: MapHolder) -> tuple[bool, float, str]:
    # an LLNS with no map cannot answer: it says so instead of claiming health
    return holder.current is not None, 0.0, "" if holder.current else "no map"


async def tlns_main(rt: Runtime) -> None:
    zone = TopLevelZone(rt.net)
    await _serve(rt, zone, MapHolder(rt, TopMap, "top", zone.use_map), heartbeat=False)


async def llns_main(rt: Runtime) -> None:
    zone = LowLevelZone(rt.net)
    holder = MapHolder(rt, LowMap, f"low.{rt.machine.region}", zone.use_map)
    await _serve(rt, zone, holder, heartbeat=True)
