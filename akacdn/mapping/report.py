"""Heartbeats from serving machines to the mapping centers (asyncio shell)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec

from ..messaging.client import MessagingClient
from ..runtime import Runtime
from .messages import HEARTBEAT_TOPIC, Heartbeat

_enc = msgspec.msgpack.Encoder()


async def send_heartbeats(
    rt: Runtime,
    client: MessagingClient,
    status: Callable[[float], tuple[bool, float, str]],
    maps: Callable[[], dict[str, tuple[int, int, float]]] | None = None,
) -> None:
    """Every heartbeat_interval publish (healthy, load, detail) = status(interval), and for
    a nameserver the maps it answers from (`akacdn status` shows their version and age)."""
    interval = rt.net.timing.heartbeat_interval
    m = rt.machine
    while True:
        healthy, load, detail = status(interval)
        held = maps() if maps is not None else {}
        rec = rt.recovery
        if rec is None:
            hb = Heartbeat(m.id, m.role, m.region, healthy, load, detail, held)
        else:
            rolls = rec.started.rolls if rec.started else 0
            mode = "in_place" if rec.in_place else ""
            hb = Heartbeat(m.id, m.role, m.region, healthy, load, detail, held, rec.bundle, rec.bundle_refused, 0.0,
                           rolls, mode)  # fmt: skip
        client.publish(HEARTBEAT_TOPIC, _enc.encode(hb))
        await asyncio.sleep(interval)
