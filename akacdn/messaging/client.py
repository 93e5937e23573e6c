"""The publish/subscribe client every daemon uses (asyncio shell).

Publishing sends each message to every relay (multi-path); subscribing renews a lease
with every relay each `subscribe_interval`. Incoming datagrams are authenticated,
de-duplicated and handed to `on_message(envelope)`; everything refused is counted by
reason in `akacdn_messages_dropped_total`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec

from ..config import Network
from ..runtime import Runtime
from .envelope import SUBSCRIBE, Envelope, EnvelopeError, open_envelope, seal
from .replay import ReplayGuard

_enc = msgspec.msgpack.Encoder()


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, client: MessagingClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.client._received(data)

    def error_received(self, exc: Exception) -> None:
        self.client.rt.log.limited("messaging_socket_error", error=str(exc))


class MessagingClient:
    def __init__(
        self,
        rt: Runtime,
        topics: list[str],
        on_message: Callable[[Envelope], None],
        sender: str | None = None,
        port: int | None = None,
    ) -> None:
        """`sender` names us in envelopes (default the machine id; a second daemon on the
        machine needs its own, its sequence numbers are its own); `port` is the local UDP
        port (default ports.messaging; 0 for any, when subscribing to nothing)."""
        self.rt = rt
        self.sender = sender or rt.machine.id
        self.port = rt.net.ports.messaging if port is None else port
        self.topics = topics
        self.on_message = on_message
        self.configure(rt.net)
        rt.on_reload(self.configure)
        self.guard = ReplayGuard()
        self._seq = int(time.time() * 1e6)
        self._transport: asyncio.DatagramTransport | None = None
        self.received = rt.counter("akacdn_messages_received", "Messages accepted", ("topic",))
        self.dropped = rt.counter("akacdn_messages_dropped", "Messages refused", ("reason",))
        self.sent = rt.counter("akacdn_messages_sent", "Datagrams sent to relays", ("topic",))

    def configure(self, net: Network) -> None:
        """Take the message key and the relay list from a (re)loaded config."""
        self.key = net.message_key
        self.relays = [(m.address, net.ports.messaging) for m in net.by_role("relay")]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Proto(self), local_addr=(self.rt.own_address, self.port)
        )

    def close(self) -> None:
        if self._transport:
            self._transport.close()

    def publish(self, topic: str, body: bytes) -> None:
        """Send one message to every relay; never blocks, never raises on send errors."""
        if self._transport is None:
            return
        self._seq += 1
        env = Envelope(self.sender, topic, self._seq, time.time(), body)
        data = seal(self.key, env)
        for relay in self.relays:
            self._transport.sendto(data, relay)
        self.sent.labels(topic).inc(len(self.relays))

    async def keep_subscribed(self) -> None:
        """Renew subscriptions with every relay until cancelled."""
        if not self.topics:
            return
        body = _enc.encode(self.topics)
        while True:
            self.publish(SUBSCRIBE, body)
            await asyncio.sleep(self.rt.net.timing.subscribe_interval)

    def _received(self, data: bytes) -> None:
        try:
            env = open_envelope(self.key, data)
        except EnvelopeError as e:
            self.dropped.labels(e.reason).inc()
            self.rt.log.limited("message_refused", reason=e.reason)
            return
        verdict = self.guard.check(env.sender, env.seq, env.sent_at, time.time())
        if verdict != "ok":
            self.dropped.labels(verdict).inc()
            return
        if env.topic not in self.topics:
            self.dropped.labels("unwanted_topic").inc()
            return
        self.received.labels(env.topic).inc()
        try:
            self.on_message(env)
        except Exception as e:  # a bad message must never take the daemon down
            self.dropped.labels("handler_error").inc()
            self.rt.log.limited("message_handler_error", topic=env.topic, error=repr(e))
