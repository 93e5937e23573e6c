"""Measured, load-aware mapping in the Mininet lab: the edges of three regions probe the
two client networks' "resolvers", the mapping centers allocate, an LLNS answers (dig
from a client host); the lab's counterpart of tests/integration/test_measured_mapping.py.

Client network A = c1 (198.19.1.0/24), B = c2 (198.19.2.0/24); each one's probe target is
a probe responder (`akacdn responder`) on its client host, port 5300, answering each
region's probes after a delay chosen by the probing edge's source prefix (the region's
198.18.R.0/24: edges probe from their host address); this kernel has no netem. A is
nearest r1, B nearest r2 (their static regions too, so the lab starts as usual). A
client of each network asks the LLNS of r3, so the answer shows the map's decision,
not the LLNS's own region.

- Slow probes from r1 to A (the responder's control file), or lossy ones (nftables on
  r1's router, `drop_path`), move A's answers to r2; they come back once healed.
- Load from B's client host straight to r2's edges, over r2's target (capacity x 0.85),
  sheds B to another region; B comes back when the load stops.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .conftest import mnlab
from .test_lab import DEMO_HOST, poll

pytestmark = pytest.mark.root

# path delays (s) per probing region: far apart, so a 200 ms stall of a loaded machine
# cannot reorder them; "slow" is beyond every other region's; probes time out at 1.5 s
NEAR, MID, FAR, SLOW = 0.05, 0.4, 0.6, 0.9
A, B = "c1", "c2"
DELAYS = {A: {"r1": NEAR, "r2": MID, "r3": FAR}, B: {"r1": MID, "r2": NEAR, "r3": FAR}}
PROBE_PORT = 5300
CLIENT_HOST = 11  # topo.py: a client network's first host is .11 (the responder runs there)
R2_MAX_RPS, OTHER_MAX_RPS, LOAD_RPS = 20, 400, 80  # r2: capacity 60, target 51 (0.85): 80 rps is over
WAIT = 60.0  # deadline of every wait for the map to change (it takes a few seconds)


def responder_address(prefix: str) -> str:
    return str(ipaddress.ip_network(prefix).network_address + CLIENT_HOST)


def mapping_tweak(network: dict, customers: dict) -> None:
    """Probe rounds every second, answers within 1.5 s; an allocation cycle a second; a
    moved network is held 3 s; each client network probed at its responder; r2 small."""
    network["probing"] = {"interval": 1.0, "timeout": 1.5, "rate": 200, "probers": 2}
    network.setdefault("mapping", {}).update(
        assign_interval=1.0, hold=3.0, probe_ewma=0.5, probe_stale=6.0, ramp_steps=1, max_moves=10
    )
    for c in network["client_networks"]:  # their static `region` stays: the fallback without probes
        c["probes"] = [f"{responder_address(c['prefix'])}:{PROBE_PORT}"]
    for m in network["machines"]:
        if m["role"] == "edge":
            m["max_rps"] = R2_MAX_RPS if m["region"] == "r2" else OTHER_MAX_RPS


LAB_OPTIONS = {"tweak": mapping_tweak, "regions": 3, "timeout": 90}


class Responders:
    """The probe responders of A and B on their client hosts (lab processes `probes-<net>`,
    logs in the lab's logs/), with their delay per probing region in a control file."""

    def __init__(self, lab) -> None:
        self.lab = lab
        self.dir = lab.dir / "probes"
        self.dir.mkdir(exist_ok=True)

    def control(self, net: str) -> Path:
        return self.dir / f"delays-{net}.json"

    def set(self, net: str, delays: dict[str, float]) -> None:
        """Each region's delay to `net` (by the region's prefix: its edges' source); atomic."""
        doc = {"default": FAR, "prefixes": {self.lab.net_of(r).prefix: d for r, d in delays.items()}}
        tmp = self.control(net).with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.control(net))

    def start(self) -> None:
        for net in (A, B):
            host = self.lab.client_host(net)
            address = responder_address(self.lab.net_of(net).prefix)
            assert self.lab.topo.hostinfo[host].ip == address, (host, address)
            self.set(net, DELAYS[net])
            args = ["--listen", f"{address}:{PROBE_PORT}", "--control", str(self.control(net))]
            self.lab._spawn(f"probes-{net}", host, [sys.executable, "-m", "akacdn", "responder", *args])
            dig = f"dig +tries=1 +time=2 -p {PROBE_PORT} @{address} . NS"
            poll(f"the probe responder of {net} to answer", lambda h=host, d=dig: "NOERROR" in self.lab.sh(h, d), 15)

    def stop(self) -> None:
        for net in (A, B):
            if f"probes-{net}" in self.lab.procs:
                self.lab.kill(f"probes-{net}", signal.SIGTERM)


@pytest.fixture(scope="module")
def responders(lab) -> Iterator[Responders]:
    r = Responders(lab)
    try:
        r.start()
        yield r
    finally:
        r.stop()


def answered_region(lab, net: str) -> str | None:
    """The region whose edges the LLNS of r3 answers to a client host of `net`."""
    regions = {a: lab.region_of(e) for e, a in lab.services().items()}
    found = {regions.get(a) for a in lab.llns_answers(net, lab.machine_ids("llns", "r3")[0])}
    return found.pop() if len(found) == 1 else None


def wait_region(lab, net: str, want, why: str) -> None:
    """Until `net` is answered from region `want` (or, a callable, a region it accepts)."""
    ok = want if callable(want) else lambda got: got == want
    poll(why, lambda: (got := answered_region(lab, net)) is not None and ok(got), WAIT, 0.5)


def measured_route(lab, net: str) -> dict | None:
    """The mapping center's view of `net` (GET /v1/mapping?network=, the leader's): its route
    and measured paths, once every region's path to it is measured."""
    prefix = lab.net_of(net).prefix
    code, body = lab.management(lab.machine_ids("mapper")[0], f"/v1/mapping?network={prefix}")
    if code != 200:
        return None
    doc = json.loads(body)
    routes = [r for r in doc["routes"] if r["prefix"] == prefix]
    return doc if len(routes) == 1 and set(doc["paths"]) == set(lab.cfg.regions) else None


def test_probes_send_each_network_to_its_nearest_region(lab, responders: Responders) -> None:
    """The static regions are the nearest ones too, so the answers alone would not show
    the probes at work: the mapping center's measured paths rank the regions as the
    responders' delays do, and its route follows them."""
    for net, nearest in ((A, "r1"), (B, "r2")):
        ranked = sorted(DELAYS[net], key=DELAYS[net].get)

        def measured(net: str = net, ranked: list[str] = ranked, nearest: str = nearest) -> dict | None:
            """Every region's path measured, ranked as the delays are, and the route following
            them (the allocation runs once a cycle: a network placed while only some paths
            were measured moves to the nearest at the next)."""
            doc = measured_route(lab, net)
            if doc is None or sorted(doc["paths"], key=lambda g: doc["paths"][g]["rtt_ms"]) != ranked:
                return None
            (route,) = [r for r in doc["routes"] if r["prefix"] == lab.net_of(net).prefix]
            return doc if route["assigned"] == nearest and route["regions"][0] == nearest else None

        poll(f"{net}'s paths measured from every region, ranked {ranked}, and routed there", measured, WAIT, 0.5)
        wait_region(lab, net, nearest, f"{net}'s clients to be answered from {nearest}")
    assert any(lab.metric(mc, "akacdn_probe_reports_total") > 0 for mc in lab.machine_ids("mapper"))


def test_slow_probes_move_a_network_and_it_returns(lab, responders: Responders) -> None:
    wait_region(lab, A, "r1", "A's clients to be answered from r1")
    try:
        responders.set(A, {**DELAYS[A], "r1": SLOW})
        wait_region(lab, A, "r2", "A to move to r2 when r1's path is slow")
    finally:
        responders.set(A, DELAYS[A])
    wait_region(lab, A, "r1", "A to come back to r1")


def test_lossy_probes_move_a_network_and_it_returns(lab, responders: Responders) -> None:
    wait_region(lab, A, "r1", "A's clients to be answered from r1")
    try:
        # 80 % each way between r1 and A on r1's router (a probe's round trip: 4 %)
        mnlab.drop_path(lab, "r1", A, loss_percent=80)
        wait_region(lab, A, "r2", "A to move to r2 when r1's path loses 80% each way")
    finally:
        mnlab.heal_path(lab, "r1", A)
    wait_region(lab, A, "r1", "A to come back to r1")


LOAD_SCRIPT = """
import http.client, sys, threading, time
rps, host, edges = float(sys.argv[1]), sys.argv[2], sys.argv[3:]

def run(address, rate):  # one keep-alive connection per edge, paced to its share
    conn = http.client.HTTPConnection(address, 80, timeout=5)
    sent, start = 0, time.monotonic()
    while True:
        try:
            conn.request("GET", "/css/site.css", headers={"Host": host})
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            conn.close()
        sent += 1
        ahead = start + sent / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)

for a in edges:
    threading.Thread(target=run, args=(a, rps / len(edges))).start()
"""


@contextmanager
def load(lab, src: str, region: str, rps: int) -> Iterator[None]:
    """HTTP requests from host `src` straight to `region`'s edges at about `rps` (keep-alive)."""
    edges = list(lab.services(region).values())
    lab._spawn("load", src, [sys.executable, "-c", LOAD_SCRIPT, str(rps), DEMO_HOST, *edges])
    try:
        yield
    finally:
        lab.kill("load", signal.SIGTERM)


def test_overload_sheds_a_network_and_it_returns_when_the_load_stops(lab, responders: Responders) -> None:
    wait_region(lab, B, "r2", "B's clients to be answered from r2")
    with load(lab, lab.client_host(B), "r2", LOAD_RPS):
        wait_region(lab, B, lambda got: got != "r2", "B to be shed from the overloaded r2")
        # a network of another region is left alone (polled only for an answer at all)
        assert poll("an answer to A", lambda: answered_region(lab, A), 10, 0.5) == "r1"
    assert any(lab.metric(mc, "akacdn_mapping_moves_total", why="shed") > 0 for mc in lab.machine_ids("mapper"))
    wait_region(lab, B, "r2", "B to come back to r2 once the load stopped")
