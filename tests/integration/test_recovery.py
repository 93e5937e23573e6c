"""Recovery-oriented operation on a devnet with fault injection on (the paper's §5): a
request of death for one serial crashes its servers, which roll and come back, and the
serial is quarantined to a few servers while every other serial is served; a machine
that keeps rolling long-sleeps out of the maps and comes back; a third of the network
rolling at once switches every daemon to recovering in place, and back."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from akacdn.devnet.network import BASE_DOMAIN
from akacdn.devnet.supervisor import Devnet

from .conftest import curl, dig, supervised_devnet, wait_for

DEATH_HOST = "www.death.example"
DEATH_SERIAL = 456
FRAGILE_HOST = "www.fragile.example"
FRAGILE_SERIAL = 321
ODD_HOST = "www.odd.example"
ODD_SERIAL = 789
RECOVERY = {
    "roll_limit": 3,
    "roll_window": 120.0,
    "long_sleep": 4.0,
    "long_sleep_max": 8.0,
    "healthy_reset": 60.0,
    "stall_limit": 5.0,
    "in_place_fraction": 0.3,
    "in_place_min_machines": 3,
    "mode_window": 6.0,
    "disable_after": 2,
    "quarantine_after": 2,
    "quarantine_window": 120.0,
    "quarantine_servers": 1,
    "quarantine_hold": 120.0,
}


def tweak(network: dict[str, Any], customers: dict[str, Any]) -> None:
    network["faults"] = {"enabled": True, "hang_seconds": 60.0}
    network["recovery"] = RECOVERY
    demo = customers["customers"][0]
    customers["customers"].append(
        {
            "name": "death",
            "serial": DEATH_SERIAL,
            "hostnames": [DEATH_HOST],
            "origin": demo["origin"],
            "faults": [{"on": "edge", "kind": "crash", "path": "/death*"}],
        }
    )
    customers["customers"].append(
        {
            "name": "fragile",
            "serial": FRAGILE_SERIAL,
            "hostnames": [FRAGILE_HOST],
            "origin": demo["origin"],
            "faults": [{"on": "edge", "kind": "crash", "path": "/boom*"}],
        }
    )
    customers["customers"].append(
        {
            "name": "odd",
            "serial": ODD_SERIAL,
            "hostnames": [ODD_HOST],
            "origin": demo["origin"],
            "faults": [{"on": "dns", "kind": "wrong"}, {"on": "edge", "kind": "hang", "path": "/hang*"}],
        }
    )


@pytest.fixture(scope="module")
def dn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    with supervised_devnet(tmp_path_factory.mktemp("recovery") / "devnet", tweak) as d:
        yield d


def status(dn: Devnet) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "akacdn", "status", "--json", "--config", str(dn.config_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def fetch(dn: Devnet, address: str, host: str, path: str = "/") -> int:
    code, _, _ = curl(f"http://{address}:{dn.layout.http_port}{path}", "-H", f"Host: {host}", "--max-time", "5")
    return code


def llns_answers(dn: Devnet, serial: int) -> set[str]:
    out: set[str] = set()
    for m in dn.net.by_role("llns"):
        out |= set(dig(m.address, dn.layout.dns_port, f"a{serial}.g.{BASE_DOMAIN}", "A", "+norec").addresses())
    return out


def address_of(dn: Devnet, machine: str) -> str:
    return dn.net.machine(machine).address


def machine_at(dn: Devnet, address: str) -> str:
    return next(m.id for m in dn.net.machines if m.address == address)


def state_of(dn: Devnet, machine: str) -> str:
    return next(m["state"] for m in status(dn)["machines"] if m["id"] == machine)


class Traffic:
    """Requests for the demo serial to every edge, from a thread, counting failures
    (the other serials' view of a storm)."""

    def __init__(self, dn: Devnet, edges: list[str]) -> None:
        self.dn, self.edges = dn, edges
        self.ok = self.failed = 0
        self.failures: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for e in self.edges:
                code = fetch(self.dn, address_of(self.dn, e), "www.demo.example", "/")
                if code == 200:
                    self.ok += 1
                else:
                    self.failed += 1
                    self.failures.append((e, code))

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_a_request_of_death_rolls_its_servers_and_its_serial_is_quarantined(dn: Devnet) -> None:
    carriers = sorted(
        machine_at(dn, a) for a in llns_answers(dn, DEATH_SERIAL) if a.startswith(dn.layout.addr(1, 0)[:-1])
    )
    r1 = [m for m in carriers if m.startswith("r1-")]
    assert len(r1) == 2, r1
    others = [m.id for m in dn.net.by_role("edge") if m.region != "r1"]
    with Traffic(dn, others) as traffic:
        for edge in r1:  # the request of death, to each of its servers in r1: they roll
            assert fetch(dn, address_of(dn, edge), DEATH_HOST, "/death") == 0  # the connection dies with the daemon
        doc = wait_for(lambda: (s := status(dn))["quarantines"] and s, 20, "the serial to be quarantined")
    assert isinstance(doc, dict)
    q = doc["quarantines"][0]
    assert q["serial"] == DEATH_SERIAL and q["by"] == "auto" and len(q["servers"]) == 3  # one per region
    assert set(q["crashed"]) == set(r1)
    # the rolls were reported with their crash records (serial and request)
    rolled = [r for r in doc["rolls"] if r["kind"] == "rolled" and r["machine"] in r1]
    assert rolled and all(r["serial"] == DEATH_SERIAL and "/death" in r["context"] for r in rolled)
    # the LLNSes answer only its quarantine set; the other edges refuse it without crashing
    allowed = {address_of(dn, m) for m in q["servers"]}
    wait_for(lambda: llns_answers(dn, DEATH_SERIAL) <= allowed, 20, "the LLNSes to answer only the set")
    barred = next(m.id for m in dn.net.by_role("edge") if m.region == "r1" and m.id not in q["servers"])
    wait_for(lambda: fetch(dn, address_of(dn, barred), DEATH_HOST, "/death") == 503, 20, f"{barred} to refuse it")
    assert dn.procs[barred].poll() is None
    # on its own servers a request of death now fails alone: they keep serving everyone else
    own = address_of(dn, next(m for m in q["servers"] if m.startswith("r1-")))
    server = machine_at(dn, own)
    wait_for(lambda: fetch(dn, own, "www.demo.example") == 200, 30, f"{server} to serve")
    proc = dn.procs[server]
    assert fetch(dn, own, DEATH_HOST, "/death") == 500
    assert fetch(dn, own, DEATH_HOST, "/") == 200  # the serial's other requests are served there
    assert dn.procs[server] is proc and proc.poll() is None
    # the hit machines rolled and came back: live again
    for edge in r1:
        wait_for(lambda edge=edge: state_of(dn, edge) == "live", 30, f"{edge} to be live again")
    # the other serials saw no errors
    assert traffic.ok > 0 and traffic.failed == 0, traffic.failures[:5]


def quarantine_server(dn: Devnet, region: str) -> str:
    q = next(q for q in status(dn)["quarantines"] if q["serial"] == DEATH_SERIAL)
    return next(m for m in q["servers"] if dn.net.machine(m).region == region)


def test_a_machine_that_keeps_rolling_long_sleeps_out_of_the_maps_and_returns(dn: Devnet) -> None:
    edge = "r1-e3"
    address = address_of(dn, edge)
    for _ in range(RECOVERY["roll_limit"]):
        wait_for(lambda: fetch(dn, address, "www.demo.example") == 200, 30, f"{edge} to serve")
        dn.crash(edge)  # killed: a roll (the supervisor starts it again)
        if wait_for(lambda: state_of(dn, edge) in ("asleep", "live"), 30, f"{edge} back or asleep") == "asleep":
            break
    wait_for(lambda: state_of(dn, edge) == "asleep", 20, f"{edge} to long-sleep")
    doc = status(dn)
    assert edge in doc["asleep"]
    assert fetch(dn, address, "www.demo.example") == 0  # it serves nothing while asleep
    wait_for(lambda: address not in llns_answers(dn, 123), 20, f"{edge} out of the maps")
    # then it wakes up, serves, and is back in the maps
    wait_for(lambda: state_of(dn, edge) == "live", 30, f"{edge} to come back after its sleep")
    assert fetch(dn, address, "www.demo.example") == 200


def test_a_third_of_the_network_rolling_switches_every_daemon_to_recovering_in_place_and_back(dn: Devnet) -> None:
    serving = [m.id for m in dn.net.machines if m.role in ("edge", "llns", "tlns")]
    victims = [m for m in serving if m.startswith(("r2-e", "r3-e"))][:5]
    assert len(victims) * 3 >= len(serving)
    for m in victims:
        dn.crash(m)  # the supervisor restarts each: five rolls within the mode window
    wait_for(lambda: status(dn)["mode"] == "in_place", 30, "the leader to switch to the in-place mode")
    for m in serving:
        wait_for(lambda m=m: dn.metric(m, "akacdn_in_place_mode") == 1, 20, f"{m} to recover in place")
    # a fault now fails alone: the daemon stays up, then disables the serial that faults
    edge = "r1-e2"
    address, proc = address_of(dn, edge), dn.procs[edge]
    assert fetch(dn, address, FRAGILE_HOST, "/boom") == 500
    assert fetch(dn, address, FRAGILE_HOST, "/boom") == 500
    assert fetch(dn, address, FRAGILE_HOST, "/") == 503  # disabled after `disable_after` faults
    assert fetch(dn, address, "www.demo.example") == 200  # everything else is served
    assert dn.procs[edge] is proc and proc.poll() is None
    # the rolls have stopped: after the mode window the network rolls again
    wait_for(lambda: status(dn)["mode"] == "roll", 30, "the leader to leave the in-place mode")
    for m in serving:
        wait_for(lambda m=m: dn.metric(m, "akacdn_in_place_mode") == 0, 20, f"{m} to roll again")


def test_a_hang_is_rolled_by_the_stall_watchdog_with_what_it_was_serving(dn: Devnet) -> None:
    edge = "r3-e3"
    proc = dn.procs[edge]
    assert fetch(dn, address_of(dn, edge), ODD_HOST, "/hang") == 0  # blocks the daemon: curl gives up
    wait_for(lambda: dn.procs.get(edge, proc) is not proc, 30, f"{edge} to be rolled by its stall watchdog")
    notes = wait_for(
        lambda: [r for r in status(dn)["rolls"] if r["machine"] == edge and "stalled" in r.get("error", "")],
        30,
        "the roll to be reported",
    )
    assert isinstance(notes, list) and "/hang" in notes[-1]["context"] and notes[-1]["serial"] == ODD_SERIAL
    wait_for(lambda: fetch(dn, address_of(dn, edge), "www.demo.example") == 200, 30, f"{edge} to serve again")


def test_a_dns_fault_answers_wrongly_and_only_for_its_serial(dn: Devnet) -> None:
    llns = dn.net.by_role("llns")[0].address
    wrong = dig(llns, dn.layout.dns_port, f"a{ODD_SERIAL}.g.{BASE_DOMAIN}", "A", "+norec")
    assert wrong.addresses() == ["192.0.2.66"]
    right = dig(llns, dn.layout.dns_port, f"a123.g.{BASE_DOMAIN}", "A", "+norec")
    assert right.addresses() and "192.0.2.66" not in right.addresses()
