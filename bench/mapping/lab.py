"""The mapping lab: two mapping centers, three relays and a small network (a TLNS, two
regions of an LLNS and two edges) in network namespaces on one L2 segment, with the
default timing; the centers' networks can be cut from the relays (nftables), machines
killed and restarted.

Hosts: relays r1..r3, centers m1 (mc1) and m2 (mc2), and `n`, one namespace holding
the TLNS, LLNSes and edges (each on an address of its own). Addresses 198.18.<n>.x
inside the namespaces only; everything is named with one prefix and `stop_all` (also
after a failure) stops every process and deletes every namespace. Needs root.

Used by `tests/integration/test_center_cutoff.py` and `bench/mapping`.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from akacdn.devnet.segment import Segment
from bench.dns.system import Procs

HOSTS = {"r1": 11, "r2": 12, "r3": 13, "m1": 21, "m2": 22, "n": 30}
CENTERS = {"mc1": "m1", "mc2": "m2"}
RELAYS = {"relay1": "r1", "relay2": "r2", "relay3": "r3"}
OTHERS = {  # machine -> (role, region, last octet), all in namespace n
    "tlns1": ("tlns", "", 31),
    "ra-llns": ("llns", "ra", 41),
    "rb-llns": ("llns", "rb", 42),
    "ra-e1": ("edge", "ra", 51),
    "ra-e2": ("edge", "ra", 52),
    "rb-e1": ("edge", "rb", 53),
    "rb-e2": ("edge", "rb", 54),
}
NAMESERVERS = {m: ("top" if role == "tlns" else "low") for m, (role, _, _) in OTHERS.items() if role != "edge"}
MANAGEMENT = 9400


class MappingLab:
    def __init__(self, workdir: Path, prefix: str | None = None, net: int | None = None) -> None:
        self.dir = workdir
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        self.procs = Procs(self.dir / "logs")
        self.prefix = prefix or f"akg{os.getpid() % 100000}"
        self.net = f"198.18.{net if net is not None else 200 + os.getpid() % 50}"
        self.segment = Segment(self.prefix, self.net, HOSTS)
        self.config = self.dir / "network.toml"

    # topology and config ----------------------------------------------------------------
    def ip(self, machine: str) -> str:
        if machine in CENTERS:
            return f"{self.net}.{HOSTS[CENTERS[machine]]}"
        if machine in RELAYS:
            return f"{self.net}.{HOSTS[RELAYS[machine]]}"
        return f"{self.net}.{OTHERS[machine][2]}"

    def host(self, machine: str) -> str:
        return CENTERS.get(machine) or RELAYS.get(machine) or "n"

    def write_config(self, extra: dict[str, Any] | None = None) -> Path:
        machines: list[dict[str, object]] = []
        for i, (rid, _) in enumerate(RELAYS.items()):
            machines.append({"id": rid, "role": "relay", "region": ("ra", "rb")[i % 2], "address": self.ip(rid)})
        for mc in CENTERS:
            keyfile = self.dir / f"{mc}.key"
            if not keyfile.exists():
                raw = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
                keyfile.write_text(raw.hex())
            key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(keyfile.read_text()))
            pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
            machines.append({"id": mc, "role": "mapper", "address": self.ip(mc), "public_key": pub,
                             "key_file": keyfile.name})  # fmt: skip
        for mid, (role, region, _) in OTHERS.items():
            machines.append({"id": mid, "role": role, "region": region, "address": self.ip(mid)})
        origin = {"name": "demo", "serial": 7, "hostnames": ["www.demo.test"], "origin": f"http://{self.net}.99"}
        (self.dir / "customers.toml").write_text(tomli_w.dumps({"customers": [origin]}))
        net = {
            "base_domain": "akacdn.test",
            "state_dir": str(self.dir / "state"),
            "keys": {"message_key": secrets.token_hex(32)},
            "regions": [{"id": "ra", "fallback": ["rb"]}, {"id": "rb", "fallback": ["ra"]}],
            "machines": machines,
            **(extra or {}),
        }
        self.config.write_text(tomli_w.dumps(net))
        return self.config

    def build(self) -> None:
        self.segment.build()
        for _, (_, _, n) in OTHERS.items():
            self.segment.sh("n", "ip", "addr", "add", f"{self.net}.{n}/24", "dev", self.segment.dev("n"))

    def stop_all(self) -> None:
        self.procs.stop_all()
        self.segment.remove()

    def sh(self, host: str, *cmd: str) -> str:
        return self.segment.sh(host, *cmd)

    # processes --------------------------------------------------------------------------
    def start(self, machine: str) -> None:
        role = "relay" if machine in RELAYS else "mapper" if machine in CENTERS else OTHERS[machine][0]
        argv = [sys.executable, "-m", "akacdn", role, "--config", str(self.config), "--machine", machine]
        self.procs.start(machine, ["ip", "netns", "exec", self.segment.ns(self.host(machine)), *argv])

    def start_all(self) -> None:
        for m in [*RELAYS, *CENTERS, *OTHERS]:
            self.start(m)

    def kill(self, machine: str) -> float:
        """SIGKILL the machine's process group; the wall time just before."""
        p = self.procs.procs.pop(machine)
        t = time.time()
        os.killpg(p.pid, 9)
        p.wait(10)
        return t

    # looking ----------------------------------------------------------------------------
    def get(self, machine: str, path: str) -> str:
        """GET from a machine's management port, inside its namespace ("" when no answer)."""
        try:
            return self.sh(self.host(machine), "curl", "-s", "--max-time", "2",
                           f"http://{self.ip(machine)}:{MANAGEMENT}{path}")  # fmt: skip
        except RuntimeError:
            return ""

    def metric(self, machine: str, name: str, **labels: str) -> float | None:
        pairs = [f'{k}="{v}"' for k, v in labels.items()]
        total, found = 0.0, False
        for line in self.get(machine, "/metrics").splitlines():
            head, _, value = line.rpartition(" ")
            if (head == name or head.startswith(name + "{")) and all(p in head for p in pairs):
                total, found = total + float(value), True
        return total if found else None

    def events(self, machine: str) -> list[dict[str, Any]]:
        raw = self.get(machine, "/events")
        try:
            return json.loads(raw) if raw else []
        except ValueError:
            return []

    def leader(self) -> str | None:
        leading = [mc for mc in CENTERS if mc in self.procs.procs and self.metric(mc, "akacdn_center_leader") == 1]
        return leading[0] if len(leading) == 1 else None

    def terms(self) -> dict[str, float | None]:
        """The term of the map each nameserver answers from."""
        return {m: self.metric(m, "akacdn_map_version_term", map=key) for m, key in NAMESERVERS.items()}

    def cut_off(self, mc: str, relays: list[str], loss: int = 100) -> None:
        """Drop `loss` % of what the center exchanges with these relays (nftables)."""
        addrs = ", ".join(self.ip(r) for r in relays)
        drop = "drop" if loss >= 100 else f"numgen random mod 100 < {loss} drop"
        rules = (
            "table inet akcut {\n"
            f"  chain input {{ type filter hook input priority 0; ip saddr {{ {addrs} }} {drop}; }}\n"
            f"  chain output {{ type filter hook output priority 0; ip daddr {{ {addrs} }} {drop}; }}\n"
            "}\n"
        )
        p = subprocess.run(["ip", "netns", "exec", self.segment.ns(CENTERS[mc]), "nft", "-f", "-"], input=rules,
                           text=True, capture_output=True, timeout=30)  # fmt: skip
        if p.returncode != 0:
            raise RuntimeError(f"nft: {p.stderr.strip()}")

    def heal(self, mc: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.segment.ns(CENTERS[mc]), "nft", "delete", "table", "inet",
                        "akcut"], capture_output=True, timeout=30)  # fmt: skip

    def answers(self, llns: str, name: str = "a7.g.akacdn.test") -> set[str]:
        try:
            out = self.sh("n", "dig", f"@{self.ip(llns)}", name, "A", "+short", "+norec", "+time=1", "+tries=1")
        except RuntimeError:
            return set()
        return {x for x in out.split() if x[0].isdigit()}

    def wait(self, what: str, check: Any, timeout: float, every: float = 0.2) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            got = check()
            if got:
                return got
            if time.monotonic() > deadline:
                dead = {n: p.returncode for n, p in self.procs.procs.items() if p.poll() is not None}
                raise RuntimeError(f"timed out after {timeout}s waiting for {what} (exited: {dead})")
            time.sleep(every)
