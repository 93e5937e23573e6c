"""The relay daemon: forwards each authenticated datagram to its topic's subscribers,
keeps a short retransmit history, and recovers its own losses from the publishers.

Per datagram (asyncio shell; the decisions are in the pure cores):
- Every datagram: tag checked (forgeries are not amplified), then its source address
  must be one of the sending machine's configured addresses ("wrong_source": a replay
  from elsewhere, or a subscription made for someone else's address).
- DATA: `max_age` checked, then the relay's
  own `Receiver` (no reassembly) says whether it is new: a duplicate or a replay is
  dropped, a new one goes into the `History` and to every live subscriber of the topic
  (`SubscriptionTable`), each of which earns retransmission credit (`Budget`).
- STATE: fed to the receiver (a lost tail from the publisher shows) and forwarded.
- SUBSCRIBE: the lease is renewed and an ACK goes back (clients choose paths by them).
- NACK from a subscriber: what the history holds is resent, within the budget; what it
  lacks the subscriber asks another relay for (and this relay is recovering it anyway).
The receiver's NACKs go to the publisher the stream came from. The relay also serves
the reliable HTTP transport as a cache of the mapping centers (`relaycache.RelayCache`).
"""

from __future__ import annotations

import asyncio
import time

from ..config import Network
from ..runtime import Runtime, woken
from .client import limits, nack_bodies, tune_socket
from .envelope import (
    ACK,
    DATA,
    KINDS,
    NACK,
    STATE,
    SUBSCRIBE,
    Datagram,
    EnvelopeError,
    Keyring,
    decode_nack,
    decode_topics,
    stale,
)
from .history import Budget, History
from .receiver import Receiver
from .replay import ReplayGuard
from .subscriptions import SubscriptionTable

Addr = tuple[str, int]


class RelayProtocol(asyncio.DatagramProtocol):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        m = rt.net.messaging
        self.configure(rt.net)
        rt.on_reload(self.configure)
        self.lease = rt.net.timing.subscribe_interval * 3
        self.table = SubscriptionTable()
        self.receiver = Receiver(m.deadline, limits(rt.net), reassemble=False, started=time.time_ns())
        self.history = History(m.history_bytes, m.history_age)
        self.budget = Budget(share=m.retransmit_share)
        self.guard = ReplayGuard(max_age=m.max_age)  # control datagrams: SUBSCRIBE, NACK
        self.transport: asyncio.DatagramTransport | None = None
        self.wake = asyncio.Event()
        self.sleep_until = float("inf")
        self._seq = time.time_ns()
        self._targets: dict[str, list[Addr]] = {}  # per topic, rebuilt when the table changes
        self.forwarded = rt.counter("akacdn_relay_forwarded", "Datagrams forwarded", ("topic",))
        self.dropped = rt.counter("akacdn_relay_dropped", "Datagrams refused", ("reason",))
        self.repairs = rt.counter("akacdn_relay_repairs", "Datagrams resent on a subscriber's NACK", ("result",))
        self.nacks = rt.counter("akacdn_relay_nack_wants", "Messages the relay asked publishers for")
        self.lost = rt.counter("akacdn_relay_lost", "Messages the relay gave up recovering", ("reason",))
        self.subscribers = rt.gauge("akacdn_relay_subscribers", "Live subscriptions")
        inbound = rt.counter("akacdn_relay_datagrams_in", "Authenticated datagrams received", ("kind",))
        self.inbound = [inbound.labels(k) for k in KINDS]
        self.history_bytes = rt.gauge("akacdn_relay_history_bytes", "Bytes in the retransmit history")
        self._fwd: dict[str, object] = {}

    def configure(self, net: Network) -> None:
        """Keys, and where each machine may send from, from a (re)loaded config."""
        self.keyring = Keyring(net.message_keys, net.message_key_id)
        self.sources = {m.id: {a for a in (m.address, m.host_address, m.address6) if a} for m in net.machines}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            tune_socket(sock, self.rt.net.messaging.socket_buffer, self.rt)

    def datagram_received(self, data: bytes, addr: Addr) -> None:  # type: ignore[override]
        try:
            d = self.keyring.open(data)
        except EnvelopeError as e:
            self.dropped.labels(e.reason).inc()
            self.rt.log.limited("message_refused", reason=e.reason, peer=addr[0])
            return
        if addr[0] not in self.sources.get(d.sender.split("/", 1)[0], ()):
            self.dropped.labels("wrong_source").inc()
            self.rt.log.limited("wrong_source", sender=d.sender, peer=addr[0])
            return
        why = stale(d, time.time(), self.rt.net.messaging.max_age)
        if why is not None:
            self.dropped.labels(why).inc()
            return
        kind = d.kind
        self.inbound[kind].inc()
        if kind == DATA:
            self._data(data, d, addr)
        elif kind == STATE:
            if self.receiver.state(time.monotonic(), d, addr) != "stale_epoch":
                self._forward(data, d.topic, addr)
            self._maybe_wake()
        elif kind == SUBSCRIBE:
            self._subscribe(d, addr)
        elif kind == NACK:
            self._nacked(d, addr)
        else:
            self.dropped.labels("unexpected_kind").inc()

    def _data(self, data: bytes, d: Datagram, addr: Addr) -> None:
        now = time.monotonic()
        verdict, _ = self.receiver.datagram(now, d, addr)
        if verdict in ("new", "delivered"):
            self.history.add(now, (d.sender, d.topic, d.epoch), d.seq, d.part, data)
            self._forward(data, d.topic, addr)
        else:
            self.dropped.labels(verdict).inc()
        self._maybe_wake()

    def _forward(self, data: bytes, topic: str, source: Addr) -> None:
        assert self.transport is not None
        targets = self._targets.get(topic)
        if targets is None:
            targets = self._targets[topic] = self.table.targets(topic, time.monotonic())
        sent = 0
        for target in targets:
            if target != source:
                self.transport.sendto(data, target)
                self.budget.earn(target)
                sent += 1
        if sent:
            counter = self._fwd.get(topic)
            if counter is None:
                counter = self._fwd[topic] = self.forwarded.labels(topic)
            counter.inc(sent)  # type: ignore[attr-defined]

    def _subscribe(self, d: Datagram, addr: Addr) -> None:
        if self.guard.check(d.sender, d.seq, d.sent_at, time.time()) != "ok":
            self.dropped.labels("duplicate").inc()
            return
        try:
            topics = decode_topics(d.body)
        except EnvelopeError:
            self.dropped.labels("malformed").inc()
            return
        before = self.table.topics_of(addr)
        if not self.table.subscribe(addr, topics, time.monotonic(), self.lease):
            self.dropped.labels("table_full").inc()
            return
        if before != frozenset(topics):  # a renewal changes nothing: keep the per-topic targets
            self._targets.clear()
        assert self.transport is not None
        self.transport.sendto(self._control(ACK, "", b""), addr)

    def _nacked(self, d: Datagram, addr: Addr) -> None:
        if self.guard.check(d.sender, d.seq, d.sent_at, time.time()) != "ok":
            self.dropped.labels("duplicate").inc()
            return
        try:
            nack = decode_nack(d.body)
        except EnvelopeError:
            self.dropped.labels("malformed").inc()
            return
        assert self.transport is not None
        stream = (nack.sender, nack.topic, nack.epoch)
        for want in nack.wants:
            found = self.history.lookup(stream, want.seq, want.parts)
            if not found:
                self.repairs.labels("missing").inc()
            for data in found:
                if not self.budget.spend(addr):
                    self.repairs.labels("budget").inc()
                    return
                self.transport.sendto(data, addr)
                self.repairs.labels("sent").inc()

    def _control(self, kind: int, topic: str, body: bytes) -> bytes:
        self._seq += 1
        sender = self.rt.machine.id
        return self.keyring.seal(Datagram(kind, sender, topic, 0, self._seq, 0, 0, 0, time.time(), body))

    def _maybe_wake(self) -> None:
        deadline = self.receiver.next_deadline()
        if deadline is not None and deadline < self.sleep_until:
            self.wake.set()

    def on_timer(self, now: float) -> None:
        """NACK the publishers for what this relay missed; count what it gave up."""
        assert self.transport is not None
        for n in self.receiver.on_timer(now):
            self.nacks.inc(len(n.wants))
            for body in nack_bodies(n):
                self.transport.sendto(self._control(NACK, n.topic, body), n.via)  # type: ignore[arg-type]
        while self.receiver.lost:
            self.lost.labels(self.receiver.lost.popleft().reason).inc()

    async def timers(self) -> None:
        while True:
            deadline = self.receiver.next_deadline()
            self.sleep_until = deadline if deadline is not None else time.monotonic() + 1.0
            self.wake.clear()
            await woken(self.wake, self.sleep_until - time.monotonic())
            self.sleep_until = float("inf")
            self.on_timer(time.monotonic())

    async def housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.rt.net.timing.subscribe_interval)
            now = time.monotonic()
            if self.table.expire(now):
                self._targets.clear()
            self.history.expire(now)
            self.subscribers.set(len(self.table))
            self.history_bytes.set(self.history.bytes)


async def main(rt: Runtime) -> None:
    from .relaycache import RelayCache

    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: RelayProtocol(rt), local_addr=(rt.machine.address, rt.net.ports.messaging)
    )
    rt.log.info("listening", address=rt.machine.address, port=rt.net.ports.messaging)
    cache = RelayCache(rt)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(rt.serve_management(cache.routes))
            tg.create_task(rt.watchdog())
            tg.create_task(proto.timers())
            tg.create_task(proto.housekeeping())
            rt.ready("socket")
    finally:
        transport.close()
        await cache.close()
