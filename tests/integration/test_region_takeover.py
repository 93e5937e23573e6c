"""IP takeover for real, in network namespaces: two edge machines on one L2 segment, each
running `akacdn edge` and `akacdn agent`, and a client. Kill a machine (its processes and
its link): its service address answers from the buddy (the response names the machine
that served it) and the client's ARP cache points at the buddy's MAC; restore it: it
serves its address again and the buddy no longer holds it.

Needs root (network namespaces, addresses, ARP); runs here and in CI."""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from akacdn.devnet.segment import Segment

from .conftest import poll

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

NET = "198.18.77"
NET6 = "2001:2::"  # the IPv6 benchmarking range (RFC 5180)
_labs = itertools.count()


class Lab(Segment):
    """The segment (bridge, machines a and b, client c) and the daemons we started."""

    def __init__(self, prefix: str, directory: Path, config: Path, hosts: dict[str, int] | None = None) -> None:
        super().__init__(prefix, NET, hosts or {"a": 11, "b": 12, "c": 50})
        self.dir, self.config = directory, config
        self.procs: dict[str, list[subprocess.Popen[bytes]]] = {}

    def start_machine(self, ns: str, machine: str, roles: tuple[str, ...] = ("edge", "agent")) -> None:
        procs = []
        for role in roles:
            log = open(self.dir / f"{machine}-{role}.log", "ab")  # noqa: SIM115 -- the process keeps it
            cmd = ["ip", "netns", "exec", self.ns(ns), sys.executable, "-m", "akacdn", role]
            cmd += ["--config", str(self.config), "--machine", machine]
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            log.close()
        self.procs[machine] = procs

    def kill_machine(self, machine: str) -> None:
        for p in self.procs.pop(machine, []):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)

    def served_by(self, address: str) -> str | None:
        """X-Served-By of an answer from `address`, asked from the client (fresh connection)."""
        url = f"http://[{address}]/" if ":" in address else f"http://{address}/"
        try:
            out = self.sh("c", "curl", "-s", "-o", "/dev/null", "-D", "-", "--max-time", "1", url)
        except RuntimeError:
            return None
        for line in out.splitlines():
            k, _, v = line.partition(":")
            if k.lower() == "x-served-by":
                return v.strip()
        return None

    def client_arp(self, address: str) -> str:
        return self.sh("c", "ip", "-6" if ":" in address else "-4", "neigh", "show", address)

    def holds(self, ns: str, address: str) -> bool:
        out = self.sh(ns, "ip", "-6" if ":" in address else "-4", "addr", "show", "dev", self.dev(ns))
        return f" {address}/" in out

    def add_ipv6(self) -> None:
        """Each host's own IPv6 address on the segment (no DAD: usable at once)."""
        for ns, n in self.hosts.items():
            self.sh(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0")
            self.sh(ns, "ip", "-6", "addr", "add", f"{NET6}{n}/64", "dev", self.dev(ns), "nodad")

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in sorted(self.dir.glob("*.log"))
        )


def write_config(d: Path, state: Path) -> Path:
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    (d / "customers.toml").write_text(tomli_w.dumps({"customers": []}))
    net = {
        "base_domain": "akacdn.test",
        "state_dir": str(state),
        "keys": {"message_key": secrets.token_hex(32), "purge_token": secrets.token_hex(16)},
        "agent": {"interval": 0.05, "misses": 3, "recover_after": 0.5, "release_grace": 0.5, "garp_refresh": 0.5},
        "regions": [{"id": "r1"}],
        "machines": [
            {"id": "relay1", "role": "relay", "address": f"{NET}.200"},
            {"id": "mc1", "role": "mapper", "address": f"{NET}.201", "public_key": pub},
            {"id": "tlns1", "role": "tlns", "address": f"{NET}.202"},
            {
                "id": "e1",
                "role": "edge",
                "region": "r1",
                "address": f"{NET}.111",
                "address6": f"{NET6}111",
                "host_address": f"{NET}.11",
            },
            {
                "id": "e2",
                "role": "edge",
                "region": "r1",
                "address": f"{NET}.112",
                "address6": f"{NET6}112",
                "host_address": f"{NET}.12",
            },
        ],
    }
    path = d / "network.toml"
    path.write_text(tomli_w.dumps(net))
    return path


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(f"akt{os.getpid() % 1000}{next(_labs)}", tmp_path, write_config(tmp_path, tmp_path / "state"))
    try:
        lab.build()
        lab.add_ipv6()
        lab.sh("c", "sysctl", "-qw", "net.ipv4.conf.all.arp_accept=1")
        lab.start_machine("a", "e1")
        lab.start_machine("b", "e2")
        yield lab
    finally:
        for machine in list(lab.procs):
            lab.kill_machine(machine)
        lab.remove()


def test_a_dead_machines_address_is_served_by_its_buddy_and_handed_back(lab: Lab) -> None:
    svc1, svc2, svc1_6 = f"{NET}.111", f"{NET}.112", f"{NET6}111"
    ok = poll(lambda: lab.served_by(svc1) == "e1" and lab.served_by(svc2) == "e2", 30, every=0.2)
    assert ok, f"each machine serves its own address\n{lab.logs()}"
    assert lab.served_by(svc1_6) == "e1", f"and its IPv6 address\n{lab.logs()}"
    assert lab.mac("a") in lab.client_arp(svc1) and lab.mac("a") in lab.client_arp(svc1_6)

    lab.kill_machine("e1")  # the machine dies: its processes, and its link
    lab.sh("a", "ip", "link", "set", lab.dev("a"), "down")
    ok = poll(lambda: lab.served_by(svc1) == "e2", 15, every=0.05)
    assert ok, f"the buddy answers on the dead machine's address\n{lab.logs()}"
    assert lab.mac("b") in lab.client_arp(svc1), "the client's ARP cache points at the buddy"
    assert lab.holds("b", svc1)
    ok = poll(lambda: lab.served_by(svc1_6) == "e2", 15, every=0.05)
    assert ok, f"and on its IPv6 address\n{lab.logs()}"
    assert lab.mac("b") in lab.client_arp(svc1_6), "the neighbour advertisement moved the client's entry"

    lab.sh("a", "ip", "link", "set", lab.dev("a"), "up")  # it comes back
    lab.sh("a", "ip", "-6", "addr", "replace", f"{NET6}11/64", "dev", lab.dev("a"), "nodad")
    lab.start_machine("a", "e1")
    ok = poll(lambda: lab.served_by(svc1) == "e1" and lab.served_by(svc1_6) == "e1", 30, every=0.1)
    assert ok, f"the owner serves its addresses again\n{lab.logs()}"
    assert not lab.holds("b", svc1) and not lab.holds("b", svc1_6), "the buddy let go"
    assert lab.mac("a") in lab.client_arp(svc1) and lab.mac("a") in lab.client_arp(svc1_6)
    assert lab.served_by(svc2) == "e2"


def test_a_failing_service_hands_its_address_over_without_waiting_for_missed_beacons(lab: Lab) -> None:
    """Only e1's edge dies; its machine and agent live on. The agent's check fails, its next
    beacon says so, the buddy takes the address at once and e1 lets go (no dual holding);
    when the edge is back and healthy for recover_after, the address goes home."""
    svc1 = f"{NET}.111"
    assert poll(lambda: lab.served_by(svc1) == "e1", 30, every=0.2), lab.logs()
    edge, agent = lab.procs["e1"]
    os.killpg(edge.pid, signal.SIGKILL)
    edge.wait(timeout=10)
    assert poll(lambda: lab.served_by(svc1) == "e2", 15, every=0.05), f"the buddy took over\n{lab.logs()}"
    held_by_e1 = lambda: svc1 in lab.sh("a", "ip", "-4", "addr", "show", "dev", lab.dev("a"))  # noqa: E731
    assert poll(lambda: not held_by_e1(), 10, every=0.05), "the unhealthy owner released its address"
    assert agent.poll() is None, "the agent lives on"

    log = open(lab.dir / "e1-edge.log", "ab")  # noqa: SIM115
    cmd = ["ip", "netns", "exec", lab.ns("a"), sys.executable, "-m", "akacdn", "edge"]
    cmd += ["--config", str(lab.config), "--machine", "e1"]
    lab.procs["e1"] = [subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True), agent]
    log.close()
    assert poll(lambda: lab.served_by(svc1) == "e1", 30, every=0.1), f"home again\n{lab.logs()}"
    assert svc1 not in lab.sh("b", "ip", "-4", "addr", "show", "dev", lab.dev("b"))
