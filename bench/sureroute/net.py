"""The SureRoute benchmark's devnet and its peering cut (loopback only).

One devnet on 127.92.x.y with its own DNS and HTTP ports (never another devnet's: `make
run` is 127.0, bench/dns 127.77, bench/edge 127.78, bench/recovery 127.91, the
integration tests 127.100 and up), four customers on the demo origin:

- `demo` (serial 123): SureRoute on, test object `/css/site.css`;
- `plain` (201): the same origin without SureRoute;
- `flat` (202) and `tiered` (203, `parent_regions = ["r3"]`): the offload part.

The "peering" between region r1 and the origin is cut with an nftables rule in a table
of this process's own (`akacdn_bench_sureroute_<pid>`): what r1's edges send from their
own addresses to the origin's HTTP port is dropped. `heal` deletes the table; `stop_all`
does it too, so no run leaves it behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from akacdn.devnet.network import DEMO_HOST, Layout
from akacdn.devnet.supervisor import Devnet

LAYOUT = Layout(92, 15392, 18092)
TEST_OBJECT = "/css/site.css"
PLAIN_HOST = "www.plain.example"
FLAT_HOST = "www.flat.example"
TIERED_HOST = "www.tiered.example"
HOSTS = {"demo": DEMO_HOST, "plain": PLAIN_HOST, "flat": FLAT_HOST, "tiered": TIERED_HOST}
PARENT_REGION = "r3"
TABLE = f"akacdn_bench_sureroute_{os.getpid()}"

# [sureroute] timings of the run (the options' defaults)
TIMINGS = {"interval": 5.0, "after_failure": 1.0, "retry_failed": 3.0, "race_timeout": 5.0,
           "connect_timeout": 1.0, "head_timeout": 2.0}  # fmt: skip


def tweaker(timings: dict[str, float]) -> Any:
    """The devnet tweak: the `[sureroute]` timings and the four customers."""

    def tweak(network: dict[str, Any], customers: dict[str, Any]) -> None:
        network["sureroute"] = dict(timings)
        demo = customers["customers"][0]
        demo["sureroute"] = True
        demo["sureroute_test_object"] = TEST_OBJECT
        origin = demo["origin"]
        for name, serial in (("plain", 201), ("flat", 202), ("tiered", 203)):
            c: dict[str, Any] = {"name": name, "serial": serial, "hostnames": [HOSTS[name]], "origin": origin}
            if name == "tiered":
                c["parent_regions"] = [PARENT_REGION]
            customers["customers"].append(c)

    return tweak


def nft(script: str) -> None:
    r = subprocess.run(["nft", "-f", "-"], input=script, text=True, capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"nft failed: {r.stderr.strip()}")


def table_exists() -> bool:
    if shutil.which("nft") is None:
        return False
    r = subprocess.run(["nft", "list", "table", "ip", TABLE], capture_output=True)
    return r.returncode == 0


class BenchNet:
    """The devnet, made on `start` (so `stop_all` is safe whenever `measure_guarded` calls it)."""

    def __init__(self, directory: Path, timings: dict[str, float]) -> None:
        self.directory = directory
        self.timings = timings
        self.dn: Devnet | None = None

    def start(self, timeout: float) -> Devnet:
        if os.geteuid() != 0 or shutil.which("nft") is None:
            raise RuntimeError("the peering cut needs root and nft (Debian package nftables: make lab-deps)")
        self.dn = Devnet(self.directory, LAYOUT, resolver=False, tweak=tweaker(self.timings))
        try:
            self.dn.start(timeout=timeout)
        except TimeoutError as e:
            raise RuntimeError(f"devnet did not start: {e}") from None
        return self.dn

    # the peering ------------------------------------------------------------------------
    def edges(self, region: str) -> list[str]:
        assert self.dn is not None
        return [m.id for m in self.dn.net.by_role("edge") if m.region == region]

    def address(self, machine: str) -> str:
        assert self.dn is not None
        return self.dn.net.machine(machine).address

    def region_of(self) -> dict[str, str]:
        """Machine id -> region, for reading Via chains."""
        assert self.dn is not None
        return {m.id: m.region for m in self.dn.net.machines if m.region}

    def cut(self, region: str) -> None:
        """Drop what `region`'s edges send to the origin's HTTP port (its own table)."""
        assert self.dn is not None
        sources = ", ".join(self.address(e) for e in self.edges(region))
        nft("\n".join([
            f"add table ip {TABLE}",
            f"add chain ip {TABLE} out {{ type filter hook output priority 0 ; }}",
            f"add rule ip {TABLE} out ip saddr {{ {sources} }} ip daddr {LAYOUT.origin} "
            f"tcp dport {LAYOUT.http_port} drop",
        ]))  # fmt: skip

    def heal(self) -> None:
        """Remove the cut's table, if it is there."""
        if table_exists():
            subprocess.run(["nft", "delete", "table", "ip", TABLE], capture_output=True)

    def origin_counts(self) -> dict[str, int]:
        """The demo origin's requests per path+query."""
        url = f"http://{LAYOUT.origin}:{LAYOUT.http_port}/_origin/stats"
        with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 (loopback only)
            return dict(json.loads(r.read())["requests"])

    def stop_all(self) -> None:
        self.heal()
        if self.dn is not None:
            self.dn.stop()
