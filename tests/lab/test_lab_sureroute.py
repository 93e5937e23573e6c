"""SureRoute and tiered distribution in the Mininet lab: regions and the origin are
different networks behind their own routers; the "peering" between region r1 and the
origin is cut with nftables on r1's router (`drop_path`) while every other route stays
up. Misses through r1's edges keep succeeding through r2 (its edge in the answer's Via),
and go direct again once the path heals; a parent region makes one origin request for
all of its children's misses."""

from __future__ import annotations

import json
import secrets
import shlex

import pytest

from ..integration.test_sureroute import TIERED_HOST, sureroute_tweak
from .conftest import mnlab
from .test_lab import DEMO_HOST, poll

pytestmark = pytest.mark.root

LAB_OPTIONS = {"tweak": sureroute_tweak("r2")}


def get(lab, src: str, edge_address: str, path: str, host: str = DEMO_HOST) -> tuple[int, list[str]]:
    """curl from `src` through one edge: (status, every Via value of the answer)."""
    url = f"http://{edge_address}{path}"
    out = lab.host(src).cmd(
        f"curl -s -o /dev/null -D - --no-styled-output --max-time 15 -H {shlex.quote('Host: ' + host)} "
        f"{shlex.quote(url)}; echo"
    )
    lines = out.replace("\r", "").splitlines()
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    vias = [ln.partition(":")[2].strip() for ln in lines if ln.lower().startswith("via:")]
    return status, vias


def knows_every_region(lab, machine: str) -> bool:
    """The edge's low-level map has the other region's edges (its SureRoute candidates)."""
    code, body = lab.management(machine, "/upstreams")
    return code == 200 and len(json.loads(body)["routes"].get("demo", {}).get("paths", {})) >= 2


def edge_of(lab, region: str) -> tuple[str, str]:
    machine = lab.machine_ids("edge", region)[0]
    return machine, lab.services(region)[machine]


def test_a_cut_peering_is_routed_around_through_another_region(lab) -> None:
    c = lab.client_nets()[0]
    src = lab.client_host(c)
    machine, address = edge_of(lab, "r1")
    others = [m for m in lab.machine_ids("edge") if m not in lab.machine_ids("edge", "r1")]
    poll(f"{machine} to know every region", lambda: knows_every_region(lab, machine), 30)

    def via_other(vias: list[str]) -> bool:
        return any(o in v for o in others for v in vias)

    def answered() -> tuple[int, list[str]] | None:
        r = get(lab, src, address, f"/?d={secrets.token_hex(4)}")
        return r if r[0] == 200 else None

    _, vias = poll("a direct miss", answered, 30)
    assert not via_other(vias), vias
    mnlab.drop_path(lab, "r1", "org")
    got = [get(lab, src, address, f"/?cut={secrets.token_hex(4)}") for _ in range(5)]
    assert all(s == 200 for s, _ in got), got
    assert all(via_other(v) for _, v in got), got  # every miss came through r2's edge
    code, body = lab.management(machine, "/events")
    assert code == 200 and "sureroute_failover" in body
    mnlab.heal_path(lab, "r1", "org")

    def direct_again() -> bool:
        s, v = get(lab, src, address, f"/?healed={secrets.token_hex(4)}")
        return s == 200 and not via_other(v)

    poll("misses direct again after the path healed", direct_again, 30)


def test_a_parent_region_makes_one_origin_request_for_its_children(lab) -> None:
    src = lab.client_host(lab.client_nets()[0])
    path = f"/img/photo-1.png?tier={secrets.token_hex(4)}"
    parents = lab.machine_ids("edge", "r2")
    for machine in lab.machine_ids("edge", "r1"):
        poll(f"{machine} to know every region", lambda m=machine: knows_every_region(lab, m), 30)
    for machine in lab.machine_ids("edge", "r1"):
        address = lab.services("r1")[machine]
        status, vias = get(lab, src, address, path, TIERED_HOST)
        assert status == 200, (machine, status)
        assert any(p in v for p in parents for v in vias), vias  # through a parent edge
    assert lab.origin_stats()["requests"].get(path) == 1
