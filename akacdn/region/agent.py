"""The region agent daemon (`akacdn agent --config F --machine ID`), asyncio shell.

One per machine that takes part in IP takeover (a machine with `host_address`). It
beacons its state to the region peers (the same role in the same region) over UDP on
`host_address:ports.agent` every `[agent] interval`, as messaging datagrams (sealed with
the network's message key, a stream of its own: `messaging.envelope`) that go through
the same replay protection as every message (`messaging.receiver`: a beacon at or below
the newest heard from that peer, or older than `[messaging] max_age`, is refused, so a
recorded beacon of a dead peer cannot keep it "alive"); checks its own service (the
daemon's `/readyz` on the machine's management port) every `check_interval`; and
feeds both, with ticks, to the pure `takeover` core, carrying out what it returns
through `actions` (address add/remove by netlink, gratuitous ARP bursts plus one refresh
later). It publishes what it sees on the messaging topic `region` for the mapping
centers. Runs on the stock asyncio loop
(pyroute2 0.9 fails under uvloop); scapy is imported once, at start.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from ..config import Machine
from ..mapping.messages import REGION_TOPIC, RegionReport
from ..messaging.client import MessagingClient, limits
from ..messaging.envelope import DATA, Datagram, EnvelopeError, Keyring, stale
from ..messaging.receiver import Receiver
from ..runtime import Runtime
from .takeover import Action, Add, Announce, Heartbeat, Member, Release, Settings, Takeover

BEACON_TOPIC = "agent.beacon"
START_WAIT = 10.0  # seconds the agent waits at start for its own service to pass its check

_hb_enc = msgspec.msgpack.Encoder()
_hb_dec = msgspec.msgpack.Decoder(Heartbeat)


class Carrier:
    """The takeover core's actions on this machine's interface (the one holding its own
    address): netlink through `actions.Interface`, gratuitous ARP through a prepared
    `actions.Announcer`."""

    def __init__(self, iface: Any, announcer: Any) -> None:
        self.iface, self.announcer = iface, announcer
        self.link = iface.link

    @classmethod
    async def open(cls, actions: Any, host_address: str, service: set[str], announcer: Any) -> Carrier:
        iface = await actions.Interface.open(host_address)
        announcer.prepare(iface.link.ifname, iface.link.mac, sorted(service))
        return cls(iface, announcer)

    async def add(self, address: str) -> float:
        # IPv4: the host address's prefix; IPv6: the address alone (the host's own IPv6
        # address on the link brings the on-link route, a /128 adds none)
        return float(await self.iface.add(address, 128 if ":" in address else self.link.prefixlen))

    async def remove(self, address: str) -> None:
        await self.iface.remove(address)

    async def present(self) -> set[str]:
        return set(await self.iface.present())

    async def announce(self, address: str, count: int, spacing: float) -> float:
        return float(await self.announcer.announce(self.link.ifname, address, self.link.mac, count, spacing))

    def close(self) -> None:
        self.iface.close()
        self.announcer.close()


class _Beacons(asyncio.DatagramProtocol):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.agent.received(data, addr)


class Agent:
    def __init__(self, rt: Runtime) -> None:
        from . import actions  # imports scapy once, here at start, never on the takeover path

        self.rt = rt
        a = rt.net.agent
        self.me: Machine = rt.machine
        self.peers = rt.net.region_peers(self.me)
        self.by_host = {p.host_address: p for p in self.peers}
        settings = Settings(
            interval=a.interval,
            dead_after=a.interval * a.misses,
            recover_after=a.recover_after,
            release_grace=a.release_grace,
        )
        members = [Member(p.id, p.service) for p in self.peers]  # address, and address6 if set
        self.core = Takeover(self.me.id, members, settings, incarnation=time.time_ns())
        self.actions = actions
        self.announcer = actions.Announcer()  # scapy's import and sockets: at start, once
        self.carrier: Carrier | None = None
        self.service_addresses = {a for p in self.peers for a in p.service}
        self._work: asyncio.Queue[Action] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._transport: asyncio.DatagramTransport | None = None
        self.refused = rt.counter("akacdn_agent_beacons_refused", "Region beacons refused", ("reason",))
        self.applied = rt.counter("akacdn_agent_actions", "Address actions carried out", ("action",))
        self.failed = rt.counter("akacdn_agent_action_failures", "Address actions that failed", ("action",))
        self.holding = rt.gauge("akacdn_agent_addresses_held", "Service addresses on this machine")
        self.alive_peers = rt.gauge("akacdn_agent_peers_alive", "Region peers alive (not counting us)")
        self.healthy = rt.gauge("akacdn_agent_healthy", "1 while our own service passes its checks")
        self.publish: MessagingClient | None = None
        self._epoch = time.time_ns()
        self._seq = 0
        self.keyring = Keyring(rt.net.message_keys, rt.net.message_key_id)
        rt.on_reload(lambda net: setattr(self, "keyring", Keyring(net.message_keys, net.message_key_id)))
        self.beacons = Receiver(lambda _: 0.0, limits(rt.net))  # newest wins: no recovery
        self._bursts: dict[str, asyncio.Task[None]] = {}
        # released by the core, not yet off the interface: beacons still say we hold them
        self._releasing: set[str] = set()
        rt.not_ready("interface", "service interface not found yet")

    # -- inputs ----------------------------------------------------------------------------
    def received(self, data: bytes, addr: tuple[str, int]) -> None:
        peer = self.by_host.get(addr[0])
        if peer is None:
            self.refused.labels("unknown_source").inc()
            return
        try:
            d = self.keyring.open(data)
        except EnvelopeError:
            self.refused.labels("bad_beacon").inc()
            return
        if d.kind != DATA or d.topic != BEACON_TOPIC or d.sender != peer.id:
            self.refused.labels("wrong_sender").inc()  # a peer speaks only for itself
            return
        why = stale(d, time.time(), self.rt.net.messaging.max_age)
        if why is not None:
            self.refused.labels(why).inc()
            return
        now = time.monotonic()
        verdict, msg = self.beacons.datagram(now, d, addr)
        if msg is None:
            self.refused.labels(verdict).inc()  # duplicate (a replay), stale_epoch, ...
            return
        try:
            hb = _hb_dec.decode(msg.body)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            self.refused.labels("bad_beacon").inc()
            return
        if hb.sender != peer.id:
            self.refused.labels("wrong_sender").inc()
            return
        self._do(self.core.heard(now, hb))  # before our start: only noted

    async def check_own_service(self) -> bool:
        """The local daemon's readiness (`/readyz` on its management port)."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.rt.own_address, self.rt.net.ports.management), 1.0
            )
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(b"GET /readyz HTTP/1.0\r\n\r\n")
            line = await asyncio.wait_for(reader.readline(), 1.0)
            return line.split(b" ", 2)[1:2] == [b"200"]
        except (OSError, TimeoutError, IndexError):
            return False
        finally:
            writer.close()

    # -- outputs ---------------------------------------------------------------------------
    def _do(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Release):
                self._releasing.add(action.address)
            self._work.put_nowait(action)
        while self.core.events:  # the core's decisions, for /events and the logs (`at`: monotonic)
            e = self.core.events.popleft()
            self.rt.record(e.kind, subject=e.subject, reason=e.reason, at=e.at)

    async def _carry_out(self) -> None:
        """One action at a time, in order: releases before adds, add before its announce.
        An announce's burst runs beside the queue (its first ARP goes at once), so a later
        release never waits behind it; a release stops the address's burst first."""
        assert self.carrier is not None
        while True:
            action = await self._work.get()
            kind = type(action).__name__.lower()
            try:
                if isinstance(action, Add):
                    at = await self.carrier.add(action.address)
                    self.rt.record("address_added", address=action.address, at=at)
                elif isinstance(action, Release):
                    burst = self._bursts.pop(action.address, None)
                    if burst is not None:
                        burst.cancel()
                    try:
                        await self.carrier.remove(action.address)
                    finally:
                        self._releasing.discard(action.address)
                    self.rt.record("address_released", address=action.address, at=time.monotonic())
                    self.send_beacon()  # the owner waits for this: tell it now, not next interval
                elif isinstance(action, Announce):
                    first = await self.carrier.announce(action.address, 1, 0.0)
                    self.rt.record("announced", address=action.address, first_arp=first)
                    burst = asyncio.get_running_loop().create_task(self._burst(action.address))
                    self._bursts[action.address] = burst
                    self._tasks.add(burst)
                    burst.add_done_callback(self._tasks.discard)
                self.applied.labels(kind).inc()
            except self.actions.ActionError as e:
                self.failed.labels(kind).inc()
                self.rt.log.limited("action_failed", action=kind, address=action.address, error=str(e))
            self.holding.set(len(self.core.holds))

    async def _burst(self, address: str) -> None:
        """The rest of a gratuitous ARP burst, then one refresh later, for neighbours that
        missed the first; only while we still hold the address."""
        a = self.rt.net.agent
        assert self.carrier is not None
        try:
            if a.garp_count > 1:
                await asyncio.sleep(a.garp_spacing)
                await self.carrier.announce(address, a.garp_count - 1, a.garp_spacing)
            if a.garp_refresh:
                await asyncio.sleep(a.garp_refresh)
                if address in self.core.holds:
                    await self.carrier.announce(address, 1, 0.0)
        except self.actions.ActionError as e:
            self.rt.log.limited("announce_failed", address=address, error=str(e))
        finally:
            if self._bursts.get(address) is asyncio.current_task():
                del self._bursts[address]

    # -- loops -----------------------------------------------------------------------------
    def send_beacon(self) -> None:
        """Our state to every region peer, now."""
        if self._transport is None or not self.core.started:
            return
        self._seq += 1
        hb = self.core.beacon(time.monotonic())
        if self._releasing:  # still on our interface: an owner must not add it yet
            hb = msgspec.structs.replace(hb, holds=tuple(sorted({*hb.holds, *self._releasing})))
        body = _hb_enc.encode(hb)
        beacon = Datagram(DATA, self.me.id, BEACON_TOPIC, self._epoch, self._seq, 0, 1, len(body), time.time(), body)
        data = self.keyring.seal(beacon)
        for p in self.peers:
            if p.id != self.me.id:
                self._transport.sendto(data, (p.host_address, self.rt.net.ports.agent))

    async def beacon(self) -> None:
        while True:
            self.send_beacon()
            await asyncio.sleep(self.rt.net.agent.interval)

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(self.rt.net.agent.interval / 2)
            self._do(self.core.tick(time.monotonic()))
            peers = self.core.peers()
            self.alive_peers.set(sum(1 for s in peers.values() if s.alive))

    async def checks(self) -> None:
        while True:
            ok = await self.check_own_service()
            self.healthy.set(1 if ok else 0)
            self._do(self.core.own_health(time.monotonic(), ok))
            await asyncio.sleep(self.rt.net.agent.check_interval)

    async def report(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.rt.net.agent.interval * 10))
            if self.publish is None:
                continue
            peers = self.core.peers()
            r = RegionReport(
                self.me.id,
                self.me.region,
                sorted(p for p, s in peers.items() if s.alive),
                sorted(p for p, s in peers.items() if not s.alive),
                sorted(self.core.holds),
            )
            self.publish.publish(REGION_TOPIC, msgspec.msgpack.encode(r))

    async def run(self) -> None:
        self.carrier = await Carrier.open(self.actions, self.rt.own_address, self.service_addresses, self.announcer)
        # a clean start: no service address of the region is ours until the core says so
        for address in await self.carrier.present() & self.service_addresses:
            await self.carrier.remove(address)
        self.rt.ready("interface")
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Beacons(self), local_addr=(self.rt.own_address, self.rt.net.ports.agent)
        )
        # Listen for one dead_after first: the core's start decides by what it heard (a
        # buddy covering for us, or a cold region).
        a = self.rt.net.agent
        await asyncio.sleep(a.interval * a.misses)
        deadline = loop.time() + START_WAIT  # and give our own service a moment to come up
        while not (up := await self.check_own_service()) and loop.time() < deadline:
            await asyncio.sleep(a.check_interval)
        self._do(self.core.start(time.monotonic(), healthy=up))
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._carry_out())
                tg.create_task(self.beacon())
                tg.create_task(self.tick())
                tg.create_task(self.checks())
                tg.create_task(self.report())
        finally:
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._transport.close()
            # stopping on purpose: let go, so a buddy takes over without a dual claim
            for address in sorted(self.core.holds):
                try:
                    await self.carrier.remove(address)
                except self.actions.ActionError:
                    pass
            self.carrier.close()


async def main(rt: Runtime) -> None:
    agent = Agent(rt)
    client = MessagingClient(rt, [], lambda _: None, sender=f"{rt.machine.id}/agent", port=0)
    await client.start()
    agent.publish = client
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(agent.run())
            tg.create_task(client.run())
            tg.create_task(rt.serve_management(port=rt.net.ports.agent))
            tg.create_task(rt.watchdog())
    finally:
        client.close()
