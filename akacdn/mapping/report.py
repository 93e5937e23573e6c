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
    rt: Runtime, client: MessagingClient, status: Callable[[float], tuple[bool, float, str]]
) -> None:
    """Every heartbeat_interval publish (healthy, load, detail) = status(interval)."""
    interval = rt.net.timing.heartbeat_interval
    m = rt.machine
    while True:
        healthy, load, detail = status(interval)
        client.publish(HEARTBEAT_TOPIC, _enc.encode(Heartbeat(m.id, m.role, m.region, healthy, load, detail)))
        await asyncio.sleep(interval)
