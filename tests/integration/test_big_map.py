"""A low-level map at the paper's scale: 15,000 edges (about 1.3 MB signed), built by
the real mapping center from heartbeats, chunked over the real relays, accepted by
every LLNS of the devnet, and answered from.

The 15,000 edges are configured like any others; a sender in the test speaks for them:
each heartbeat is a sealed messaging datagram from the edge's own address (one socket
bound per edge), as that edge's messaging client would send it. The devnet's own
relays, mapping center, LLNSes and TLNSes run as usual (the real edges are not needed)."""

from __future__ import annotations

import resource
import socket
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import tomli_w

from akacdn.config import load_network
from akacdn.devnet.network import BASE_DOMAIN, REGIONS, default_layout
from akacdn.devnet.supervisor import Devnet
from akacdn.mapping.messages import HEARTBEAT_TOPIC, Heartbeat
from akacdn.messaging.client import relays
from akacdn.messaging.envelope import DATA, Datagram, Keyring
from akacdn.messaging.paths import choose

from .conftest import _nets, dig, wait_for

EDGES = 15_000
INTERVAL = 4.0  # heartbeat interval for this network (15,000 edges: 3,750 datagrams a second)


def _phantom_config(dn: Devnet) -> None:
    """Add 15,000 edges (with IPv6 addresses, as real ones may have) and slower heartbeats."""
    doc = tomllib.loads(dn.config_path.read_text())
    net = dn.layout.net
    for i in range(EDGES):
        region = REGIONS[i % len(REGIONS)]
        doc["machines"].append(
            {
                "id": f"{region}-edge{i:05d}",
                "role": "edge",
                "region": region,
                "address": f"127.{net}.{100 + i // 200}.{1 + i % 200}",
                "address6": f"2001:db8:{i // 4096:x}::{i % 4096 + 1:x}",
            }
        )
    doc["timing"].update(heartbeat_interval=INTERVAL, dead_after=3 * INTERVAL, map_interval=1.0)
    dn.config_path.write_text(tomli_w.dumps(doc))
    dn.net = load_network(dn.config_path)


class Phantoms:
    """Heartbeats for the configured edges no process runs, each from its own address."""

    def __init__(self, dn: Devnet) -> None:
        net = dn.net
        self.ring = Keyring(net.message_keys, net.message_key_id)
        self.edges = [m for m in net.by_role("edge") if "-edge" in m.id]
        self.targets = {m.id: [r.address for r in choose(relays(net), set(), m.id, m.region, 1)] for m in self.edges}
        self.epoch = time.time_ns()
        self.socks: dict[str, socket.socket] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="phantom-heartbeats", daemon=True)

    def open(self) -> None:
        for m in self.edges:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((m.address, 0))
            self.socks[m.id] = s
        self.thread.start()

    def run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            seq += 1
            begun = time.monotonic()
            for m in self.edges:
                body = msgspec.msgpack.encode(Heartbeat(m.id, "edge", m.region, True, 0.0, ""))
                d = Datagram(DATA, m.id, HEARTBEAT_TOPIC, self.epoch, seq, 0, 1, len(body), time.time(), body)
                data = self.ring.seal(d)
                for target in self.targets[m.id]:
                    self.socks[m.id].sendto(data, target)
            self.stop.wait(max(0.0, INTERVAL - (time.monotonic() - begun)))

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(10)
        for s in self.socks.values():
            s.close()


@pytest.fixture
def big(tmp_path: Path) -> Iterator[tuple[Devnet, Phantoms]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < EDGES + 1000:
        pytest.fail(f"this test needs {EDGES + 1000} open files (one socket per simulated edge); the limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, EDGES + 1000), hard))
    dn = Devnet(tmp_path / "devnet", default_layout(next(_nets)), resolver=False)
    _phantom_config(dn)
    phantoms = Phantoms(dn)
    try:
        phantoms.open()
        for role in ("relay", "mapper", "llns", "tlns"):
            for m in dn.net.by_role(role):
                dn.start_machine(m.id)
        yield dn, phantoms
    finally:
        phantoms.close()
        dn.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_map_of_15000_edges_reaches_every_llns(big: tuple[Devnet, Phantoms]) -> None:
    dn, _ = big
    llns = dn.net.by_role("llns")
    wait_for(lambda: dn.metric("mc1", "akacdn_map_servers") >= EDGES, 90, "a low-level map of every simulated edge")
    built = dn.metric("mc1", "akacdn_map_built_seq", map="low")
    size = dn.metric("mc1", "akacdn_map_bytes", map="low")
    assert size >= 1.3e6, f"the signed map is {size:.0f} bytes"

    def accepted() -> bool:
        return all(dn.metric(m.id, "akacdn_map_version_seq", map="low") >= built for m in llns)

    wait_for(accepted, 60, "every LLNS to take the 15,000-edge map")
    for m in llns:  # it came over the real-time network, in ~1,100 chunks, not only over HTTP
        assert dn.metric(m.id, "akacdn_messages_reassembled_total", topic="map.low") >= 1, m.id
        answer = dig(m.address, dn.layout.dns_port, f"a123.g.{BASE_DOMAIN}", "A", "+norec")
        addresses = answer.addresses()
        assert answer.status == "NOERROR" and len(addresses) == 2, answer.output
        simulated = {e.address for e in dn.net.by_role("edge") if e.region == m.region and "-edge" in e.id}
        assert set(addresses) <= simulated, (m.id, addresses)
    assert not dn.exited()
