"""The paper's world in Mininet, with every akacdn daemon in its own host, checked with
the real tools from the hosts: dig through unbound, curl through the edges, nftables on
the routers, SIGKILL and pulled cables (see deploy/mininet/lab.py)."""

from __future__ import annotations

import re
import secrets
import time

import pytest

from .conftest import mnlab

pytestmark = pytest.mark.root

DEMO_HOST = "www.demo.example"


def poll(what: str, check, timeout: float, interval: float = 0.2):
    """Call ``check`` until it returns something truthy; fail with the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"{what}: still {last!r} after {timeout}s")


def curl_code(lab, src: str, address: str, timeout: float = 2.0) -> int:
    return lab.http_code(src, f"http://{address}/?lab=probe", DEMO_HOST, timeout=timeout)


def loss(lab, src: str, address: str, count: int = 200) -> float:
    out = lab.sh(src, f"ping -n -q -c {count} -i 0.005 -W 1 {address}")
    m = re.search(r"([\d.]+)% packet loss", out)
    assert m, out
    return float(m.group(1))


def test_clients_resolve_to_edges_of_their_region(lab) -> None:
    """A client host asks the resolver host (unbound: the customer's CNAME, the TLNS
    referral, the LLNS answer, with the client's /24 as ECS) and gets two edge service
    addresses of the region its client network is mapped to."""
    regions = {}
    for c in lab.client_nets():
        region = lab.region_for_client(c)
        out = lab.sh(lab.client_host(c), f"dig +tries=1 +time=2 @{lab.cfg.resolver} {DEMO_HOST} A")
        assert "status: NOERROR" in out, out
        assert re.search(rf"^{re.escape(DEMO_HOST)}\.\s+\d+\s+IN\s+CNAME\s+a123\.g\.akacdn\.test\.$", out, re.M), out
        addrs = re.findall(r"^a123\.g\.akacdn\.test\.\s+\d+\s+IN\s+A\s+([\d.]+)$", out, re.M)
        assert len(addrs) == 2, out
        assert set(addrs) <= set(lab.services(region).values()), (c, region, addrs)
        regions[c] = region
    assert len(set(regions.values())) == len(regions), f"client nets should map to different regions: {regions}"


def test_edge_serves_and_origin_sees_one_request(lab) -> None:
    c = lab.client_nets()[0]
    src = lab.client_host(c)
    address = lab.resolve(c)[0]
    url = f"http://{DEMO_HOST}/?t={secrets.token_hex(6)}"
    resolve = f"--resolve {DEMO_HOST}:80:{address}"
    code, headers, body = lab.http(src, url, extra=resolve)
    assert code == 200, (code, headers, body[:300])
    assert headers.get("x-served-by") == lab.edge_by_service(address), headers
    assert headers.get("x-served-by") in lab.machine_ids("edge", lab.region_for_client(c))
    assert "Hello from the demo origin" in body
    path = url.removeprefix(f"http://{DEMO_HOST}")
    assert lab.origin_stats()["requests"].get(path) == 1
    code, headers, _ = lab.http(src, url, extra=resolve)
    assert code == 200 and headers.get("x-cache") == "HIT", headers
    assert lab.origin_stats()["requests"].get(path) == 1, "the second request came from the cache"


@pytest.mark.parametrize("how", ["kill", "link"])
def test_failed_edge_leaves_the_llns_answers(lab, how: str) -> None:
    """An edge that dies (SIGKILL) or loses its cable stops heartbeating; the mapping
    centers drop it and every LLNS answers the two live edges that carry the serial."""
    c = lab.client_nets()[0]
    region = lab.region_for_client(c)
    before = lab.llns_answers(c, lab.machine_ids("llns", region)[0])
    victim = lab.edge_by_service(before[0])
    dead = lab.cfg.service[victim]
    live = set(lab.services(region).values()) - {dead}
    fault = mnlab.fail_machine(lab, victim, how)
    assert fault in lab.faults and fault.machines == (victim,)

    def dropped():
        got = {ns: lab.llns_answers(c, ns) for ns in lab.machine_ids("llns")}
        return got if all(len(a) == 2 and set(a) <= live for a in got.values()) else None

    poll(f"LLNS answers without {victim} ({dead})", dropped, timeout=15)
    if how == "link":
        assert curl_code(lab, lab.client_host(c), dead, timeout=1) == 0
    mnlab.restore_machine(lab, victim, timeout=20)
    assert not lab.faults
    poll("all edges answer HTTP again", lab.edges_answer_http, timeout=10)


def test_drop_path_partitions_a_client_net_from_a_region(lab) -> None:
    c1, c2 = lab.client_nets()[:2]
    region, other = lab.region_for_client(c1), lab.region_for_client(c2)
    target = next(iter(lab.services(region).values()))
    elsewhere = next(iter(lab.services(other).values()))
    src1, src2 = lab.client_host(c1), lab.client_host(c2)
    assert curl_code(lab, src1, target) == 200

    fault = mnlab.drop_path(lab, c1, region)
    assert fault.kind == "path" and fault in lab.faults
    assert curl_code(lab, src1, target, timeout=1.5) == 0, "partitioned"
    assert curl_code(lab, src2, target) == 200, "other client nets still reach the region"
    assert curl_code(lab, src1, elsewhere) == 200, "the client net still reaches other regions"

    mnlab.heal_path(lab, c1, region)
    assert not lab.faults
    assert curl_code(lab, src1, target) == 200, "healed"


def test_partial_loss_with_numgen(lab) -> None:
    """30 % loss each way: a ping round trip survives with 0.7^2 = 49 %."""
    c = lab.client_nets()[0]
    region = lab.region_for_client(c)
    host = lab.topo.hostinfo[lab.machine_ids("edge", region)[0]].ip
    mnlab.drop_path(lab, c, region, loss_percent=30)
    measured = loss(lab, lab.client_host(c), host)
    assert 30 <= measured <= 72, f"expected ~51% round-trip loss, measured {measured}%"
    mnlab.heal_path(lab, c, region)
    assert loss(lab, lab.client_host(c), host, count=50) == 0.0


@pytest.mark.parametrize("how", ["kill", "link"])
def test_failed_region_falls_back_to_the_next(lab, how: str) -> None:
    """The paper's region failure: every daemon of the client net's region dies (or
    the region's uplink is cut); the surviving LLNS answers that client net from the
    fallback region; after the restore it is answered from its own region again."""
    c = lab.client_nets()[0]
    region = lab.region_for_client(c)
    other = next(r for r in lab.cfg.regions if r != region)
    survivor = lab.machine_ids("llns", other)[0]
    faults = mnlab.fail_region(lab, region, how)
    members = set(lab.machine_ids(region=region))
    if how == "kill":
        assert {f.target for f in faults} == members
    else:
        assert [(f.kind, f.target, set(f.machines)) for f in faults] == [("uplink", region, members)]
        assert curl_code(lab, lab.client_host(c), lab.cfg.service[lab.machine_ids("edge", region)[0]], 1) == 0
    fallback = set(lab.services(other).values())
    poll(
        f"{survivor} answers {c} from {other}",
        lambda: (a := lab.llns_answers(c, survivor)) and len(a) == 2 and set(a) <= fallback,
        timeout=15,
    )
    mnlab.restore_region(lab, region, timeout=30)
    own = set(lab.services(region).values())
    poll(
        f"{survivor} answers {c} from {region} again",
        lambda: (a := lab.llns_answers(c, survivor)) and set(a) <= own,
        timeout=15,
    )
