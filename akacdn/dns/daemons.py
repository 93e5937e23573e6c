"""The TLNS and LLNS daemons: a zone, its map holder, a DNS server, messaging."""

from __future__ import annotations

import asyncio

from ..mapping.consumer import MapHolder
from ..mapping.maps import AnyMap, LowMap, TopMap
from ..mapping.report import send_heartbeats
from ..messaging.client import MessagingClient
from ..messaging.envelope import Envelope
from ..runtime import Runtime
from .lowlevel import LowLevelZone
from .server import DnsServer
from .toplevel import TopLevelZone


async def _serve(rt: Runtime, zone: TopLevelZone | LowLevelZone, kind: type[AnyMap], heartbeat: bool) -> None:
    server = DnsServer(rt, zone.answer)  # registers its sockets as not ready yet

    def use_map(m: AnyMap) -> None:
        zone.use_map(m)  # type: ignore[arg-type]
        server.map_changed()

    holder: MapHolder[AnyMap] = MapHolder(rt, kind, "top" if kind is TopMap else "low", use_map)

    def reconfigure(net: object) -> None:
        zone.configure(rt.net)
        server.map_changed()

    rt.on_reload(reconfigure)
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


def _llns_status(holder: MapHolder[AnyMap]) -> tuple[bool, float, str]:
    # an LLNS with no map cannot answer: it says so instead of claiming health
    return holder.current is not None, 0.0, "" if holder.current else "no map"


async def tlns_main(rt: Runtime) -> None:
    await _serve(rt, TopLevelZone(rt.net), TopMap, heartbeat=False)


async def llns_main(rt: Runtime) -> None:
    await _serve(rt, LowLevelZone(rt.net, rt.machine.region), LowMap, heartbeat=True)
