"""The edge as a cache: warm across restarts, damage dropped, misses coalesced."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys

import aiohttp

from akacdn.devnet.network import DEMO_HOST
from akacdn.devnet.supervisor import Devnet, http_get

from .conftest import curl, wait_for


def origin_count(dn: Devnet, path: str) -> int:
    lay = dn.layout
    _, body = http_get(f"http://{lay.origin}:{lay.http_port}/_origin/stats")
    return int(json.loads(body)["requests"].get(path, 0))


def fetch(dn: Devnet, edge: str, path: str) -> tuple[int, dict[str, str], bytes]:
    return curl(f"http://{edge}:{dn.layout.http_port}{path}", "-H", f"Host: {DEMO_HOST}")


def restart(dn: Devnet, machine: str) -> None:
    dn.kill(machine, signal.SIGTERM)
    dn.start_machine(machine)
    wait_for(lambda: dn.ready(machine), 20, f"{machine} to be ready again")


def test_objects_cached_before_a_restart_are_hits_after_it(devnet: Devnet) -> None:
    edge = devnet.layout.edge(1, 1)
    status, headers, body = fetch(devnet, edge, "/img/photo-1.png")
    assert status == 200 and headers["x-cache"] == "MISS"
    before = origin_count(devnet, "/img/photo-1.png")

    restart(devnet, "r1-e1")

    status, headers, again = fetch(devnet, edge, "/img/photo-1.png")
    assert status == 200 and headers["x-cache"] == "HIT" and again == body
    assert origin_count(devnet, "/img/photo-1.png") == before, "the origin was asked again"


def test_a_truncated_store_file_is_dropped_not_served(devnet: Devnet) -> None:
    edge = devnet.layout.edge(1, 2)
    status, _, body = fetch(devnet, edge, "/img/logo.png")
    assert status == 200
    store = devnet.net.state_path("r1-e2") / "cache"
    (victim,) = [p for p in store.glob("*/*") if not p.name.startswith(".")]
    victim.write_bytes(victim.read_bytes()[: len(body) // 2])
    before = origin_count(devnet, "/img/logo.png")

    restart(devnet, "r1-e2")

    status, headers, again = fetch(devnet, edge, "/img/logo.png")
    assert status == 200 and headers["x-cache"] == "MISS" and again == body
    assert origin_count(devnet, "/img/logo.png") == before + 1
    assert devnet.metric("r1-e2", "akacdn_edge_disk_dropped") == 1


def test_200_concurrent_misses_make_one_origin_request(devnet: Devnet) -> None:
    edge = devnet.layout.edge(2, 1)
    path = "/img/photo-3.png"
    _, _, expected = curl(f"http://{devnet.layout.origin}:{devnet.layout.http_port}{path}")
    before = origin_count(devnet, path)

    async def stampede() -> list[tuple[int, bytes]]:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as s:

            async def one() -> tuple[int, bytes]:
                url = f"http://{edge}:{devnet.layout.http_port}{path}"
                async with s.get(url, headers={"Host": DEMO_HOST}) as r:
                    return r.status, await r.read()

            return await asyncio.gather(*(one() for _ in range(200)))

    results = asyncio.run(stampede())
    assert [s for s, _ in results] == [200] * 200
    assert all(b == expected for _, b in results), "every client gets the full, identical body"
    assert origin_count(devnet, path) == before + 1


def purge(dn: Devnet, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "akacdn", "purge", "--config", str(dn.config_path), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def test_one_purge_reaches_every_edge(devnet: Devnet) -> None:
    edges = [devnet.layout.edge(1, 1), devnet.layout.edge(3, 2)]
    for edge in edges:
        for path in ("/img/photo-2.png", "/css/site.css"):
            fetch(devnet, edge, path)
            assert fetch(devnet, edge, path)[1]["x-cache"] == "HIT"

    done = purge(devnet, "--url", f"http://{DEMO_HOST}/img/photo-2.png", "--edge", "r1-e1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["removed_here"] == 1

    # the other edge hears it over the relays
    wait_for(lambda: devnet.metric("r3-e2", "akacdn_edge_purges_total", source="messaging") >= 1, 10, "r3-e2")
    for edge in edges:
        assert fetch(devnet, edge, "/img/photo-2.png")[1]["x-cache"] == "MISS"
        assert fetch(devnet, edge, "/css/site.css")[1]["x-cache"] == "HIT"  # not named: kept

    assert purge(devnet, "--customer", "demo").returncode == 0
    wait_for(lambda: devnet.metric("r3-e2", "akacdn_edge_purges_total", source="messaging") >= 2, 10, "again")
    assert fetch(devnet, edges[1], "/css/site.css")[1]["x-cache"] == "MISS"


def test_purge_api_refuses_without_the_token_and_bad_requests(devnet: Devnet) -> None:
    mgmt = f"http://{devnet.layout.edge(1, 1)}:{devnet.net.ports.management}/purge"
    body = b'{"kind": "customer", "values": ["demo"]}'
    status, _, _ = curl(mgmt, "-X", "POST", "--data-binary", body.decode(), "-H", "Authorization: Bearer nope")
    assert status == 403
    token = devnet.net.purge_token
    bad = curl(mgmt, "-X", "POST", "--data-binary", '{"kind": "customer", "values": ["ghost"]}',
               "-H", f"Authorization: Bearer {token}")  # fmt: skip
    assert bad[0] == 400 and b"ghost" in bad[2]
    assert devnet.metric("r1-e1", "akacdn_edge_purge_refused_total", reason="unauthorized") == 1
    assert devnet.metric("r1-e1", "akacdn_edge_purge_refused_total", reason="bad_request") == 1
    assert purge(devnet, "--serial", "999").returncode == 2


def test_akamaized_page_objects_are_served_through_arls(devnet: Devnet) -> None:
    lay = devnet.layout
    _, _, page = curl(f"http://{lay.origin}:{lay.http_port}/")
    cmd = [sys.executable, "-m", "akacdn", "akamaize", "--config", str(devnet.config_path), "--customer", "demo"]
    out = subprocess.run(cmd, input=page, capture_output=True, timeout=30, check=True).stdout
    arls = re.findall(rb'src="http://(a123\.g\.akacdn\.test)(/7/123/[^"]+)"', out)
    assert len(arls) == 4, out  # the logo and three photos
    edge = lay.edge(2, 2)
    for host, path in arls:
        origin_path = "/" + path.decode().split("/", 5)[5]
        _, _, expected = curl(f"http://{lay.origin}:{lay.http_port}{origin_path}")
        status, headers, body = curl(f"http://{edge}:{lay.http_port}{path.decode()}", "-H", f"Host: {host.decode()}")
        assert status == 200 and body == expected and headers["x-cache"] == "MISS"
        # the ARL's TTL (1d) overrides the origin's max-age=300
        again = curl(f"http://{edge}:{lay.http_port}{path.decode()}", "-H", f"Host: {host.decode()}")[1]
        assert again["x-cache"] == "HIT" and int(again["cache-status"].rsplit("ttl=", 1)[1]) > 300


def test_arls_naming_other_origins_or_malformed_are_refused(devnet: Devnet) -> None:
    lay = devnet.layout
    edge, host = lay.edge(1, 3), "Host: a123.g.akacdn.test"
    assert curl(f"http://{edge}:{lay.http_port}/7/123/1d/evil.example/x", "-H", host)[0] == 403
    assert curl(f"http://{edge}:{lay.http_port}/7/124/1d/www.demo.example/x", "-H", host)[0] == 403
    assert curl(f"http://{edge}:{lay.http_port}/7/123/zz/www.demo.example/x", "-H", host)[0] == 400
    assert devnet.metric("r1-e3", "akacdn_edge_refused_total", reason="arl_not_configured") == 2
    assert devnet.metric("r1-e3", "akacdn_edge_refused_total", reason="bad_arl") == 1


def test_mapping_center_hears_per_serial_traffic(devnet: Devnet) -> None:
    edge = devnet.layout.edge(3, 3)
    for _ in range(3):
        fetch(devnet, edge, "/css/site.css")

    def heard() -> bool:
        hits = devnet.metric("mc2", "akacdn_serial_requests_total", serial="123", outcome="hit")
        misses = devnet.metric("mc2", "akacdn_serial_requests_total", serial="123", outcome="miss")
        return hits >= 2 and misses >= 1

    wait_for(heard, 10, "the mapping center to count serial 123's requests")
    assert devnet.metric("mc2", "akacdn_serial_bytes_total", serial="123") > 0  # every center hears reports


def test_cache_on_second_request_keeps_one_hit_wonders_out(devnet: Devnet) -> None:
    customers = devnet.dir / "customers.toml"
    customers.write_text(customers.read_text() + "cache_on_second_request = true\n")
    devnet.signal("r1-e1", signal.SIGHUP)
    wait_for(lambda: devnet.metric("r1-e1", "akacdn_config_reloads_total", result="applied") >= 1, 10, "reload")
    edge, path = devnet.layout.edge(1, 1), "/img/photo-3.png"
    before = origin_count(devnet, path)
    first, second, third = (fetch(devnet, edge, path)[1] for _ in range(3))
    assert first["x-cache"] == "MISS" and "first-request" in first["cache-status"]
    assert second["x-cache"] == "MISS" and "stored" in second["cache-status"]
    assert third["x-cache"] == "HIT"
    assert origin_count(devnet, path) == before + 2


def test_a_purge_published_while_an_edge_is_down_is_applied_before_it_serves_again(devnet: Devnet) -> None:
    """The edge's disk tier survives its death; the purges it missed come from the mapping
    center's journal (HTTP) before it serves: the purged object is fetched again, the other
    is still a hit (so the test tells a caught-up edge from a wiped one)."""
    edge = devnet.layout.edge(1, 1)
    for path in ("/img/photo-3.png", "/css/site.css"):
        fetch(devnet, edge, path)
        assert fetch(devnet, edge, path)[1]["x-cache"] == "HIT"
    wait_for(lambda: devnet.metric("r1-e1", "akacdn_edge_disk_objects") >= 2, 10, "both objects on disk")
    devnet.kill("r1-e1")  # SIGKILL: no clean stop
    done = purge(devnet, "--url", f"http://{DEMO_HOST}/img/photo-3.png", "--edge", "r2-e1")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["journaled"], answer  # durable at a mapping center
    before = origin_count(devnet, "/img/photo-3.png")

    devnet.start_machine("r1-e1")
    # the first answer it gives at all: it listens only once it has read the journal
    status, headers, _ = wait_for(lambda: (got := fetch(devnet, edge, "/img/photo-3.png"))[0] and got, 30, "r1-e1")
    assert status == 200 and headers["x-cache"] == "MISS", headers
    assert origin_count(devnet, "/img/photo-3.png") == before + 1
    assert fetch(devnet, edge, "/css/site.css")[1]["x-cache"] == "HIT"  # not purged: still served from disk
    assert devnet.metric("r1-e1", "akacdn_edge_purges_total", source="journal") == 1
    assert devnet.metric("r1-e1", "akacdn_edge_purge_catchups_total", result="ok") >= 1


def test_a_purge_no_mapping_center_journaled_says_so(devnet: Devnet) -> None:
    for m in devnet.net.by_role("mapper"):
        devnet.kill(m.id)
    done = purge(devnet, "--url", f"http://{DEMO_HOST}/css/site.css", "--edge", "r1-e1")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["journaled"] == {} and "no mapping center journaled" in answer["warning"]
