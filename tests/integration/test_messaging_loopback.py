"""Messaging clients and relays in one process, over real loopback UDP sockets: the
daemons' own `MessagingClient` and `RelayProtocol`, three relays in three regions, a
publisher and subscribers. Loss here is a shim on the receiving side (the namespace lab
test injects it with nftables)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from akacdn.config import load_network
from akacdn.messaging.client import Message, MessagingClient
from akacdn.messaging.envelope import Keyring
from akacdn.messaging.relay import RelayProtocol
from akacdn.runtime import Runtime
from bench.messaging.network import PUBLISHER, TOPIC, Layout, write_config
from bench.messaging.node import check_body, make_body

from .conftest import _nets

SUBS = ("s1", "s2", "s3")


@dataclass
class Mesh:
    relays: dict[str, RelayProtocol]
    transports: dict[str, asyncio.DatagramTransport]
    pub: MessagingClient
    subs: dict[str, MessagingClient]
    got: dict[str, list[Message]] = field(default_factory=dict)

    def metric(self, who: str, name: str, **labels: str) -> float:
        obj = self.relays.get(who) or self.subs.get(who) or self.pub
        value = obj.rt.registry.get_sample_value(name, labels or None)
        return value or 0.0


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def _layout(net: int, **messaging: object) -> Layout:
    return Layout(
        relays={f"relay{i}": (f"r{i}", f"127.{net}.20.{i}") for i in (1, 2, 3)},
        publisher=f"127.{net}.30.1",
        subscribers={s: f"127.{net}.40.{i}" for i, s in enumerate(SUBS, 1)},
        tlns=f"127.{net}.10.1",
        messaging=dict(messaging),
    )


@pytest.fixture
async def mesh(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Mesh]:
    extra = getattr(request, "param", {})
    net = load_network(write_config(tmp_path, _layout(next(_nets), **extra)))
    loop = asyncio.get_running_loop()
    relays, transports = {}, {}
    async with asyncio.TaskGroup() as tg:
        tasks = []
        for m in net.by_role("relay"):
            rt = Runtime(net, m, "relay")
            tr, proto = await loop.create_datagram_endpoint(
                lambda rt=rt: RelayProtocol(rt), local_addr=(m.address, net.ports.messaging)
            )
            relays[m.id], transports[m.id] = proto, tr
            tasks += [tg.create_task(proto.timers()), tg.create_task(proto.housekeeping())]
        got: dict[str, list[Message]] = {s: [] for s in SUBS}
        subs = {}
        for s in SUBS:
            client = MessagingClient(Runtime(net, net.machine(s), "sub"), [TOPIC], got[s].append)
            await client.start()
            subs[s] = client
            tasks.append(tg.create_task(client.run()))
        pub = MessagingClient(Runtime(net, net.machine(PUBLISHER), "pub"), [], lambda _: None)
        await pub.start()
        tasks.append(tg.create_task(pub.run()))
        m = Mesh(relays, transports, pub, subs, got)
        await until(lambda: all(len(r.table) == 4 for r in relays.values()), 10, "every client to subscribe")
        try:
            yield m
        finally:
            for t in tasks:
                t.cancel()
            for c in [pub, *subs.values()]:
                c.close()
            for tr in transports.values():
                tr.close()


def lossy(receive: Callable[..., None], rate: float, rnd: random.Random) -> Callable[..., None]:
    def drop_some(data: bytes, addr: tuple[str, int]) -> None:
        if rnd.random() >= rate:
            receive(data, addr)

    return drop_some


def delivered(mesh: Mesh, sub: str) -> dict[int, bool]:
    out = {}
    for msg in mesh.got[sub]:
        index, ok = check_body(msg.body)
        assert index not in out, f"{sub} got message {index} twice"
        out[index] = ok
    return out


def publish(mesh: Mesh, sizes: list[int]) -> None:
    for i, size in enumerate(sizes):
        assert mesh.pub.publish(TOPIC, make_body(i, size))


async def test_every_subscriber_gets_each_message_once_and_whole_through_two_relays(mesh: Mesh) -> None:
    sizes = [300, 200 * 1024, 50, 1300 * 1024, 1200, 1201, 2400]  # 1.3 MB: a 15,000-edge map
    publish(mesh, sizes)
    await until(lambda: all(len(mesh.got[s]) == len(sizes) for s in SUBS), 30, "every message everywhere")
    for s in SUBS:
        assert delivered(mesh, s) == {i: True for i in range(len(sizes))}
    used = [r for r in mesh.relays if mesh.metric(r, "akacdn_relay_forwarded_total", topic=TOPIC)]
    assert len(used) == 2 and len({mesh.relays[r].rt.machine.region for r in used}) == 2  # k = 2 paths
    # with no loss recovery costs nothing: no NACK, no message recovered
    assert sum(mesh.metric(s, "akacdn_messaging_nack_wants_total", topic=TOPIC) for s in SUBS) == 0
    assert mesh.metric("s1", "akacdn_messages_reassembled_total", topic=TOPIC) == 4
    assert mesh.metric("s1", "akacdn_messages_dropped_total", topic=TOPIC, reason="duplicate") > 0  # 2nd copies


async def test_lost_datagrams_are_recovered_by_nack_within_the_budget(mesh: Mesh) -> None:
    rnd = random.Random(9)
    for r in mesh.relays.values():  # 10 % lost into every relay and into every subscriber
        r.datagram_received = lossy(r.datagram_received, 0.1, rnd)  # type: ignore[method-assign]
    for c in mesh.subs.values():
        c._received = lossy(c._received, 0.1, rnd)  # type: ignore[method-assign]
    sizes = [200] * 50 + [200 * 1024] * 3
    publish(mesh, sizes)
    await until(lambda: all(len(mesh.got[s]) == len(sizes) for s in SUBS), 60, "every message everywhere")
    for s in SUBS:
        assert set(delivered(mesh, s).values()) == {True}
    assert sum(mesh.metric(s, "akacdn_messages_recovered_total", topic=TOPIC) for s in SUBS) > 0
    assert sum(mesh.metric(r, "akacdn_relay_repairs_total", result="sent") for r in mesh.relays) > 0
    assert mesh.metric(PUBLISHER, "akacdn_messaging_repairs_total", topic=TOPIC, result="sent") > 0


async def test_a_relay_that_dies_mid_stream_costs_nothing(mesh: Mesh) -> None:
    first = mesh.pub.paths(time.monotonic())
    publish(mesh, [500] * 20)
    await until(lambda: all(len(mesh.got[s]) == 20 for s in SUBS), 20, "the first half")
    dead = first[0].id
    mesh.transports[dead].close()  # the relay process is gone
    for i in range(20, 60):
        assert mesh.pub.publish(TOPIC, make_body(i, 500 if i % 10 else 150 * 1024))
        await asyncio.sleep(0.02)
    await until(lambda: all(len(mesh.got[s]) == 60 for s in SUBS), 30, "every message after the relay died")
    for s in SUBS:
        assert delivered(mesh, s) == {i: True for i in range(60)}
    # the publisher noticed (no ACK of its renewals) and moved to a live relay of another region
    await until(lambda: dead not in {r.id for r in mesh.pub.paths(time.monotonic())}, 10, "a new path")
    now_paths = mesh.pub.paths(time.monotonic())
    assert len({r.region for r in now_paths}) == 2


@pytest.mark.parametrize("mesh", [{}], indirect=True)
async def test_replayed_and_forged_datagrams_are_dropped_and_counted(mesh: Mesh) -> None:
    publish(mesh, [100])
    await until(lambda: all(len(mesh.got[s]) == 1 for s in SUBS), 10, "the message")
    stream = (PUBLISHER, TOPIC, mesh.pub.epoch)
    (captured,) = mesh.pub.history.lookup(stream, 1, [])
    net = mesh.pub.rt.net
    forger = Keyring({net.message_key_id: bytes(32)}, net.message_key_id)
    forged = forger.seal(Keyring(net.message_keys, net.message_key_id).open(captured))
    loop = asyncio.get_running_loop()
    # from the publisher's own address (as if spoofed), and from another machine's
    tr, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=(mesh.pub.rt.machine.address, 0))
    other, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=(net.machine("s1").address, 0))
    try:
        for relay in net.by_role("relay"):
            for data in (captured, captured, forged, b"\x00" * 20):
                tr.sendto(data, (relay.address, net.ports.messaging))
            other.sendto(captured, (relay.address, net.ports.messaging))
        for s in SUBS:  # straight at the subscribers: they hear only relays
            tr.sendto(captured, (net.machine(s).address, net.ports.messaging))
            tr.sendto(forged, (net.machine(s).address, net.ports.messaging))

        def counted() -> bool:
            relays = [
                mesh.metric(r, "akacdn_relay_dropped_total", reason=why) >= 1
                for r in mesh.relays
                for why in ("duplicate", "bad_mac", "size", "wrong_source")
            ]
            subs = [
                mesh.metric(s, "akacdn_messages_dropped_total", topic="", reason="not_from_relay") >= 2 for s in SUBS
            ]
            return all(relays) and all(subs)

        await until(counted, 10, "every forgery and replay counted")
    finally:
        tr.close()
        other.close()
    await asyncio.sleep(0.2)
    assert all(len(mesh.got[s]) == 1 for s in SUBS)  # nothing delivered twice


async def test_key_rotation_a_second_accepted_key_and_unknown_keys_refused(tmp_path: Path) -> None:
    """Phase 2 of a rotation: the publisher sends with the new key (id 2) while everyone
    still accepts the old (id 1); a subscriber that knows only the old key refuses."""
    import tomllib

    import tomli_w

    lay = _layout(next(_nets))
    path = write_config(tmp_path, lay)
    doc = tomllib.loads(path.read_text())
    old = doc["keys"]["message_key"]
    new = "ab" * 32
    doc["keys"].update(message_key=new, message_key_id=2, accept_message_key=old, accept_message_key_id=1)
    path.write_text(tomli_w.dumps(doc))
    both = load_network(path)
    doc["keys"] = {"message_key": old, "message_key_id": 1}
    (tmp_path / "old.toml").write_text(tomli_w.dumps(doc))
    only_old = load_network(tmp_path / "old.toml")
    loop = asyncio.get_running_loop()
    relay = both.machine("relay1")
    tr, proto = await loop.create_datagram_endpoint(
        lambda: RelayProtocol(Runtime(both, relay, "relay")), local_addr=(relay.address, both.ports.messaging)
    )
    got: dict[str, list[Message]] = {"s1": [], "s2": []}
    s1 = MessagingClient(Runtime(both, both.machine("s1"), "sub"), [TOPIC], got["s1"].append)
    s2 = MessagingClient(Runtime(only_old, only_old.machine("s2"), "sub"), [TOPIC], got["s2"].append)
    pub = MessagingClient(Runtime(both, both.machine(PUBLISHER), "pub"), [], lambda _: None)
    clients = [s1, s2, pub]
    for c in clients:
        await c.start()
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(c.run()) for c in clients]
            await until(lambda: len(proto.table) == 3, 10, "subscriptions")
            # relay2 and relay3 never answer: once the start grace is over, paths avoid them
            await until(lambda: "relay1" in {r.id for r in pub.paths(time.monotonic())}, 10, "a path via relay1")
            assert pub.publish(TOPIC, make_body(0, 100))
            await until(lambda: len(got["s1"]) == 1, 10, "the message at the subscriber with both keys")
            await until(
                lambda: (s2.rt.registry.get_sample_value(
                    "akacdn_messages_dropped_total", {"topic": "", "reason": "unknown_key"}) or 0) >= 1,
                10,
                "the old-key-only subscriber to refuse",
            )  # fmt: skip
            assert got["s2"] == []
            for t in tasks:
                t.cancel()
    finally:
        for c in clients:
            c.close()
        tr.close()
