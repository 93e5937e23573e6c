"""IP takeover for the region's nameservers, in network namespaces: two LLNS machines on
one L2 segment, each running `akacdn llns` and `akacdn agent`, beside a host with the
relay, the mapping center and an edge (so the LLNS have maps), and a client. Kill an
LLNS machine: its address answers DNS from the buddy, over UDP and TCP (`hostname.bind`
names the server), with the region's edges; restore it: it answers again and the buddy
lets go.

Needs root (network namespaces, addresses, ARP); runs here and in CI."""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from .conftest import poll
from .test_region_takeover import NET, Lab

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

_labs = itertools.count()
SVC1, SVC2, EDGE = f"{NET}.121", f"{NET}.122", f"{NET}.62"


def write_config(d: Path) -> Path:
    key = Ed25519PrivateKey.generate()
    (d / "mc1.key").write_text(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex())
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    customer = {"name": "demo", "serial": 7, "hostnames": ["www.demo.test"], "origin": f"http://{NET}.63"}
    (d / "customers.toml").write_text(tomli_w.dumps({"customers": [customer]}))
    net = {
        "base_domain": "akacdn.test",
        "state_dir": str(d / "state"),
        "keys": {"message_key": secrets.token_hex(32), "purge_token": secrets.token_hex(16)},
        "timing": {"heartbeat_interval": 0.2, "dead_after": 0.8, "map_interval": 0.5, "subscribe_interval": 0.5},
        "agent": {"interval": 0.05, "misses": 3, "recover_after": 0.5, "release_grace": 0.5, "garp_refresh": 0.5},
        "regions": [{"id": "r1"}],
        "machines": [
            {"id": "relay1", "role": "relay", "address": f"{NET}.60"},
            {"id": "mc1", "role": "mapper", "address": f"{NET}.61", "public_key": pub, "key_file": "mc1.key"},
            {"id": "e0", "role": "edge", "region": "r1", "address": EDGE},
            {"id": "tlns1", "role": "tlns", "address": f"{NET}.64"},
            {"id": "n1", "role": "llns", "region": "r1", "address": SVC1, "host_address": f"{NET}.11"},
            {"id": "n2", "role": "llns", "region": "r1", "address": SVC2, "host_address": f"{NET}.12"},
        ],
    }
    path = d / "network.toml"
    path.write_text(tomli_w.dumps(net))
    return path


class NsLab(Lab):
    def dig(self, address: str, *query: str) -> str:
        """`dig +short` from the client; "" when nothing answered."""
        try:
            return self.sh("c", "dig", f"@{address}", "+short", "+time=1", "+tries=1", *query).strip()
        except RuntimeError:
            return ""

    def served_by(self, address: str, tcp: bool = False) -> str | None:  # type: ignore[override]
        """Which nameserver answered a query to `address` (its `hostname.bind`)."""
        out = self.dig(address, "hostname.bind", "CH", "TXT", *(["+tcp"] if tcp else []))
        return out.strip('"') if out and not out.startswith(";") else None


@pytest.fixture
def nslab(tmp_path: Path) -> Iterator[NsLab]:
    hosts = {"a": 11, "b": 12, "m": 60, "c": 50}
    lab = NsLab(f"akn{os.getpid() % 1000}{next(_labs)}", tmp_path, write_config(tmp_path), hosts)
    try:
        lab.build()
        lab.sh("c", "sysctl", "-qw", "net.ipv4.conf.all.arp_accept=1")
        for n in (61, 62, 63, 64):  # the mapping center, the edge and its origin, the TLNS
            lab.sh("m", "ip", "addr", "add", f"{NET}.{n}/24", "dev", lab.dev("m"))
        lab.start_machine("m", "relay1", ("relay",))
        lab.start_machine("m", "mc1", ("mapper",))
        lab.start_machine("m", "e0", ("edge",))
        lab.start_machine("a", "n1", ("llns", "agent"))
        lab.start_machine("b", "n2", ("llns", "agent"))
        yield lab
    finally:
        for machine in list(lab.procs):
            lab.kill_machine(machine)
        lab.remove()


def test_a_dead_nameservers_address_answers_from_its_buddy_and_goes_home(nslab: NsLab) -> None:
    lab = nslab
    ok = poll(lambda: lab.served_by(SVC1) == "n1" and lab.served_by(SVC2) == "n2", 60, every=0.2)
    assert ok, f"each nameserver answers on its own address\n{lab.logs()}"
    ok = poll(lambda: lab.dig(SVC1, "a7.g.akacdn.test", "A") == EDGE, 30, every=0.2)
    assert ok, f"the LLNS names the region's edge\n{lab.logs()}"
    assert lab.mac("a") in lab.client_arp(SVC1)

    lab.kill_machine("n1")  # the machine dies: its processes, and its link
    lab.sh("a", "ip", "link", "set", lab.dev("a"), "down")
    ok = poll(lambda: lab.served_by(SVC1) == "n2", 15, every=0.05)
    assert ok, f"the buddy answers on the dead nameserver's address\n{lab.logs()}"
    assert lab.served_by(SVC1, tcp=True) == "n2", "over TCP too"
    assert lab.dig(SVC1, "a7.g.akacdn.test", "A") == EDGE, "with the same answers"
    assert lab.mac("b") in lab.client_arp(SVC1), "the client's ARP cache points at the buddy"

    lab.sh("a", "ip", "link", "set", lab.dev("a"), "up")  # it comes back
    lab.start_machine("a", "n1", ("llns", "agent"))
    ok = poll(lambda: lab.served_by(SVC1) == "n1", 60, every=0.1)
    assert ok, f"the owner answers on its address again\n{lab.logs()}"
    assert SVC1 not in lab.sh("b", "ip", "-4", "addr", "show", "dev", lab.dev("b")), "the buddy let go"
    assert lab.served_by(SVC1, tcp=True) == "n1"
    assert lab.served_by(SVC2) == "n2"
