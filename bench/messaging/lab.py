"""The messaging lab: relays, a publisher and subscribers, each in its own network
namespace on one L2 segment (`akacdn.devnet.segment`), with random loss on every relay
link injected by nftables (`numgen random`; this kernel has no netem).

Hosts: relays `a`, `b`, `c` (regions r1, r2, r3), the publisher `p`, subscribers
`s1..sN`, and `x` (the test's injector of forged and replayed datagrams). Addresses are
`198.18.<n>.<host>` inside the namespaces only; names carry one unique prefix, and
`stop_all` (also after a failure) stops every process this started and deletes every
namespace it made. Needs root.

Loss: `set_loss(pct)` puts a table in every relay's namespace that drops `pct` % of the
messaging datagrams coming in and `pct` % of those going out: each hop of a path
publisher -> relay -> subscriber loses independently (so about 2 x pct end to end on
one path), NACKs and repairs included.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from akacdn.devnet.segment import Segment
from bench.dns.system import Procs

from .network import PUBLISHER, Layout, write_config

RELAYS = {"a": ("relay1", "r1"), "b": ("relay2", "r2"), "c": ("relay3", "r3")}
PORT = 7400
MANAGEMENT = 9400


def _hosts(subscribers: int) -> dict[str, int]:
    hosts = {"a": 11, "b": 12, "c": 13, "p": 20, "x": 30}
    hosts.update({f"s{i}": 100 + i for i in range(1, subscribers + 1)})
    return hosts


@dataclass
class SubResult:
    name: str
    received: int  # distinct messages, intact
    damaged: int
    twice: int  # messages delivered more than once (must be 0)
    recovered: int
    latencies: list[float] = field(repr=False, default_factory=list)


class MessagingLab:
    def __init__(self, workdir: Path, subscribers: int = 10, prefix: str | None = None, net: int | None = None):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        self.procs = Procs(self.dir / "logs")
        self.subs = [f"s{i}" for i in range(1, subscribers + 1)]
        self.prefix = prefix or f"akm{os.getpid() % 100000}"
        n = net if net is not None else 100 + os.getpid() % 100
        self.net = f"198.18.{n}"
        self.segment = Segment(self.prefix, self.net, _hosts(subscribers))
        self.config: Path | None = None
        self.run_no = 0
        self.sub_out: dict[str, Path] = {}  # each subscriber's file of the current run
        self.defaults: dict[str, Any] = {}  # [messaging] settings every run starts from

    # topology ---------------------------------------------------------------------------
    def ip(self, host: str) -> str:
        return self.segment.address(host)

    def build(self) -> None:
        self.segment.build()

    def stop_all(self) -> None:
        self.procs.stop_all()
        self.segment.remove()

    def sh(self, host: str, *cmd: str) -> str:
        return self.segment.sh(host, *cmd)

    def configure(self, **messaging: Any) -> Path:
        """Write the network config (`[messaging]` overrides: paths, nack, ...)."""
        lay = Layout(
            relays={rid: (region, self.ip(h)) for h, (rid, region) in RELAYS.items()},
            publisher=self.ip("p"),
            subscribers={s: self.ip(s) for s in self.subs},
            messaging=messaging,
        )
        key = None
        if self.config is not None:  # keep the key across runs (nothing depends on it)
            import tomllib

            key = tomllib.loads(self.config.read_text())["keys"]["message_key"]
        self.config = write_config(self.dir / "config", lay, key)
        return self.config

    def set_loss(self, percent: float) -> None:
        """`percent` % of messaging datagrams into and out of every relay are dropped."""
        per_mille = int(round(percent * 10))
        for host in RELAYS:
            subprocess.run(["ip", "netns", "exec", self.segment.ns(host), "nft", "delete", "table", "inet", "aklab"],
                           capture_output=True)  # fmt: skip
            if per_mille <= 0:
                continue
            rules = (
                "table inet aklab {\n"
                f"  chain input {{ type filter hook input priority 0; udp dport {PORT} "
                f"numgen random mod 1000 < {per_mille} counter drop; }}\n"
                f"  chain output {{ type filter hook output priority 0; udp sport {PORT} "
                f"numgen random mod 1000 < {per_mille} counter drop; }}\n"
                "}\n"
            )
            p = subprocess.run(["ip", "netns", "exec", self.segment.ns(host), "nft", "-f", "-"], input=rules,
                               capture_output=True, text=True, timeout=30)  # fmt: skip
            if p.returncode != 0:
                raise RuntimeError(f"nft in {host}: {p.stderr.strip()}")

    def dropped(self) -> int:
        """Datagrams the loss rules dropped so far (all relays)."""
        total = 0
        for host in RELAYS:
            p = subprocess.run(["ip", "netns", "exec", self.segment.ns(host), "nft", "-j", "list", "table", "inet",
                                "aklab"], capture_output=True, text=True)  # fmt: skip
            if p.returncode == 0:
                for item in json.loads(p.stdout).get("nftables", []):
                    for expr in item.get("rule", {}).get("expr", []):
                        if "counter" in expr:
                            total += expr["counter"]["packets"]
        return total

    # processes --------------------------------------------------------------------------
    def start(self, host: str, name: str, argv: list[str]) -> None:
        self.procs.start(name, ["ip", "netns", "exec", self.segment.ns(host), *argv])

    def start_relays(self) -> None:
        for host, (rid, _) in RELAYS.items():
            self.start(host, rid, [sys.executable, "-m", "akacdn", "relay", "--config", str(self.config), "--machine",
                                   rid])  # fmt: skip

    def stop_relay(self, rid: str) -> None:
        self.procs.stop(rid, grace=0.1)

    def start_subscribers(self) -> None:
        self.run_no += 1
        for s in self.subs:
            out = self.sub_out[s] = self.dir / f"{s}.{self.run_no}.jsonl"
            self.start(s, s, [sys.executable, "-m", "bench.messaging.node", "sub", "--config", str(self.config),
                              "--machine", s, "--out", str(out)])  # fmt: skip

    def stop_subscribers(self) -> None:
        for s in self.subs:
            self.procs.stop(s)

    def metric(self, host: str, address: str, name: str, **labels: str) -> float:
        """The sum of a Prometheus metric's samples with these labels, from a process's
        /metrics (fetched with curl inside its namespace); 0 when unreachable."""
        out = subprocess.run(["ip", "netns", "exec", self.segment.ns(host), "curl", "-s", "--max-time", "2",
                              f"http://{address}:{MANAGEMENT}/metrics"], capture_output=True, text=True,
                             timeout=20).stdout  # fmt: skip
        pairs = [f'{k}="{v}"' for k, v in labels.items()]
        total = 0.0
        for line in out.splitlines():
            head, _, value = line.rpartition(" ")
            if (head == name or head.startswith(name + "{")) and all(p in head for p in pairs):
                total += float(value)
        return total

    def wait_subscribed(self, relays: list[str] | None = None, timeout: float = 30.0) -> None:
        """Until every relay lists every subscriber (and the publisher is not needed)."""
        deadline = time.monotonic() + timeout
        for host, (rid, _) in RELAYS.items():
            if relays is not None and rid not in relays:
                continue
            while self.metric(host, self.ip(host), "akacdn_relay_subscribers") < len(self.subs):
                dead = [n for n, p in self.procs.procs.items() if p.poll() is not None]
                if dead:
                    raise RuntimeError(f"lab processes exited: {dead}: {self.procs.log_tail(dead[0])}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{rid} did not see every subscriber in {timeout}s")
                time.sleep(0.2)

    def publish(
        self,
        count: int,
        rate: float,
        size: int = 300,
        big_size: int = 200 * 1024,
        big_every: int = 0,
        linger: float = 5.0,
        kill_relay: tuple[str, float] | None = None,
        dump: Path | None = None,
        dump_index: int = 0,
    ) -> Path:
        """Run the publisher to the end (its NACK answers included); optionally stop one
        relay `(relay id, seconds after the first message)` mid-stream. Returns its log."""  # fmt: skip
        out = self.dir / f"pub.{self.run_no}.jsonl"
        argv = [sys.executable, "-m", "bench.messaging.node", "pub", "--config", str(self.config), "--machine",
                PUBLISHER, "--out", str(out), "--count", str(count), "--rate", str(rate), "--size", str(size),
                "--big-size", str(big_size), "--big-every", str(big_every), "--linger", str(linger),
                "--start-after", "1.0"]  # fmt: skip
        if dump is not None:
            argv += ["--dump", str(dump), "--dump-index", str(dump_index)]
        self.start("p", "pub", argv)
        proc = self.procs.procs["pub"]
        begun = time.monotonic()
        killed = False
        limit = 1.0 + count / rate + linger + 120
        while proc.poll() is None:
            if kill_relay and not killed and time.monotonic() - begun >= 1.0 + kill_relay[1]:
                self.stop_relay(kill_relay[0])
                killed = True
            if time.monotonic() - begun > limit:
                raise RuntimeError("the publisher did not finish")
            time.sleep(0.05)
        if proc.returncode != 0:
            raise RuntimeError(f"publisher exited {proc.returncode}: {self.procs.log_tail('pub')}")
        self.procs.procs.pop("pub", None)
        return out

    def results(self, count: int) -> list[SubResult]:
        """Per subscriber: what its file says it received (read after it stopped)."""
        out = []
        for s in self.subs:
            seen: dict[int, int] = {}
            damaged = recovered = 0
            lat = []
            path = self.dir / f"{s}.{self.run_no}.jsonl"
            for line in path.read_text().splitlines() if path.exists() else []:
                r = json.loads(line)
                if not r["ok"]:
                    damaged += 1
                    continue
                seen[r["i"]] = seen.get(r["i"], 0) + 1
                recovered += r["rec"]
                lat.append(r["lat"])
            out.append(SubResult(s, sum(1 for i in seen if 0 <= i < count), damaged,
                                 sum(1 for n in seen.values() if n > 1), recovered, lat))  # fmt: skip
        return out

    # injection --------------------------------------------------------------------------
    def inject(self, datagrams: list[bytes], targets: list[str]) -> None:
        """Send raw datagrams from host `x` to each target address's messaging port."""
        blob = self.dir / "inject.bin"
        blob.write_bytes(b"".join(struct.pack(">I", len(d)) + d for d in datagrams))
        code = (
            "import socket,struct,sys\n"
            "data=open(sys.argv[1],'rb').read();items=[];i=0\n"
            "while i<len(data):\n (n,)=struct.unpack_from('>I',data,i);items.append(data[i+4:i+4+n]);i+=4+n\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            f"for t in sys.argv[2:]:\n for d in items: s.sendto(d,(t,{PORT}))\n"
        )
        self.sh("x", sys.executable, "-c", code, str(blob), *targets)


def read_dump(path: Path) -> list[bytes]:
    data, out, i = path.read_bytes(), [], 0
    while i < len(data):
        (n,) = struct.unpack_from(">I", data, i)
        out.append(data[i + 4 : i + 4 + n])
        i += 4 + n
    return out


def tools_missing() -> list[str]:
    return [t for t in ("ip", "nft") if not shutil.which(t)]
