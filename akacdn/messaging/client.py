"""The publish/subscribe client every daemon uses (asyncio shell over the pure cores).

Publishing: `publish(topic, body)` numbers the message in the topic's stream, cuts it
into datagrams (`sender.Outbox`), seals each, keeps it in the retransmit history and
sends it through the `[messaging] paths` relays `paths.choose` picks (alive, distinct
regions), paced (`sender.Pacer`). Relays that lost a datagram on the way NACK us and
get it again, within the `Budget`. STATE notes go out every `state_interval` for
streams still within their recovery deadline.

Subscribing: SUBSCRIBE renews a lease with every relay each `subscribe_interval`; the
relays' ACKs tell us which are alive. Only datagrams from a configured relay's address
are looked at. DATA goes through the `receiver.Receiver` (dedupe,
reassembly, gap detection); whole messages go to `on_message(Message)`; NACKs go to the
relays the stream came through; messages given up go to `on_lost(topic, sender, seq)`
(a map consumer fetches over HTTP then). Everything refused is counted by reason.

Tasks: `run()` owns the subscription renewals, the paced send queue and the timers;
its owner cancels it. Nothing here raises on what the network sends.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import Callable

from ..config import Network
from ..runtime import Runtime, woken
from .envelope import (
    ACK,
    DATA,
    NACK,
    STATE,
    SUBSCRIBE,
    Datagram,
    EnvelopeError,
    Keyring,
    Nack,
    decode_nack,
    encode,
    stale,
)
from .history import Budget, History
from .paths import Relay, RelayHealth, choose
from .receiver import Delivery, Limits, NackOut, Receiver
from .replay import ReplayGuard
from .sender import Outbox, Pacer
from .stats import TopicStats

Message = Delivery  # what subscribers get: sender, topic, epoch, seq, sent_at, body, ...
NACK_BATCH = 48  # wants per NACK datagram (each names a seq and part ranges)


def limits(net: Network) -> Limits:
    """The receiver's bounds and NACK timing from the config."""
    m = net.messaging
    return Limits(
        max_message=m.max_message_bytes,
        pending_bytes=m.pending_bytes,
        sender_bytes=max(m.max_message_bytes * 2, m.pending_bytes // 2),
        nack=m.nack,
        nack_delay=m.nack_delay,
        nack_interval=m.nack_interval,
        nack_tries=m.nack_tries,
        tail_delay=max(0.05, 5 * m.nack_delay),
        silent_after=m.max_age,
    )


def relays(net: Network) -> list[Relay]:
    return [Relay(m.id, m.region, (m.address, net.ports.messaging)) for m in net.by_role("relay")]


def tune_socket(sock: socket.socket, size: int, rt: Runtime) -> None:
    """Large socket buffers: a burst of chunks must not overflow them. With CAP_NET_ADMIN
    (root) the FORCE options exceed net.core.rmem_max/wmem_max; without it the kernel caps
    the size there, and we say so once, with the sysctl that lifts the cap."""
    for force, plain in ((33, socket.SO_RCVBUF), (32, socket.SO_SNDBUF)):  # SO_RCVBUFFORCE, SO_SNDBUFFORCE
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            try:
                sock.setsockopt(socket.SOL_SOCKET, plain, size)
            except OSError:
                pass
    got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2  # the kernel reports double
    if got < size:
        rt.log.warning(
            "socket_buffer_small",
            wanted=size,
            got=got,
            hint=f"sysctl -w net.core.rmem_max={size} net.core.wmem_max={size} (or run with CAP_NET_ADMIN)",
        )


def nack_bodies(n: NackOut) -> list[bytes]:
    """One receiver NACK as the bodies of NACK datagrams (at most NACK_BATCH wants each)."""
    return [
        encode(Nack(n.sender, n.topic, n.epoch, n.wants[i : i + NACK_BATCH]))
        for i in range(0, len(n.wants), NACK_BATCH)
    ]


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, client: MessagingClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.client._received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.client.rt.log.limited("messaging_socket_error", error=str(exc))


class MessagingClient:
    def __init__(
        self,
        rt: Runtime,
        topics: list[str],
        on_message: Callable[[Message], None],
        sender: str | None = None,
        port: int | None = None,
        on_lost: Callable[[str, str, int], None] | None = None,
    ) -> None:
        """`sender` names us in datagrams (default the machine id; a second daemon on the
        machine needs its own); `port` is the local UDP port (default ports.messaging; 0
        for any, when subscribing to nothing)."""
        self.rt = rt
        self.sender = sender or rt.machine.id
        self.port = rt.net.ports.messaging if port is None else port
        self.topics = set(topics)
        self.on_message = on_message
        self.on_lost = on_lost
        now = time.monotonic()
        self.epoch = time.time_ns()
        self.configure(rt.net)
        rt.on_reload(self.configure)
        m = rt.net.messaging
        self.outbox = Outbox(self.sender, self.epoch, m.chunk_bytes, m.deadline, m.state_interval)
        self.receiver = Receiver(m.deadline, limits(rt.net), started=self.epoch)
        self.history = History(m.history_bytes, m.history_age)
        self.budget = Budget(share=m.retransmit_share)
        self.pacer = Pacer(m.pace, m.burst, now)
        interval = rt.net.timing.subscribe_interval
        self.health = RelayHealth(now, dead_after=3 * interval, grace=2 * interval)
        self.guard = ReplayGuard(max_age=m.max_age)  # for control datagrams (NACK, ACK)
        self._ctl_seq = time.time_ns()
        # paced sends: (datagram, targets, the message's topic and seq when it is its last part)
        self._queue: deque[tuple[bytes, list[tuple[str, int]], tuple[str, int] | None]] = deque()
        self._queued_bytes = 0
        self._send_ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._sleep_until = float("inf")
        self._transport: asyncio.DatagramTransport | None = None
        self._paths: list[str] = []
        self.stats = TopicStats(rt)
        self.alive_gauge = rt.gauge("akacdn_messaging_relays_alive", "Relays that answered our subscriptions lately")

    def configure(self, net: Network) -> None:
        """Take the keys and the relay list from a (re)loaded config."""
        self.keyring = Keyring(net.message_keys, net.message_key_id)
        self.relays = relays(net)
        self.by_address = {r.address: r for r in self.relays}
        self.paths_k = net.messaging.paths

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Proto(self), local_addr=(self.rt.own_address, self.port)
        )
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            tune_socket(sock, self.rt.net.messaging.socket_buffer, self.rt)
        queued, self.rt.publish_at_start = self.rt.publish_at_start, []
        for topic, body in queued:  # what the daemon had to say before it could (crash records)
            self.publish(topic, body)
        if self.rt.recovery is not None and self.rt.recovery.publish is None:
            self.rt.recovery.publish = self.publish

    def close(self) -> None:
        if self._transport:
            self._transport.close()

    # -- publishing -----------------------------------------------------------------------
    def paths(self, now: float) -> list[Relay]:
        alive = self.health.alive(self.relays, now)
        return choose(self.relays, alive, self.sender, self.rt.machine.region, self.paths_k)

    def publish(self, topic: str, body: bytes) -> bool:
        """Send one message (any size up to `max_message_bytes`); never blocks, never
        raises on send errors. False when it was refused (too big, queue full)."""
        if self._transport is None:
            return False
        m = self.rt.net.messaging
        if len(body) > m.max_message_bytes or self._queued_bytes + len(body) > 2 * m.max_message_bytes:
            self.stats.dropped(topic, "send_refused")
            self.rt.log.limited("publish_refused", topic=topic, size=len(body), queued=self._queued_bytes)
            return False
        now, wall = time.monotonic(), time.time()
        targets = [r.address for r in self.paths(now)]
        stream = (self.sender, topic, self.epoch)
        for d in self.outbox.message(topic, body, wall, now):
            data = self.keyring.seal(d)
            self.history.add(now, stream, d.seq, d.part, data)
            last = (topic, d.seq) if d.part == d.parts - 1 else None
            if not self._queue and self.pacer.take(now) == 0.0:
                self._send(data, targets, last)
            else:
                self._queue.append((data, targets, last))
                self._queued_bytes += len(data)
                self._send_ready.set()
        self.stats.sent(topic)
        return True

    def _send(self, data: bytes, targets: list[tuple[str, int]], last: tuple[str, int] | None) -> None:
        assert self._transport is not None
        for target in targets:
            self._transport.sendto(data, target)
            self.budget.earn(target)
        self.stats.datagrams_out("data", len(targets))
        if last is not None:
            self.outbox.flushed(*last)

    async def _paced_sends(self) -> None:
        while True:
            await self._send_ready.wait()
            while self._queue:
                wait = self.pacer.take(time.monotonic())
                if wait:
                    await asyncio.sleep(wait)
                    continue
                data, targets, last = self._queue.popleft()
                self._queued_bytes -= len(data)
                self._send(data, targets, last)
            self._send_ready.clear()

    def _control(self, kind: int, topic: str, body: bytes) -> bytes:
        self._ctl_seq += 1
        return self.keyring.seal(Datagram(kind, self.sender, topic, 0, self._ctl_seq, 0, 0, 0, time.time(), body))

    # -- subscribing ----------------------------------------------------------------------
    async def run(self) -> None:
        """Subscription renewals, paced sends, NACK/STATE timers: until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._subscriptions())
            tg.create_task(self._paced_sends())
            tg.create_task(self._timers())

    async def _subscriptions(self) -> None:
        """Renew our topics with every relay (an empty list when we only publish: the
        ACKs tell us which relays are alive)."""
        while True:
            if self._transport is not None:
                data = self._control(SUBSCRIBE, "", encode(sorted(self.topics)))
                for relay in self.relays:
                    self._transport.sendto(data, relay.address)
                self.stats.datagrams_out("subscribe", len(self.relays))
            now = time.monotonic()
            self.alive_gauge.set(len(self.health.alive(self.relays, now)))
            paths = [r.id for r in self.paths(now)]
            if paths != self._paths:  # an operator sees in /events which relays carry us, and when that changed
                self.rt.record(
                    "messaging_paths", relays=paths, was=self._paths, alive=sorted(self.health.alive(self.relays, now))
                )
                self._paths = paths
            await asyncio.sleep(self.rt.net.timing.subscribe_interval)

    async def _timers(self) -> None:
        """Sleep until the receiver's next deadline or the next STATE notes."""
        interval = self.rt.net.messaging.state_interval
        next_state = time.monotonic() + interval
        while True:
            deadline = self.receiver.next_deadline()
            until = min(next_state, deadline if deadline is not None else next_state)
            self._sleep_until = until
            self._wake.clear()
            await woken(self._wake, until - time.monotonic())
            self._sleep_until = float("inf")
            now = time.monotonic()
            self._nacks(self.receiver.on_timer(now))
            self._drain_lost()
            if now >= next_state:
                next_state = now + interval
                self._states(now)

    def _states(self, now: float) -> None:
        notes = self.outbox.states(time.time(), now)
        if not notes or self._transport is None:
            return
        targets = [r.address for r in self.paths(now)]
        for d in notes:
            data = self.keyring.seal(d)
            for target in targets:
                self._transport.sendto(data, target)
        self.stats.datagrams_out("state", len(notes) * len(targets))

    def _nacks(self, nacks: list[NackOut]) -> None:
        if self._transport is None:
            return
        for n in nacks:
            self.stats.nacked(n.topic, len(n.wants))
            for body in nack_bodies(n):
                self._transport.sendto(self._control(NACK, n.topic, body), n.via)  # type: ignore[arg-type]
                self.stats.datagrams_out("nack", 1)

    def _drain_lost(self) -> None:
        lost = self.receiver.lost
        while lost:
            sender, topic, seq, reason = lost.popleft()
            self.stats.lost(topic, reason)
            if self.on_lost is not None and reason in ("deadline", "memory", "resync", "rejoined"):
                try:
                    self.on_lost(topic, sender, seq)
                except Exception as e:  # a consumer's bug must not stop the timers
                    self.rt.log.limited("on_lost_error", topic=topic, error=repr(e))

    # -- receiving ------------------------------------------------------------------------
    def _received(self, data: bytes, addr: tuple[str, int]) -> None:
        relay = self.by_address.get(addr)
        if relay is None:  # everything reaches us through a relay: the rest is not checked further
            self.stats.dropped("", "not_from_relay")
            self.rt.log.limited("message_refused", reason="not_from_relay", peer=addr[0])
            return
        try:
            d = self.keyring.open(data)
        except EnvelopeError as e:
            self.stats.dropped("", e.reason)
            self.rt.log.limited("message_refused", reason=e.reason, peer=addr[0])
            return
        now = time.monotonic()
        self.health.heard(relay.id, now)
        why = stale(d, time.time(), self.rt.net.messaging.max_age)
        if why is not None:
            self.stats.dropped(d.topic, why)
            return
        kind = d.kind
        if kind == DATA:
            self._data(now, d, addr)
        elif kind == STATE:
            if d.topic in self.topics:
                self.receiver.state(now, d, addr)
                self._maybe_wake()
        elif kind == NACK:
            self._nacked(now, d, addr)
        elif kind == ACK:
            if self.guard.check(d.sender, d.seq, d.sent_at, time.time()) != "ok":
                self.stats.dropped("", "bad_ack")
        else:
            self.stats.dropped("", "unexpected_kind")

    def _data(self, now: float, d: Datagram, addr: tuple[str, int]) -> None:
        if d.topic not in self.topics:
            self.stats.dropped(d.topic, "unwanted_topic")
            return
        verdict, msg = self.receiver.datagram(now, d, addr)
        if msg is None:
            if verdict != "new":
                self.stats.dropped(d.topic, verdict)
            self._maybe_wake()
            return
        self.stats.delivered(msg)
        self._drain_lost()
        try:
            self.on_message(msg)
        except Exception as e:  # a bad message must never take the daemon down
            self.stats.dropped(d.topic, "handler_error")
            self.rt.log.limited("message_handler_error", topic=d.topic, error=repr(e))
        self._maybe_wake()

    def _maybe_wake(self) -> None:
        deadline = self.receiver.next_deadline()
        if deadline is not None and deadline < self._sleep_until:
            self._wake.set()

    def _nacked(self, now: float, d: Datagram, addr: tuple[str, int]) -> None:
        """A relay lacks datagrams of our streams: resend what we still hold, within budget."""
        if self.guard.check(d.sender, d.seq, d.sent_at, time.time()) != "ok":
            self.stats.dropped("", "replayed_nack")
            return
        try:
            nack = decode_nack(d.body)
        except EnvelopeError:
            self.stats.dropped("", "malformed_nack")
            return
        if nack.sender != self.sender or nack.epoch != self.epoch:
            self.stats.dropped(nack.topic, "nack_not_ours")
            return
        assert self._transport is not None
        stream = (nack.sender, nack.topic, nack.epoch)
        for want in nack.wants:
            for data in self.history.lookup(stream, want.seq, want.parts):
                if not self.budget.spend(addr):
                    self.stats.repairs(nack.topic, "budget")
                    return
                self._transport.sendto(data, addr)
                self.stats.repairs(nack.topic, "sent")
