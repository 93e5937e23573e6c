"""The lab with region agents (``akacdn agent`` next to every edge, holding and moving
the service addresses), two LLNS per region: a dead edge machine's or nameserver's
service address is answered by a buddy in its region, and handed back when the machine
returns."""

from __future__ import annotations

import time

import pytest

from .conftest import mnlab

pytestmark = pytest.mark.root

LAB_OPTIONS = {"agents": True, "llns_per_region": 2}
DEMO_HOST = "www.demo.example"


def served_by(lab, src: str, address: str) -> str | None:
    code, headers, _ = lab.http(src, f"http://{address}/?lab=agent", DEMO_HOST, timeout=0.5)
    return headers.get("x-served-by") if code == 200 else None


def test_buddy_takes_over_a_dead_edges_address(lab) -> None:
    c = lab.client_nets()[0]
    src = lab.client_host(c)
    region = lab.region_for_client(c)
    victim = lab.machine_ids("edge", region)[0]
    address = lab.cfg.service[victim]
    buddies = set(lab.machine_ids("edge", region)) - {victim}
    assert served_by(lab, src, address) == victim

    t0 = time.monotonic()
    fault = mnlab.fail_machine(lab, victim, "kill")
    assert f"{victim}-agent" in fault.detail, "the machine's agent dies with it"
    deadline = t0 + 10
    while (by := served_by(lab, src, address)) not in buddies:
        assert time.monotonic() < deadline, f"{address} not taken over (served by {by})"
        time.sleep(0.05)
    live = {lab.cfg.service[b] for b in buddies}
    deadline = time.monotonic() + 15
    while not set(answer := lab.llns_answers(c, lab.machine_ids("llns", region)[0])) <= live or len(answer) != 2:
        assert time.monotonic() < deadline, f"LLNS still answers {answer}"
        time.sleep(0.2)

    mnlab.restore_machine(lab, victim, timeout=30)
    deadline = time.monotonic() + 15
    while (by := served_by(lab, src, address)) != victim:
        assert time.monotonic() < deadline, f"{address} not handed back (served by {by})"
        time.sleep(0.1)


def test_buddy_answers_dns_on_a_dead_nameservers_address(lab) -> None:
    """Two LLNS per region: kill one; a client's queries to its address are answered by
    the other (``hostname.bind`` names it) with the region's edges; restore: home again."""
    c = lab.client_nets()[0]
    src = lab.client_host(c)
    region = lab.region_for_client(c)
    victim, buddy = lab.machine_ids("llns", region)
    address = lab.cfg.service[victim]
    assert address == lab.network.machine(victim).address != lab.network.machine(victim).host_address

    def who() -> str:
        out = lab.host(src).cmd(f"dig +short +tries=1 +time=1 @{address} hostname.bind CH TXT")
        return out.strip().strip('"')

    deadline = time.monotonic() + 10
    while (by := who()) != victim:  # a single UDP query may be lost: ask again
        assert time.monotonic() < deadline, f"{address} answered by {by!r}, not {victim}"
        time.sleep(0.1)
    mnlab.fail_machine(lab, victim, "kill")
    deadline = time.monotonic() + 10
    while (by := who()) != buddy:
        assert time.monotonic() < deadline, f"{address} not taken over (answered by {by!r})"
        time.sleep(0.05)
    edges = set(lab.services(region, live_only=True).values())
    answer = lab.llns_answers(c, victim)  # asks the victim's address: the buddy answers
    assert len(answer) == 2 and set(answer) <= edges, answer

    mnlab.restore_machine(lab, victim, timeout=30)
    deadline = time.monotonic() + 15
    while (by := who()) != victim:
        assert time.monotonic() < deadline, f"{address} not handed back (answered by {by!r})"
        time.sleep(0.1)
