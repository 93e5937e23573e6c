"""`akacdn.region.actions` against a real kernel: a tiny L2 lab in network namespaces.

A buddy, an owner and a client hang off a Linux bridge that lives in a fourth namespace
(veth pairs are created straight inside the namespaces; the root namespace is never
touched). The client learns the owner's service address by pinging it; the owner lets
go of the address (`Interface.remove`); the buddy takes it (`Interface.add`) and
announces it (`Announcer.announce`), and the client's neighbour entry must move to the
buddy's MAC with no further traffic from the client: the gratuitous ARP did it, with the
client on Linux defaults (`arp_accept=0`, `drop_gratuitous_arp=0`, set explicitly since a
new namespace copies the root namespace's IPv4 settings).

Each actions script runs in its namespace as `ip netns exec NS python -c ...` on the
stock asyncio loop. Needs root; runs here and in CI.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from akacdn.devnet.segment import Segment, run

from .conftest import poll

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")]

REPO = Path(__file__).resolve().parents[2]
_labs = itertools.count()


class Lab(Segment):
    """The segment: a buddy, an owner and a client (hosts .11, .12, .50)."""

    def __init__(self, prefix: str, net: str) -> None:
        super().__init__(prefix, net, {"buddy": 11, "owner": 12, "client": 50})

    def neigh(self, role: str, address: str) -> dict[str, Any]:
        """The neighbour entry for `address` in `role`'s namespace ({} if none)."""
        out = json.loads(self.sh(role, "ip", "-j", "neigh", "show", address, "dev", self.dev(role)) or "[]")
        return out[0] if out else {}

    def actions(self, role: str, script: str, **params: Any) -> dict[str, Any]:
        """Run `script` (using akacdn.region.actions) inside `role`'s namespace; its JSON result."""
        code = PRELUDE + script
        cmd = ["ip", "netns", "exec", self.ns(role), sys.executable, "-c", code, json.dumps(params)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO)
        if p.returncode != 0:
            pytest.fail(f"actions script in {role} failed:\n{p.stdout}\n{p.stderr}")
        return json.loads(p.stdout.strip().splitlines()[-1])


PRELUDE = """
import asyncio, json, subprocess, sys, time
from akacdn.region.actions import ActionError, Announcer, Interface
p = json.loads(sys.argv[1])
"""

OWNER_RELEASES = """
async def main():
    async with await Interface.open(p["host"]) as iface:
        before = await iface.present()
        first, second = await iface.remove(p["service"]), await iface.remove(p["service"])
        return {"before": sorted(before), "removed": [first, second], "after": sorted(await iface.present())}
print(json.dumps(asyncio.run(main())))
"""

BUDDY_TAKES = """
t = time.monotonic()
announcer = Announcer()  # imports scapy: at agent start, not on the takeover path
scapy_import = time.monotonic() - t
async def main():
    async with await Interface.open(p["host"]) as iface:
        announcer.prepare(iface.link.ifname, iface.link.mac, [p["service"]])  # at agent start too
        before = await iface.present()
        called = time.monotonic()
        added = await iface.add(p["service"], p["prefixlen"])
        first_arp = await announcer.announce(iface.link.ifname, p["service"], iface.link.mac, count=3, spacing=0.05)
        again = await iface.add(p["service"], p["prefixlen"])  # already there: fine
        return {"link": list(iface.link), "before": sorted(before), "after": sorted(await iface.present()),
                "called": called, "added": added, "first_arp": first_arp, "again": again,
                "scapy_import": scapy_import}
with announcer:
    print(json.dumps(asyncio.run(main())))
"""

ERRORS = """
async def expect(what, coro):
    try:
        await coro
    except ActionError as e:
        return what, str(e)
    raise AssertionError(f"{what}: no ActionError")

async def main():
    out = [await expect("not held", Interface.open(p["absent"]))]
    async with await Interface.open(p["host"]) as iface, await Interface.open(p["spare_host"]) as spare:
        out.append(await expect("bad address", iface.add("not-an-address", 24)))
        out.append(await expect("bad prefix", iface.add(p["service"], 40)))
        with Announcer() as announcer:
            out.append(await expect("no such interface", announcer.announce("nosuchif0", p["service"], spare.link.mac)))
            await announcer.announce(spare.link.ifname, p["spare_host"], spare.link.mac, count=1)  # socket now open
            subprocess.run(["ip", "link", "del", spare.link.ifname], check=True)
            out.append(await expect("gone: add", spare.add(p["service"], 24)))
            out.append(await expect("gone: remove", spare.remove(p["service"])))
            out.append(await expect("gone: present", spare.present()))
            out.append(await expect("gone: announce", announcer.announce(spare.link.ifname, p["spare_host"],
                                                                        spare.link.mac, count=1)))
    return out
print(json.dumps(asyncio.run(main())))
"""

UVLOOP = """
import uvloop
async def main():
    try:
        await Interface.open(p["host"])
    except ActionError as e:
        return str(e)
    return "opened"
print(json.dumps(uvloop.run(main())))
"""


EXPECTED = {  # what went wrong -> a piece of the ActionError's message
    "not held": "no interface holds",
    "bad address": "bad address not-an-address/24",
    "bad prefix": "/40",
    "no such interface": "gratuitous ARP on nosuchif0",
    "gone: add": "is gone",
    "gone: remove": "is gone",
    "gone: present": "is gone",
    "gone: announce": "gratuitous ARP on {spare}",
}


@pytest.fixture
def lab() -> Iterator[Lab]:
    pid = os.getpid()
    lab = Lab(f"akra{pid % 1000}{next(_labs) % 10}", f"198.18.{pid % 250 + 1}")
    try:
        lab.build()
        for name in ("all", lab.dev("client")):  # Linux defaults, whatever the root namespace has
            lab.sh("client", "sysctl", "-qw", f"net.ipv4.conf.{name}.arp_accept=0")
            lab.sh("client", "sysctl", "-qw", f"net.ipv4.conf.{name}.drop_gratuitous_arp=0")
        yield lab
    finally:
        lab.remove()  # deleting a namespace deletes its veth ends and the bridge


def test_gratuitous_arp_moves_the_client_to_the_buddy(lab: Lab) -> None:
    service = lab.ip(112)
    run("ip", "-n", lab.ns("owner"), "addr", "add", f"{service}/24", "dev", lab.dev("owner"))
    owner_mac, buddy_mac = lab.mac("owner"), lab.mac("buddy")

    def pinged() -> bool:
        ping = ["ip", "netns", "exec", lab.ns("client"), "ping", "-c1", "-W1", service]
        return subprocess.run(ping, capture_output=True).returncode == 0

    assert poll(pinged, timeout=10), "the client cannot reach the service address at the owner"
    learned = lab.neigh("client", service)
    assert learned.get("lladdr") == owner_mac, learned

    released = lab.actions("owner", OWNER_RELEASES, host=lab.ip(12), service=service)
    assert service in released["before"]
    assert released["removed"] == [True, False]  # the second remove is a no-op
    assert service not in released["after"] and lab.ip(12) in released["after"]
    assert lab.neigh("client", service).get("lladdr") == owner_mac  # nothing told the client yet

    took = lab.actions("buddy", BUDDY_TAKES, host=lab.ip(11), service=service, prefixlen=24)
    assert took["link"] == [lab.dev("buddy"), took["link"][1], buddy_mac, 24]
    assert service not in took["before"] and service in took["after"]
    assert took["called"] <= took["added"] <= took["first_arp"] <= took["again"]

    # the client sends nothing: only the gratuitous ARP can have moved its entry
    moved = poll(lambda: (n := lab.neigh("client", service)).get("lladdr") == buddy_mac and n, timeout=5, every=0.02)
    assert moved, f"client still has {lab.neigh('client', service)} (buddy is {buddy_mac})"
    assert set(moved["state"]) & {"STALE", "REACHABLE"}, moved
    print(
        f"\nclient entry {learned['state']} -> {moved['state']}; add() call -> kernel ack "
        f"{(took['added'] - took['called']) * 1e3:.2f} ms, -> first gratuitous ARP sent "
        f"{(took['first_arp'] - took['called']) * 1e3:.2f} ms; scapy import {took['scapy_import'] * 1e3:.0f} ms"
    )


V6 = "2001:2::"  # the IPv6 benchmarking range (RFC 5180), like 198.18.0.0/15 for IPv4


def test_unsolicited_neighbour_advertisement_moves_the_client_to_the_buddy(lab: Lab) -> None:
    """The same for an IPv6 service address: the buddy adds it (no DAD wait) and sends an
    unsolicited neighbour advertisement; the client's neighbour entry moves to its MAC."""
    for role, n in (("buddy", 11), ("owner", 12), ("client", 50)):
        lab.sh(role, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0")
        lab.sh(role, "ip", "-6", "addr", "add", f"{V6}{n}/64", "dev", lab.dev(role), "nodad")
    service = f"{V6}112"
    run("ip", "-n", lab.ns("owner"), "-6", "addr", "add", f"{service}/128", "dev", lab.dev("owner"), "nodad")
    owner_mac, buddy_mac = lab.mac("owner"), lab.mac("buddy")

    def pinged() -> bool:
        ping = ["ip", "netns", "exec", lab.ns("client"), "ping", "-6", "-c1", "-W1", service]
        return subprocess.run(ping, capture_output=True).returncode == 0

    assert poll(pinged, timeout=10), "the client cannot reach the IPv6 service address at the owner"
    assert lab.neigh("client", service).get("lladdr") == owner_mac

    released = lab.actions("owner", OWNER_RELEASES, host=lab.ip(12), service=service)
    assert released["removed"] == [True, False] and service not in released["after"]
    took = lab.actions("buddy", BUDDY_TAKES, host=lab.ip(11), service=service, prefixlen=128)
    assert service in took["after"] and took["added"] <= took["first_arp"]
    flags = lab.sh("buddy", "ip", "-6", "addr", "show", "dev", lab.dev("buddy"))
    assert "tentative" not in next(line for line in flags.splitlines() if service in line), "usable at once"

    # the client sends nothing: only the neighbour advertisement can have moved its entry
    moved = poll(lambda: lab.neigh("client", service).get("lladdr") == buddy_mac, timeout=5, every=0.02)
    assert moved, f"client still has {lab.neigh('client', service)} (buddy is {buddy_mac})"


def test_failures_are_action_errors(lab: Lab) -> None:
    spare, spare_host = f"{lab.prefix}s", lab.ip(21)  # a second interface to pull out from under it
    run("ip", "-n", lab.ns("buddy"), "link", "add", spare, "type", "veth", "peer", "name", f"{lab.prefix}t")
    run("ip", "-n", lab.ns("buddy"), "link", "set", spare, "up")
    run("ip", "-n", lab.ns("buddy"), "addr", "add", f"{spare_host}/32", "dev", spare)
    errors = lab.actions(
        "buddy", ERRORS, host=lab.ip(11), absent=lab.ip(99), service=lab.ip(112), spare_host=spare_host
    )
    assert [what for what, _ in errors] == list(EXPECTED), errors
    for what, message in errors:
        assert EXPECTED[what].format(spare=spare) in message, (what, message)


def test_refuses_uvloop(lab: Lab) -> None:
    pytest.importorskip("uvloop")
    assert "uvloop" in lab.actions("buddy", UVLOOP, host=lab.ip(11))
