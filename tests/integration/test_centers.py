"""Several mapping centers on a devnet: the leader dies and the other takes over under a
newer term; operators suspend and resume machines and regions (also across a change of
leader) with `akacdn suspend/resume/status`; a region whose edges all die leaves the
referrals; an older map, replayed, is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from akacdn.devnet.network import BASE_DOMAIN
from akacdn.devnet.supervisor import Devnet, http_get
from akacdn.messaging.envelope import DATA, Datagram, Keyring

from .conftest import dig, wait_for
from .test_hostile_input import send_udp

NAME = f"a123.g.{BASE_DOMAIN}"


def akacdn(dn: Devnet, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "akacdn", *args, "--config", str(dn.config_path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def terms(dn: Devnet) -> set[float]:
    """The term of the map every nameserver answers from."""
    out = {dn.metric(m.id, "akacdn_map_version_term", map="top") for m in dn.net.by_role("tlns")}
    return out | {dn.metric(m.id, "akacdn_map_version_term", map="low") for m in dn.net.by_role("llns")}


def answers(dn: Devnet) -> set[str]:
    """Every address the LLNSes answer for the demo serial, each asked a few times."""
    out: set[str] = set()
    for m in dn.net.by_role("llns"):
        for _ in range(3):
            out |= set(dig(m.address, dn.layout.dns_port, NAME, "A", "+norec").addresses())
    return out


def referred(dn: Devnet) -> set[str]:
    """The LLNS addresses the TLNSes refer to."""
    return {a for t in dn.layout.tlns for *_, a in dig(t, dn.layout.dns_port, NAME, "A", "+norec").additional}


def test_the_leader_dies_and_the_other_center_publishes_under_a_newer_term(devnet: Devnet) -> None:
    old = devnet.leader()
    assert old is not None
    term = devnet.metric(old, "akacdn_center_term")
    assert terms(devnet) == {term}
    devnet.kill(old)
    other = next(m.id for m in devnet.net.by_role("mapper") if m.id != old)
    wait_for(lambda: devnet.leader() == other, 20, f"{other} to lead")
    new = devnet.metric(other, "akacdn_center_term")
    assert new > term
    wait_for(lambda: terms(devnet) == {new}, 20, "every nameserver to take the new leader's maps")
    assert dig(devnet.resolver, devnet.layout.dns_port, "www.demo.example").status == "NOERROR"
    # the old leader comes back: it follows (its term is old), it never publishes over the new one
    devnet.start_machine(old)
    wait_for(lambda: devnet.ready(old), 20, f"{old} ready")
    time.sleep(3 * devnet.net.election.lease)  # (a window in which it must not take over)
    assert devnet.leader() == other and devnet.metric(old, "akacdn_center_leader") == 0
    assert terms(devnet) == {new}


def test_operators_suspend_and_resume_a_machine_and_a_region_across_a_change_of_leader(devnet: Devnet) -> None:
    lay = devnet.layout
    victim = devnet.net.machine("r1-e1")
    assert victim.address in answers(devnet)
    done = akacdn(devnet, "suspend", "machine", "r1-e1", "--reason", "disk replacement")
    assert done.returncode == 0 and "suspended" in done.stdout, done.stderr
    wait_for(lambda: victim.address not in answers(devnet), 20, "r1-e1 to leave every answer")
    # it keeps running and heartbeating: only the maps leave it out
    assert devnet.ready("r1-e1")
    status = json.loads(akacdn(devnet, "status", "--json").stdout)
    row = next(m for m in status["machines"] if m["id"] == "r1-e1")
    assert row["state"] == "suspended" and "disk replacement" in row["reason"]
    text = akacdn(devnet, "status").stdout
    assert "leader:" in text and "r1-e1" in text and "disk replacement" in text

    # a region: its LLNS leaves the referrals, its edges every answer
    r2_llns = devnet.net.machine("r2-llns").address
    assert akacdn(devnet, "suspend", "region", "r2", "--reason", "maintenance").returncode == 0
    r2 = {m.address for m in devnet.net.by_role("edge") if m.region == "r2"}
    wait_for(lambda: r2_llns not in referred(devnet) and not (answers(devnet) & r2), 20, "r2 out of the maps")

    # the leader changes: the suspensions stay
    old = devnet.leader()
    assert old is not None
    devnet.kill(old)
    other = next(m.id for m in devnet.net.by_role("mapper") if m.id != old)
    wait_for(lambda: devnet.leader() == other, 20, f"{other} to lead")
    wait_for(lambda: terms(devnet) == {devnet.metric(other, "akacdn_center_term")}, 20, "the new leader's maps")
    assert victim.address not in answers(devnet) and not (answers(devnet) & r2)

    assert akacdn(devnet, "resume", "machine", "r1-e1").returncode == 0
    assert akacdn(devnet, "resume", "region", "r2").returncode == 0
    wait_for(lambda: victim.address in answers(devnet), 20, "r1-e1 back in the answers")
    wait_for(lambda: r2_llns in referred(devnet), 20, "r2's LLNS back in the referrals")
    assert dig(lay.tlns[0], lay.dns_port, NAME, "A", "+norec").status == "NOERROR"


def test_operator_orders_are_checked(devnet: Devnet) -> None:
    bad = akacdn(devnet, "suspend", "machine", "no-such-machine", "--reason", "x")
    assert bad.returncode == 2 and "no machine 'no-such-machine'" in bad.stderr
    leader = devnet.leader()
    assert leader is not None
    m = devnet.net.machine(leader)
    url = f"http://{m.address}:{devnet.net.ports.management}/v1/operator/suspend"
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=b'{"kind":"machine","id":"r1-e1","reason":"x"}', method="POST")
    try:
        urllib.request.urlopen(req, timeout=5)  # noqa: S310
        raise AssertionError("an order without the token was taken")
    except urllib.error.HTTPError as e:
        assert e.code == 403
    status, body = http_get(f"http://{m.address}:{devnet.net.ports.management}/v1/status")
    assert status == 200 and json.loads(body)["suspensions"] == []


def test_a_region_whose_edges_all_die_leaves_the_referrals(devnet: Devnet) -> None:
    r3_llns = devnet.net.machine("r3-llns").address
    assert r3_llns in referred(devnet)
    for m in devnet.net.by_role("edge"):
        if m.region == "r3":
            devnet.kill(m.id)
    wait_for(lambda: r3_llns not in referred(devnet), 20, "r3's LLNS to leave the referrals")
    assert dig(devnet.layout.tlns[0], devnet.layout.dns_port, NAME, "A", "+norec").status == "NOERROR"
    for m in devnet.net.by_role("edge"):
        if m.region == "r3":
            devnet.start_machine(m.id)
    wait_for(lambda: r3_llns in referred(devnet), 30, "r3's LLNS back in the referrals")


def test_an_older_map_replayed_is_refused(devnet: Devnet) -> None:
    leader = devnet.leader()
    assert leader is not None
    m = devnet.net.machine(leader)
    status, old = http_get(f"http://{m.address}:{devnet.net.ports.management}/v1/{leader}/maps/low")
    assert status == 200
    devnet.kill("r2-e3")  # the low map changes: a newer version everywhere
    wait_for(lambda: devnet.net.machine("r2-e3").address not in answers(devnet), 20, "the newer map")
    refused = devnet.metric("r1-llns", "akacdn_maps_refused_total", reason="older")
    ring = Keyring(devnet.net.message_keys, devnet.net.message_key_id)
    d = Datagram(DATA, leader, "map.low", time.time_ns(), 1, 0, 1, len(old), time.time(), old)
    for relay in devnet.net.by_role("relay"):  # sent as the leader would: a valid envelope, an old map
        send_udp(relay.address, devnet.net.ports.messaging, ring.seal(d), m.address)
    wait_for(lambda: devnet.metric("r1-llns", "akacdn_maps_refused_total", reason="older") > refused, 10, "refused")
    assert devnet.net.machine("r2-e3").address not in answers(devnet)  # still the newer map


def _status(dn: Devnet) -> dict:
    done = akacdn(dn, "status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _state(dn: Devnet, machine: str) -> str:
    return next(m["state"] for m in _status(dn)["machines"] if m["id"] == machine)


def test_a_big_drop_of_capacity_is_held_until_it_lasts(devnet: Devnet) -> None:
    """6 of the 9 edges die at once: the guard holds the map (alarm) for drop_confirm,
    the nameservers answer from the last map meanwhile, then the drop is published."""
    dead = [m for m in devnet.net.by_role("edge") if m.region in ("r1", "r2")]
    for m in dead:
        devnet.kill(m.id)
    wait_for(lambda: _status(devnet)["held"].get("low"), 15, "the guard to hold the low map")
    leader = devnet.leader()
    assert leader is not None and devnet.metric(leader, "akacdn_map_held", map="low") == 1
    r3 = {m.address for m in devnet.net.by_role("edge") if m.region == "r3"}
    wait_for(lambda: answers(devnet) and answers(devnet) <= r3, 30, "the drop published once it lasted")
    centers = [m.id for m in devnet.net.by_role("mapper")]
    # whoever leads by now (a loaded machine may move the lead), no center still holds it
    wait_for(
        lambda: all(devnet.metric(c, "akacdn_map_held", map="low") == 0 for c in centers), 10, "held gauges to clear"
    )
    events = json.loads(devnet.management(leader, "/events")[1])
    assert any(e["event"] == "map_held" for e in events) and any(e["event"] == "map_released" for e in events)


def test_a_flapping_edge_is_damped_and_status_says_so(devnet: Devnet) -> None:
    victim = "r1-e2"
    for _ in range(3):  # three failures in a row: above the suppress threshold
        devnet.kill(victim)
        wait_for(lambda: _state(devnet, victim) == "down", 15, f"{victim} seen down")
        devnet.start_machine(victim)
        wait_for(lambda: devnet.ready(victim), 20, f"{victim} ready")
    wait_for(lambda: _state(devnet, victim) == "damped", 15, f"{victim} damped while it runs")
    row = next(m for m in _status(devnet)["machines"] if m["id"] == victim)
    assert "flapping" in row["reason"]
    assert devnet.net.machine(victim).address not in answers(devnet)
