"""Measured, load-aware mapping on the devnet: real edges probe, real mapping centers
allocate, real LLNSes answer (dig), with the RTT of each (region, client network) path
set by probe responders and loss by nftables.

The devnet's two measured client networks: A = 127.N.50.0/24 and B = 127.N.51.0/24,
each with a "resolver" at .1 that the edges probe (a probe responder answering after a
delay chosen by the asking region: no netem here). Here A is nearest r1, B nearest r2. A
client of each asks an LLNS of r3 (`dig -b`), so the answer shows the map's decision,
not the LLNS's own region.

- Slow or lossy probes from r1 to A move A's answers to r2; they come back once healed.
- Load through r2's edges (from B's addresses) over r2's target sheds B to another
  region; B comes back when the load stops.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from akacdn.devnet.network import DEMO_HOST, default_layout
from akacdn.devnet.supervisor import Devnet

from .conftest import _nets, dig, wait_for, wait_for_full_referrals

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="nftables needs root (CI and this machine are root)")

TABLE = f"akacdn_mapping_{os.getpid()}"
# path delays (s) per probing region: far apart, so a 200 ms stall of a loaded machine
# cannot reorder them; "slow" is beyond every other region's
NEAR, MID, FAR, SLOW = 0.05, 0.4, 0.6, 0.9
DELAYS = {"A": {"r1": NEAR, "r2": MID, "r3": FAR}, "B": {"r1": MID, "r2": NEAR, "r3": FAR}}
R2_MAX_RPS, OTHER_MAX_RPS, LOAD_RPS = 20, 400, 80  # r2: capacity 60, target 51 (0.85): 80 rps is over


def _tweak(network: dict, customers: dict) -> None:
    # probe rounds every second, answers within 1.5 s; a cycle a second; a moved network is held 3 s
    network["probing"] = {"interval": 1.0, "timeout": 1.5, "rate": 200, "probers": 2}
    network.setdefault("mapping", {}).update(
        assign_interval=1.0, hold=3.0, probe_ewma=0.5, probe_stale=6.0, ramp_steps=1, max_moves=10
    )
    for m in network["machines"]:
        if m["role"] == "edge":
            m["max_rps"] = R2_MAX_RPS if m["region"] == "r2" else OTHER_MAX_RPS


class Responders:
    """The devnet's two measured client networks (A = 127.N.50.0/24, B = 127.N.51.0/24):
    their "resolvers" are probe responders whose delays per probing region are files."""

    def __init__(self, dn: Devnet) -> None:
        self.dn = dn

    def set(self, name: str, delays: dict[str, float]) -> None:
        doc = {"default": FAR, "prefixes": {f"127.{self.dn.layout.net}.{r[1]}.0/24": d for r, d in delays.items()}}
        path = self.dn.dir / "probes" / f"delays-{'AB'.index(name)}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Devnet, Responders]]:
    dn = Devnet(tmp_path_factory.mktemp("measured") / "devnet", default_layout(next(_nets)), False, _tweak)
    responders = Responders(dn)
    for name in "AB":
        responders.set(name, DELAYS[name])
    try:
        dn.start(timeout=30)
        wait_for_full_referrals(dn)
        dn.supervise()
        yield dn, responders
    finally:
        dn.stop()
        subprocess.run(["nft", "delete", "table", "ip", TABLE], capture_output=True)


def answered_region(dn: Devnet, network: str) -> str | None:
    """The region whose edges an LLNS of r3 answers to a client of `network` (A or B)."""
    third = 50 if network == "A" else 51
    llns = next(m for m in dn.net.by_role("llns") if m.region == "r3")
    client = f"127.{dn.layout.net}.{third}.53"
    got = dig(llns.address, dn.net.ports.dns, f"a123.g.{dn.net.base_domain}", "A", "-b", client)
    regions = {m.address: m.region for m in dn.net.by_role("edge")}
    found = {regions.get(a) for a in got.addresses()}
    return found.pop() if len(found) == 1 else None


def metric(dn: Devnet, machine: str, name: str) -> float:
    status, body = dn.management(machine, "/metrics")
    assert status == 200
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def nft(*script: str) -> None:
    subprocess.run(["nft", "-f", "-"], input="\n".join(script), text=True, check=True)


def test_probes_send_each_network_to_its_nearest_region(lab: tuple[Devnet, Responders]) -> None:
    dn, _ = lab
    wait_for(lambda: answered_region(dn, "A") == "r1", 60, "A's clients to be answered from r1")
    wait_for(lambda: answered_region(dn, "B") == "r2", 60, "B's clients to be answered from r2")
    assert any(metric(dn, c.id, "akacdn_probe_reports_total") > 0 for c in dn.net.by_role("mapper"))


def test_operators_see_each_networks_route_and_paths(lab: tuple[Devnet, Responders]) -> None:
    dn, _ = lab
    wait_for(lambda: answered_region(dn, "A") == "r1", 60, "A's clients to be answered from r1")
    a = f"127.{dn.layout.net}.50.0/24"
    cmd = [sys.executable, "-m", "akacdn", "mapping", "--config", str(dn.config_path)]
    doc = json.loads(subprocess.run([*cmd, "--network", a, "--json"], capture_output=True, check=True).stdout)
    (route,) = doc["routes"]
    assert route["prefix"] == a and route["assigned"] == "r1" and route["regions"][0] == "r1"
    assert set(doc["paths"]) == {"r1", "r2", "r3"} and doc["paths"]["r1"]["rtt_ms"] < doc["paths"]["r3"]["rtt_ms"]
    assert {g["id"]: g["capacity"] for g in doc["regions"]}["r2"] == 3 * R2_MAX_RPS
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "client networks:" in text and a in text


def test_slow_probes_move_a_network_and_it_returns(lab: tuple[Devnet, Responders]) -> None:
    dn, responders = lab
    wait_for(lambda: answered_region(dn, "A") == "r1", 60, "A's clients to be answered from r1")
    try:
        responders.set("A", {**DELAYS["A"], "r1": SLOW})
        wait_for(lambda: answered_region(dn, "A") == "r2", 60, "A to move to r2 when r1's path is slow")
    finally:
        responders.set("A", DELAYS["A"])
    wait_for(lambda: answered_region(dn, "A") == "r1", 60, "A to come back to r1")


def test_lossy_probes_move_a_network_and_it_returns(lab: tuple[Devnet, Responders]) -> None:
    dn, _ = lab
    wait_for(lambda: answered_region(dn, "A") == "r1", 60, "A's clients to be answered from r1")
    r1 = ", ".join(m.address for m in dn.net.by_role("edge") if m.region == "r1")
    resolver = f"127.{dn.layout.net}.50.1"
    try:
        nft(
            f"add table ip {TABLE}",
            f"add chain ip {TABLE} out {{ type filter hook output priority 0 ; }}",
            f"add rule ip {TABLE} out ip saddr {{ {r1} }} ip daddr {resolver} udp dport {dn.net.ports.dns}"
            " numgen random mod 100 < 80 drop",
        )
        wait_for(lambda: answered_region(dn, "A") == "r2", 60, "A to move to r2 when r1's path loses 80%")
    finally:
        subprocess.run(["nft", "delete", "table", "ip", TABLE], capture_output=True)
    wait_for(lambda: answered_region(dn, "A") == "r1", 60, "A to come back to r1")


class Load:
    """Requests from B's addresses straight to r2's edges at about `rps` (keep-alive)."""

    def __init__(self, dn: Devnet, rps: int) -> None:
        self.dn, self.rps, self.stop = dn, rps, threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        edges = [m.address for m in self.dn.net.by_role("edge") if m.region == "r2"]
        source = (f"127.{self.dn.layout.net}.51.10", 0)
        conns = [http.client.HTTPConnection(a, self.dn.net.ports.http, timeout=5, source_address=source) for a in edges]
        start = time.monotonic()
        while not self.stop.is_set():
            conn = conns[self.sent % len(conns)]
            try:
                conn.request("GET", "/css/site.css", headers={"Host": DEMO_HOST})
                conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                conn.close()
            self.sent += 1
            ahead = start + self.sent / self.rps - time.monotonic()  # pacing, not synchronisation
            if ahead > 0:
                self.stop.wait(ahead)
        for c in conns:
            c.close()

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)


def test_overload_sheds_a_network_and_it_returns_when_the_load_stops(lab: tuple[Devnet, Responders]) -> None:
    dn, _ = lab
    wait_for(lambda: answered_region(dn, "B") == "r2", 60, "B's clients to be answered from r2")
    with Load(dn, LOAD_RPS):
        wait_for(lambda: answered_region(dn, "B") not in ("r2", None), 60, "B to be shed from the overloaded r2")
        assert answered_region(dn, "A") == "r1"  # a network of another region is left alone
    assert any(metric(dn, c.id, 'akacdn_mapping_moves_total{why="shed"}') > 0 for c in dn.net.by_role("mapper"))
    wait_for(lambda: answered_region(dn, "B") == "r2", 60, "B to come back to r2 once the load stopped")
