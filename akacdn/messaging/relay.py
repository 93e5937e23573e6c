"""The relay daemon: forwards each authenticated message to the subscribers of its topic.

Relays check the sender's HMAC and drop replays before forwarding, so a forged or
replayed datagram is not amplified. They keep no other state than leases.
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from ..runtime import Runtime
from .envelope import SUBSCRIBE, EnvelopeError, open_envelope
from .replay import ReplayGuard
from .subscriptions import SubscriptionTable

_topics = msgspec.msgpack.Decoder(list[str])


class RelayProtocol(asyncio.DatagramProtocol):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.key = rt.net.message_key
        rt.on_reload(lambda net: setattr(self, "key", net.message_key))
        self.lease = rt.net.timing.subscribe_interval * 3
        self.table = SubscriptionTable()
        self.guard = ReplayGuard()
        self.transport: asyncio.DatagramTransport | None = None
        self.forwarded = rt.counter("akacdn_relay_forwarded", "Datagrams forwarded", ("topic",))
        self.dropped = rt.counter("akacdn_relay_dropped", "Datagrams refused", ("reason",))
        self.subscribers = rt.gauge("akacdn_relay_subscribers", "Live subscriptions")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            env = open_envelope(self.key, data)
        except EnvelopeError as e:
            self.dropped.labels(e.reason).inc()
            self.rt.log.limited("message_refused", reason=e.reason, peer=addr[0])
            return
        now = time.time()
        verdict = self.guard.check(env.sender, env.seq, env.sent_at, now)
        if verdict != "ok":
            self.dropped.labels(verdict).inc()
            return
        if env.topic == SUBSCRIBE:
            try:
                topics = _topics.decode(env.body)
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.dropped.labels("malformed").inc()
                return
            if not self.table.subscribe(addr, topics, time.monotonic(), self.lease):
                self.dropped.labels("table_full").inc()
            return
        assert self.transport is not None
        for target in self.table.targets(env.topic, time.monotonic()):
            if target != addr:
                self.transport.sendto(data, target)
                self.forwarded.labels(env.topic).inc()


async def main(rt: Runtime) -> None:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: RelayProtocol(rt), local_addr=(rt.machine.address, rt.net.ports.messaging)
    )
    rt.log.info("listening", address=rt.machine.address, port=rt.net.ports.messaging)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(rt.serve_management())
            tg.create_task(rt.watchdog())
            rt.ready("socket")
            while True:
                await asyncio.sleep(rt.net.timing.subscribe_interval)
                proto.table.expire(time.monotonic())
                proto.subscribers.set(len(proto.table))
    finally:
        transport.close()
