"""The paper's §4.2 in network namespaces: the lead mapping center's network goes bad
(nftables cuts it off from most relays; its process lives on). Leadership moves to the
other center, the nameservers take the new leader's maps, and the old leader stops
publishing.

Needs root (network namespaces, nftables); runs here and in CI."""

from __future__ import annotations

import itertools
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from .conftest import poll
from .test_region_takeover import NET, Lab

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, nftables)")

_labs = itertools.count()
HOSTS = {"r1": 11, "r2": 12, "r3": 13, "m1": 21, "m2": 22, "n": 30}
CENTERS = {"mc1": "m1", "mc2": "m2"}
OTHERS = {  # machine -> (role, region, last octet), all in namespace n
    "tlns1": ("tlns", "", 31),
    "ra-llns": ("llns", "ra", 41),
    "rb-llns": ("llns", "rb", 42),
    "ra-e1": ("edge", "ra", 51),
    "ra-e2": ("edge", "ra", 52),
    "rb-e1": ("edge", "rb", 53),
    "rb-e2": ("edge", "rb", 54),
}


def write_config(d: Path) -> Path:
    machines: list[dict[str, object]] = []
    for i in (1, 2, 3):
        machines.append(
            {"id": f"relay{i}", "role": "relay", "region": ("ra", "rb", "ra")[i - 1], "address": f"{NET}.1{i}"}
        )
    for mc, host in CENTERS.items():
        key = Ed25519PrivateKey.generate()
        (d / f"{mc}.key").write_text(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex())
        pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
        machines.append({"id": mc, "role": "mapper", "address": f"{NET}.{HOSTS[host]}", "public_key": pub,
                         "key_file": f"{mc}.key"})  # fmt: skip
    for mid, (role, region, n) in OTHERS.items():
        machines.append({"id": mid, "role": role, "region": region, "address": f"{NET}.{n}"})
    (d / "customers.toml").write_text(tomli_w.dumps({"customers": [
        {"name": "demo", "serial": 7, "hostnames": ["www.demo.test"], "origin": f"http://{NET}.99"}]}))  # fmt: skip
    net = {
        "base_domain": "akacdn.test",
        "state_dir": str(d / "state"),
        "keys": {"message_key": secrets.token_hex(32)},
        "timing": {"heartbeat_interval": 0.5, "dead_after": 2.0, "map_interval": 0.5, "subscribe_interval": 0.5},
        "regions": [{"id": "ra", "fallback": ["rb"]}, {"id": "rb", "fallback": ["ra"]}],
        "machines": machines,
    }
    path = d / "network.toml"
    path.write_text(tomli_w.dumps(net))
    return path


class CenterLab(Lab):
    def metric(self, mc: str, name: str) -> float:
        """A sample of a center's /metrics, fetched inside its namespace (-1: no answer)."""
        url = f"http://{NET}.{HOSTS[CENTERS[mc]]}:9400/metrics"
        try:
            out = self.sh(CENTERS[mc], "curl", "-s", "--max-time", "1", url)
        except RuntimeError:
            return -1.0
        total, found = 0.0, False
        for line in out.splitlines():
            head, _, value = line.rpartition(" ")
            if head == name or head.startswith(name + "{"):
                total, found = total + float(value), True
        return total if found else -1.0

    def nameserver_terms(self) -> set[float]:
        out = set()
        for role, _, n in OTHERS.values():
            if role in ("tlns", "llns"):
                want = f'akacdn_map_version_term{{map="{"top" if role == "tlns" else "low"}"}}'
                text = self.sh("n", "curl", "-s", "--max-time", "1", f"http://{NET}.{n}:9400/metrics")
                line = next((x for x in text.splitlines() if x.startswith(want)), "")
                out.add(float(line.rpartition(" ")[2]) if line else -1.0)
        return out

    def leader(self) -> str | None:
        leading = [mc for mc in CENTERS if self.metric(mc, "akacdn_center_leader") == 1]
        return leading[0] if len(leading) == 1 else None

    def cut_off(self, mc: str, relays: list[str]) -> None:
        addrs = ", ".join(f"{NET}.{HOSTS['r' + r[-1]]}" for r in relays)
        rules = (
            "table inet cutoff {\n"
            f"  chain input {{ type filter hook input priority 0; ip saddr {{ {addrs} }} drop; }}\n"
            f"  chain output {{ type filter hook output priority 0; ip daddr {{ {addrs} }} drop; }}\n"
            "}\n"
        )
        p = subprocess.run(["ip", "netns", "exec", self.ns(CENTERS[mc]), "nft", "-f", "-"], input=rules, text=True,
                           capture_output=True, timeout=30)  # fmt: skip
        assert p.returncode == 0, p.stderr


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[CenterLab]:
    lab = CenterLab(f"akc{os.getpid() % 1000}{next(_labs)}", tmp_path, write_config(tmp_path), HOSTS)
    try:
        lab.build()
        for _, (_, _, n) in OTHERS.items():
            lab.sh("n", "ip", "addr", "add", f"{NET}.{n}/24", "dev", lab.dev("n"))
        for i in (1, 2, 3):
            lab.start_machine(f"r{i}", f"relay{i}", ("relay",))
        for mc, host in CENTERS.items():
            lab.start_machine(host, mc, ("mapper",))
        for mid, (role, _, _) in OTHERS.items():
            lab.start_machine("n", mid, (role,))
        yield lab
    finally:
        for machine in list(lab.procs):
            lab.kill_machine(machine)
        lab.remove()


def test_a_leader_cut_off_from_most_relays_hands_over_and_stops_publishing(lab: CenterLab) -> None:
    assert poll(lambda: lab.leader(), 60, every=0.5), f"a leader\n{lab.logs()}"
    old = lab.leader()
    assert old is not None
    other = next(mc for mc in CENTERS if mc != old)
    term = lab.metric(old, "akacdn_center_term")
    assert poll(lambda: lab.nameserver_terms() == {term}, 30, every=0.5), f"the nameservers on {old}'s maps"

    lab.cut_off(old, ["relay1", "relay2"])  # its network loses two of the three relays
    moved = poll(lambda: lab.metric(other, "akacdn_center_leader") == 1, 60, every=0.5)
    assert moved, f"{other} to lead\n{lab.logs()}"
    new = lab.metric(other, "akacdn_center_term")
    assert new > term
    assert poll(lambda: lab.metric(old, "akacdn_center_leader") == 0, 30, every=0.5), f"{old} to resign"
    assert poll(lambda: lab.nameserver_terms() == {new}, 30, every=0.5), "the nameservers on the new leader's maps"

    # the old leader publishes nothing any more (its process lives on, and hears relay3)
    published = lab.metric(old, "akacdn_maps_published_total")
    time.sleep(3.0)  # an observation window: several map intervals
    assert lab.metric(old, "akacdn_maps_published_total") == published
    events = json.loads(lab.sh(CENTERS[old], "curl", "-s", f"http://{NET}.{HOSTS[CENTERS[old]]}:9400/events"))
    assert any(e["event"] == "election_resigned" for e in events), events
