"""SureRoute and tiered distribution on the devnet (real edges, real origin, nftables).

- The "peering" between region r1 and the origin is cut with an nftables rule dropping
  what r1's edges send to the origin (they fetch from their own addresses, as machines
  do): misses through r1 keep succeeding through an intermediate region (its edge's Via
  in the answer), and go direct again once the rule is gone.
- Tunnel requests without a valid grant, with a forged one, or replayed are refused.
- With a parent region (r3), the children's misses for one object make one origin request.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from akacdn.devnet.network import DEMO_HOST
from akacdn.devnet.supervisor import Devnet, http_get
from akacdn.edge.tunnel import HEADER_NAME, TunnelKeys, issue

from .conftest import curl, supervised_devnet, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="nftables needs root (CI and this machine are root)")

TIERED_HOST = "www.tiered.example"
TABLE = f"akacdn_sureroute_{os.getpid()}"


def sureroute_tweak(parent_region: str) -> Callable[[dict, dict], None]:
    """The config change of the SureRoute tests (devnet and lab): SureRoute for the demo
    customer, and a `tiered` customer with `parent_region`."""

    def tweak(network: dict, customers: dict) -> None:
        # timings a 200 ms stall cannot trip; short enough to see a failover and a return
        network["sureroute"] = {
            "interval": 3.0,
            "after_failure": 1.0,
            "retry_failed": 2.0,
            "race_timeout": 5.0,
            "connect_timeout": 1.5,
            "head_timeout": 3.0,
        }
        demo = customers["customers"][0]
        demo.update(sureroute=True, sureroute_test_object="/css/site.css")
        tiered = {"name": "tiered", "serial": 321, "hostnames": [TIERED_HOST], "origin": demo["origin"]}
        customers["customers"].append({**tiered, "parent_regions": [parent_region]})

    return tweak


@pytest.fixture(scope="module")
def dn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    with supervised_devnet(tmp_path_factory.mktemp("sureroute") / "devnet", sureroute_tweak("r3")) as d:
        yield d


def edge_get(dn: Devnet, machine: str, path: str, host: str = DEMO_HOST) -> tuple[int, dict[str, str], bytes]:
    """GET through one edge with curl: (status, headers with repeated fields joined by ", ", body)."""
    m = dn.net.machine(machine)
    url = f"http://{m.address}:{dn.net.ports.http}{path}"
    p = subprocess.run(["curl", "-s", "-D", "-", "--max-time", "15", "-H", f"Host: {host}", url], capture_output=True)
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/") else 0
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        k = k.strip().lower()
        headers[k] = f"{headers[k]}, {v.strip()}" if k in headers else v.strip()
    return status, headers, body


def origin_count(dn: Devnet, path_qs: str) -> int:
    status, body = http_get(f"http://{dn.layout.origin}:{dn.net.ports.http}/_origin/stats")
    assert status == 200
    return json.loads(body)["requests"].get(path_qs, 0)


def events(dn: Devnet, machine: str, name: str) -> list[dict]:
    return [e for e in json.loads(dn.management(machine, "/events")[1]) if e["event"] == name]


def nft(*script: str) -> None:
    subprocess.run(["nft", "-f", "-"], input="\n".join(script), text=True, check=True)


def edges(dn: Devnet, region: str) -> list[str]:
    return [m.id for m in dn.net.by_role("edge") if m.region == region]


def detoured(headers: dict[str, str], region: str) -> bool:
    """The answer came through an edge of another region (its Via is in the chain)."""
    via = headers.get("via", "")
    return any(f" {r}-e" in via for r in ("r1", "r2", "r3") if r != region)


def knows_every_region(dn: Devnet, machine: str) -> bool:
    """The edge has a low-level map with the other regions' edges: its SureRoute
    candidates (direct, via r2, via r3) are the sign, and its parents come from that map."""
    status, body = dn.management(machine, "/upstreams")
    return status == 200 and len(json.loads(body)["routes"].get("demo", {}).get("paths", {})) >= 3


def test_a_cut_peering_is_routed_around_and_the_route_returns_when_it_heals(dn: Devnet) -> None:
    child = edges(dn, "r1")[0]
    wait_for(lambda: knows_every_region(dn, child), 30, f"{child} to know every region")
    n = iter(range(1000))
    status, headers, _ = wait_for(lambda: ok(edge_get(dn, child, f"/css/site.css?before={next(n)}")), 30, "a miss")
    assert not detoured(headers, "r1"), headers
    r1 = ", ".join(dn.net.machine(e).address for e in edges(dn, "r1"))
    origin = dn.layout.origin
    nft(
        f"add table ip {TABLE}",
        f"add chain ip {TABLE} out {{ type filter hook output priority 0 ; }}",
        f"add rule ip {TABLE} out ip saddr {{ {r1} }} ip daddr {origin} tcp dport {dn.net.ports.http} drop",
    )
    try:
        got = []
        for i in range(6):  # the first may wait out the head timeout, then moves on at once
            status, headers, body = edge_get(dn, child, f"/css/site.css?cut={i}")
            got.append((status, detoured(headers, "r1")))
        assert all(s == 200 for s, _ in got), got
        assert all(d for _, d in got), got  # every one through an intermediate region
        assert events(dn, child, "sureroute_failover"), "the failover is in /events"
        assert dn.metric(child, "akacdn_edge_upstream_attempts_total", kind="direct", outcome="failed") >= 1
    finally:
        subprocess.run(["nft", "delete", "table", "ip", TABLE], check=False)

    def direct_again() -> bool:
        status, headers, _ = edge_get(dn, child, f"/css/site.css?healed={time.monotonic_ns()}")
        return status == 200 and not detoured(headers, "r1")

    wait_for(direct_again, 30, "the route back to direct once the peering healed")
    back = events(dn, child, "sureroute_route") + events(dn, child, "sureroute_race")
    assert any(e.get("primary") == "direct" for e in back), back
    status, body = dn.management(child, "/upstreams")  # what an operator sees
    assert status == 200 and json.loads(body)["routes"]["demo"]["primary"] == "direct"


def ok(r: tuple[int, dict[str, str], bytes]) -> tuple[int, dict[str, str], bytes] | None:
    return r if r[0] == 200 else None


def test_tunnel_requests_need_a_valid_fresh_grant(dn: Devnet) -> None:
    target = dn.net.machine(edges(dn, "r2")[0])
    url = f"http://{target.address}:{dn.net.ports.http}/css/site.css?tunnel=1"
    refused = dn.metric(target.id, "akacdn_edge_tunnel_refused_total")
    before = origin_count(dn, "/css/site.css?tunnel=1")
    status, headers, _ = curl(url, "-H", f"Host: {DEMO_HOST}", "-H", f"{HEADER_NAME}: not-a-grant")
    assert status == 403 and "refused" in headers.get("x-akacdn-tunnel-error", "")
    keys = TunnelKeys(dn.net.message_keys, dn.net.message_key_id)
    forged = TunnelKeys({dn.net.message_key_id: os.urandom(32)}, dn.net.message_key_id)

    def grant(k: TunnelKeys, target_path: str = "/css/site.css?tunnel=1") -> str:
        g = issue(
            customer="demo",
            method="GET",
            target=target_path,
            sender="r1-e1",
            hops=0,
            purpose="sureroute",
            now=time.time(),
            nonce=os.urandom(16),
        )
        return k.seal(g)

    status, _, _ = curl(url, "-H", f"Host: {DEMO_HOST}", "-H", f"{HEADER_NAME}: {grant(forged)}")
    assert status == 403  # sealed with another key
    status, _, _ = curl(url, "-H", f"Host: {DEMO_HOST}", "-H", f"{HEADER_NAME}: {grant(keys, '/other')}")
    assert status == 403  # bound to another target
    good = grant(keys)
    status, headers, _ = curl(url, "-H", f"Host: {DEMO_HOST}", "-H", f"{HEADER_NAME}: {good}")
    assert status == 200 and 'detail="sureroute"' in headers.get("cache-status", "")
    status, headers, _ = curl(url, "-H", f"Host: {DEMO_HOST}", "-H", f"{HEADER_NAME}: {good}")
    assert status == 403 and "replayed" in headers.get("x-akacdn-tunnel-error", "")
    assert origin_count(dn, "/css/site.css?tunnel=1") == before + 1  # only the good grant reached it
    assert dn.metric(target.id, "akacdn_edge_tunnel_refused_total") >= refused + 4


def test_a_parent_region_makes_one_origin_request_for_all_children(dn: Devnet) -> None:
    path = f"/img/photo-1.png?tier={time.monotonic_ns()}"
    children = edges(dn, "r1") + edges(dn, "r2")
    for child in children:
        wait_for(lambda c=child: knows_every_region(dn, c), 30, f"{child} to know every region")
    bodies = set()
    for child in children:
        status, headers, body = wait_for(lambda c=child: ok(edge_get(dn, c, path, TIERED_HOST)), 20, "a tiered answer")
        bodies.add(body)
        assert any(f" {p} " in headers.get("via", "") for p in edges(dn, "r3")), headers  # through a parent
    assert len(bodies) == 1
    assert origin_count(dn, path) == 1
    # the centers add up the edges' reports: 6 client requests, 1 origin request (the parent's)
    leader = wait_for(dn.leader, 15, "a leading center")
    offload = lambda: dn.metric(leader, "akacdn_serial_origin_offload", serial="321")  # noqa: E731
    wait_for(lambda: abs(offload() - 5 / 6) < 1e-3, 15, "the tiered customer's offload reported")
    for p in edges(dn, "r3"):  # an edge of the parent region goes to the origin itself: nothing more
        status, headers, _ = edge_get(dn, p, path, TIERED_HOST)
        assert status == 200
    assert origin_count(dn, path) <= 1 + len(edges(dn, "r3"))
