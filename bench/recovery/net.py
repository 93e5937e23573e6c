"""The recovery benchmark's devnet and its probes (loopback only).

One devnet on 127.91.x.y with its own DNS and HTTP ports (never another devnet's), fault
injection on, a `death` customer whose `/death*` requests crash the edge that serves
them, flap damping off (the same machines are killed over and over on purpose) and
recovery settings that keep long-sleep and the in-place mode out of the repeated trials.
Every probe is one short request; none raises.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dnslib import DNSRecord

from akacdn.devnet.network import BASE_DOMAIN, DEMO_HOST, DEMO_SERIAL, Layout
from akacdn.devnet.supervisor import Devnet

LAYOUT = Layout(91, 15391, 18091)
DEATH_HOST = "www.death.example"
DEATH_SERIAL = 456
RECOVERY = {
    "roll_limit": 1000,  # never long-sleep during the trials ...
    "roll_window": 600.0,
    "in_place_min_machines": 1000,  # ... nor switch the network to recovering in place
    "quarantine_after": 2,
    "quarantine_servers": 1,
    "quarantine_hold": 600.0,
}


def tweak(network: dict[str, Any], customers: dict[str, Any]) -> None:
    network["faults"] = {"enabled": True}
    network["recovery"] = RECOVERY
    network["mapping"] = {"damping": False}
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


class BenchNet:
    """The devnet, made on `start` (so `stop_all` is safe whenever `measure_guarded` calls it)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.dn: Devnet | None = None

    def start(self, timeout: float) -> Devnet:
        self.dn = Devnet(self.directory, LAYOUT, resolver=False, tweak=tweak)
        try:
            self.dn.start(timeout=timeout)
        except TimeoutError as e:
            raise RuntimeError(f"devnet did not start: {e}") from None
        return self.dn

    def stop_all(self) -> None:
        if self.dn is not None:
            self.dn.stop()


# probes ---------------------------------------------------------------------------------
def dns_answers(address: str, name: str, qtype: str = "A", timeout: float = 0.02) -> list[str] | None:
    """The answer records' data of one UDP query (None: no reply in time, or not NOERROR)."""
    try:
        raw = DNSRecord.question(name, qtype).send(address, LAYOUT.dns_port, timeout=timeout)
        reply = DNSRecord.parse(raw)
    except Exception:  # timeouts, refused ports, unparsable replies: all "not answering"
        return None
    if reply.header.rcode != 0:
        return None
    return [str(rr.rdata) for rr in reply.rr]


def http_status(address: str, port: int, path: str = "/", host: str = "", timeout: float = 1.0) -> int:
    """One GET (Connection: close): the status, 0 when the connection failed or died."""
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host or address, "Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def edge_status(address: str, host: str = DEMO_HOST, path: str = "/", timeout: float = 1.0) -> int:
    return http_status(address, LAYOUT.http_port, path, host, timeout)


def management(dn: Devnet, machine: str, path: str, timeout: float = 1.0) -> int:
    return http_status(dn.net.machine(machine).address, dn.net.ports.management, path, timeout=timeout)


def low_name(serial: int) -> str:
    return f"a{serial}.g.{BASE_DOMAIN}"


def serving_probe(dn: Devnet, machine: str) -> Callable[[], bool]:
    """Is `machine` doing its job: a nameserver answers, an edge serves the demo page, a
    relay or a mapping center says it is ready."""
    m = dn.net.machine(machine)
    if m.role == "tlns":
        return lambda: bool(dns_answers(m.address, BASE_DOMAIN, "SOA"))
    if m.role == "llns":
        return lambda: bool(dns_answers(m.address, low_name(DEMO_SERIAL)))
    if m.role == "edge":
        return lambda: edge_status(m.address) == 200
    return lambda: management(dn, machine, "/readyz", 0.5) == 200


def wait(what: str, check: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    """Poll until `check` gives something truthy; RuntimeError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


def until(check: Callable[[], bool], t0: float, timeout: float, idle: float = 0.005) -> float:
    """Seconds from `t0` (monotonic) until `check` holds, probing in a tight loop (`idle`
    between failed probes: a refused port fails at once, and the daemon being timed
    needs the CPU); NaN after `timeout`."""
    while not check():
        if time.monotonic() - t0 > timeout:
            return float("nan")
        time.sleep(idle)
    return time.monotonic() - t0


# the leading center ---------------------------------------------------------------------
def status(dn: Devnet) -> dict[str, Any] | None:
    """The leading center's /v1/status (asked of the leader itself), None when none answers."""
    leader = dn.leader() or dn.net.by_role("mapper")[0].id
    m = dn.net.machine(leader)
    conn = http.client.HTTPConnection(m.address, dn.net.ports.management, timeout=2.0)
    try:
        conn.request("GET", "/v1/status")
        resp = conn.getresponse()
        body = resp.read()
        return json.loads(body) if resp.status == 200 else None  # type: ignore[no-any-return]
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def quarantine_of(doc: dict[str, Any] | None, serial: int = DEATH_SERIAL) -> dict[str, Any] | None:
    return next((q for q in (doc or {}).get("quarantines", []) if q["serial"] == serial), None)


def states(doc: dict[str, Any] | None) -> dict[str, str]:
    return {m["id"]: m["state"] for m in (doc or {}).get("machines", [])}


def lift(dn: Devnet, serial: int = DEATH_SERIAL) -> None:
    """`akacdn quarantine lift` (the operator token is in the devnet's network file)."""
    cmd = [sys.executable, "-m", "akacdn", "quarantine", "lift", str(serial), "--config", str(dn.config_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if r.returncode != 0 and "is not quarantined" not in r.stderr:
        raise RuntimeError(f"quarantine lift failed: {r.stderr.strip()}")


def machine_at(dn: Devnet, address: str) -> str:
    return next(m.id for m in dn.net.machines if m.address == address)
