"""The whole request path on one machine: unbound -> TLNS referral -> LLNS -> edge -> origin."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from akacdn.devnet.network import BASE_DOMAIN, DEMO_HOST
from akacdn.devnet.supervisor import Devnet, http_get

from .conftest import curl, dig, wait_for

NAME = f"a123.g.{BASE_DOMAIN}"


def replies(dn: Devnet, role: str, kind: str) -> float:
    return sum(dn.metric(m.id, "akacdn_dns_replies_total", kind=kind) for m in dn.net.by_role(role))


def edge_addresses(dn: Devnet) -> dict[str, str]:
    return {m.address: m.id for m in dn.net.by_role("edge")}


def origin_count(dn: Devnet, path: str) -> int:
    lay = dn.layout
    _, body = http_get(f"http://{lay.origin}:{lay.http_port}/_origin/stats")
    return int(json.loads(body)["requests"].get(path, 0))


def test_unbound_resolves_through_tlns_referral_and_llns(devnet: Devnet) -> None:
    lay = devnet.layout
    referrals, answers = replies(devnet, "tlns", "referral"), replies(devnet, "llns", "answer")

    d = dig(devnet.resolver, lay.dns_port, NAME)

    assert d.status == "NOERROR" and "ra" in d.flags
    addrs = d.addresses()
    edges = edge_addresses(devnet)
    assert len(set(addrs)) == 2 and set(addrs) <= set(edges), addrs
    regions = {devnet.net.machine(edges[a]).region for a in addrs}
    assert len(regions) == 1, f"answer spans regions {regions}"
    assert all(ttl <= 20 for _, ttl, rtype, _ in d.answer if rtype == "A")
    # unbound got there through a TLNS referral and an LLNS answer, not some shortcut
    assert replies(devnet, "tlns", "referral") > referrals
    assert replies(devnet, "llns", "answer") > answers


def test_customer_cname_resolves_to_two_edges(devnet: Devnet) -> None:
    d = dig(devnet.resolver, devnet.layout.dns_port, DEMO_HOST)
    assert d.status == "NOERROR"
    assert (f"{DEMO_HOST}.", "CNAME", f"{NAME}.") in [(n, t, v) for n, _, t, v in d.answer]
    assert len(set(d.addresses())) == 2 and set(d.addresses()) <= set(edge_addresses(devnet))


def test_edge_serves_origin_page_then_a_cache_hit(devnet: Devnet) -> None:
    lay = devnet.layout
    edge = dig(devnet.resolver, lay.dns_port, NAME).addresses()[0]
    _, _, page = curl(f"http://{lay.origin}:{lay.http_port}/")
    before = origin_count(devnet, "/")

    s1, h1, b1 = curl(f"http://{edge}:{lay.http_port}/", "-H", f"Host: {DEMO_HOST}")
    s2, h2, b2 = curl(f"http://{edge}:{lay.http_port}/", "-H", f"Host: {DEMO_HOST}")

    assert s1 == 200 and b1 == page and h1["x-cache"] == "MISS"
    assert s2 == 200 and b2 == page and h2["x-cache"] == "HIT"
    assert "age" in h2 and int(h2["age"]) >= 0
    assert h2["x-served-by"] == edge_addresses(devnet)[edge]
    assert "akacdn" in h2["via"] and h2["cache-status"].startswith("akacdn; hit")
    assert origin_count(devnet, "/") == before + 1, "the hit must not reach the origin"


def test_edge_refuses_unknown_host_without_fetching(devnet: Devnet) -> None:
    lay = devnet.layout
    edge = lay.edge(1, 1)
    before = origin_count(devnet, "/secret")
    status, _, body = curl(f"http://{edge}:{lay.http_port}/secret", "-H", "Host: evil.example")
    assert status == 421 and b"evil.example" in body
    assert origin_count(devnet, "/secret") == before
    assert devnet.metric("r1-e1", "akacdn_edge_refused_total", reason="unknown_host") >= 1


def test_dead_edge_leaves_the_answers_and_comes_back(devnet: Devnet) -> None:
    lay, net = devnet.layout, devnet.net
    edges = edge_addresses(devnet)
    llns = lay.llns(1)
    victim_addr = dig(llns, lay.dns_port, NAME).addresses()[0]
    victim = edges[victim_addr]

    devnet.kill(victim)
    t0 = time.monotonic()
    wait_for(lambda: victim_addr not in dig(llns, lay.dns_port, NAME).addresses(), 20, f"{victim} to leave")
    beats = (time.monotonic() - t0) / net.timing.heartbeat_interval
    print(f"{victim} left the LLNS answers after {beats:.1f} heartbeat intervals")

    live = set(edges) - {victim_addr}
    for m in net.by_role("llns"):
        for _ in range(3):
            addrs = dig(m.address, lay.dns_port, NAME).addresses()
            assert len(set(addrs)) == 2 and set(addrs) <= live, (m.id, addrs)
            for a in addrs:
                status, _, _ = curl(f"http://{a}:{lay.http_port}/img/logo.png", "-H", f"Host: {DEMO_HOST}")
                assert status == 200, a

    devnet.start_machine(victim)
    wait_for(lambda: victim_addr in dig(llns, lay.dns_port, NAME).addresses(), 20, f"{victim} to return")
    addrs = dig(llns, lay.dns_port, NAME).addresses()
    assert len(set(addrs)) == 2


def test_dns_answers_from_last_map_without_mapping_center(devnet: Devnet) -> None:
    lay = devnet.layout
    t1, llns = lay.tlns[0], lay.llns(1)
    referral = sorted(v for *_, v in dig(t1, lay.dns_port, NAME, "A", "+norec").additional)
    answer = sorted(dig(llns, lay.dns_port, NAME).addresses())
    assert len(referral) == 8 and len(answer) == 2

    term = devnet.metric("tlns1", "akacdn_map_version_term", map="top")
    for m in devnet.net.by_role("mapper"):  # every mapping center
        devnet.kill(m.id)
    # observe for several map intervals: the nameservers go on answering the same
    until = time.monotonic() + 3 * devnet.net.timing.dead_after
    while time.monotonic() < until:
        assert sorted(v for *_, v in dig(t1, lay.dns_port, NAME, "A", "+norec").additional) == referral
        assert sorted(dig(llns, lay.dns_port, NAME).addresses()) == answer

    # their own restart, with no mapping center: they start from the map on disk
    for machine in ("tlns1", "r1-llns"):
        devnet.kill(machine, signal.SIGTERM)
        devnet.start_machine(machine)
        wait_for(lambda machine=machine: devnet.ready(machine), 20, f"{machine} ready from its last known good map")
        _, events = devnet.management(machine, "/events")
        assert any(e["event"] == "map_accepted" and e["source"] == "disk" for e in json.loads(events))
    assert sorted(v for *_, v in dig(t1, lay.dns_port, NAME, "A", "+norec").additional) == referral
    assert sorted(dig(llns, lay.dns_port, NAME).addresses()) == answer
    assert dig(devnet.resolver, lay.dns_port, DEMO_HOST).status == "NOERROR"

    # the centers return; the leader publishes under a new term; the consumers take its maps
    for m in devnet.net.by_role("mapper"):
        devnet.start_machine(m.id)
    wait_for(lambda: devnet.metric("tlns1", "akacdn_map_version_term", map="top") > term, 20, "a newer top map")
    wait_for(lambda: devnet.metric("r1-llns", "akacdn_map_version_term", map="low") > term, 20, "a newer low map")


def test_devnet_command_starts_prints_and_stops_cleanly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from .conftest import _nets

    net = next(_nets)
    cmd = [sys.executable, "-m", "akacdn", "devnet", "--dir", str(tmp_path / "dn"), "--net", str(net)]
    # as from a terminal: Ctrl-C is not ignored (a test run started as a background job
    # ignores SIGINT, and a child inherits that)
    p = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: list[str] = []
    try:
        assert p.stdout is not None
        for line in p.stdout:
            lines.append(line)
            if "Ctrl-C stops every process" in line or len(lines) > 200:
                break
        text = "".join(lines)
        assert "akacdn devnet is up" in text, text
        digs = re.findall(r"^\s+(dig @\S+(?: -p \d+)? a123\.g\.\S+ \+norec)", text, re.M)
        assert digs, text
        out = subprocess.run(digs[1].split(), capture_output=True, text=True, timeout=10).stdout
        assert "status: NOERROR" in out and out.count("\tA\t") == 2, out
        p.send_signal(signal.SIGINT)
        try:
            code = p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            rest = p.stdout.read()
            alive = subprocess.run(["pgrep", "-fa", str(tmp_path / "dn")], capture_output=True, text=True).stdout
            pytest.fail(f"devnet still running 30 s after Ctrl-C; it printed:\n{rest[-3000:]}\nalive:\n{alive}")
        assert code == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "dn")], capture_output=True, text=True).stdout
    assert not left.strip(), f"processes left behind: {left}"
    assert os.path.exists(tmp_path / "dn" / "state" / "tlns1" / "lkg-top.map")
