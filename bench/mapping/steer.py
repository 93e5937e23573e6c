"""Steering end to end: from a region's probes turning bad to the LLNS answering elsewhere.

    python -m bench.mapping.steer [--trials 10] [--scenarios slow,lossy] [--loss 80] ...

Theory of operation (`bench/mapping/README.md`, "Steering"): one devnet on 127.93.x.y
(DNS port 15393, HTTP port 18093: never another devnet's) with the integration test's
lab timing (`[probing] interval 1, timeout 1.5`; `[mapping] assign_interval 1, hold 3,
probe_ewma 0.5, probe_stale 6, ramp_steps 1`) and two client networks besides the
devnet's own: A = 127.93.50.0/24 and B = 127.93.51.0/24, each probed at its .1:5300,
where a probe responder answers after a delay chosen by the probing region (no netem
here): A is nearest r1 (50 ms; r2 400, r3 600), B nearest r2. A client of A
(127.93.50.53) asks r3's LLNS, so the answer shows the map's choice, not the LLNS's own
region. Per trial and scenario, on the wall clock:

  - slow: r1's delay for A becomes 0.9 s at t0; the LLNS is polled every `--poll` s until
    A is answered from r2 (t1); then the delay is restored and the return to r1 timed;
  - lossy: an nftables rule (a table of this run's own) drops `--loss` % of r1's edges'
    UDP to A's responder port (numgen random); the same; the table is deleted after. The
    rule sits on the input hook (`--hook`): a silent loss, as on a real path, which the
    prober sees only at its timeout (on the output hook the send fails at once, EPERM).

The mapping center's and the LLNS's `/events` split each time: the center decides (the
`network_moved` event), builds the map, the LLNS accepts it, the answer is seen.
Prints the table (median, p95, max per scenario and direction) and what the same would
take with the default timing (computed), writes bench/results/steering.json and
steering.png; always deletes the nftables table and stops the devnet and responders.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dnslib import QTYPE, DNSRecord

from akacdn.devnet.network import DEMO_SERIAL, Layout
from akacdn.devnet.supervisor import Devnet
from bench.dns.system import Procs, machine_info

from ..common import add_common_args, csv_arg, measure_guarded, stop_on_sigterm, write_results

LAYOUT = Layout(93, 15393, 18093)
PROBE_PORT = 5300
TABLE = f"akacdn_bench_steering_{os.getpid()}"
NETWORKS = {"A": 50, "B": 51}  # third octet of each client network
CLIENT_HOST = 53  # the asking client's last octet
# path delays (s) per probing region, as in tests/integration/test_measured_mapping.py
NEAR, MID, FAR, SLOW = 0.05, 0.4, 0.6, 0.9
DELAYS = {"A": {"r1": NEAR, "r2": MID, "r3": FAR}, "B": {"r1": MID, "r2": NEAR, "r3": FAR}}
REGION_THIRD = {"r1": 1, "r2": 2, "r3": 3}
MAX_RPS = 400.0  # every edge: load-managed, far from any target (nothing sheds)
# the lab timing, and the defaults (akacdn/config.py) the same would take, computed
LAB = {"probing": {"interval": 1.0, "timeout": 1.5, "rate": 200, "probers": 2},
       "mapping": {"assign_interval": 1.0, "hold": 3.0, "probe_ewma": 0.5, "probe_stale": 6.0, "ramp_steps": 1,
                   "max_moves": 10}}  # fmt: skip
DEFAULTS = {"probing": {"interval": 10.0, "timeout": 2.0, "probers": 2},
            "mapping": {"assign_interval": 60.0, "hold": 300.0, "probe_ewma": 0.3, "ramp_steps": 3,
                        "move_margin": 0.15, "loss_weight": 10.0}}  # fmt: skip
SCENARIOS = ("slow", "lossy")
LABELS = {"slow": "slow: r1's RTT to A 50 -> 900 ms", "lossy": "lossy: {loss}% of r1's probes to A dropped"}


def say(msg: str) -> None:
    print(f"bench-steering: {msg}", flush=True)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def prefix(name: str) -> str:
    return f"127.{LAYOUT.net}.{NETWORKS[name]}.0/24"


def client(name: str) -> str:
    return f"127.{LAYOUT.net}.{NETWORKS[name]}.{CLIENT_HOST}"


def resolver(name: str) -> str:
    return f"127.{LAYOUT.net}.{NETWORKS[name]}.1"


def tweak(network: dict[str, Any], customers: dict[str, Any]) -> None:
    """The devnet with the lab timing, A and B, load-managed edges, no rate limiting (the
    poll asks the same question from one /24 up to 40 times a second)."""
    network["probing"] = dict(LAB["probing"])
    network.setdefault("mapping", {}).update(LAB["mapping"])
    network.setdefault("dns", {})["rrl_rate"] = 0
    ours = [{"prefix": prefix(name), "probes": [f"{resolver(name)}:{PROBE_PORT}"]} for name in NETWORKS]
    # (the devnet has measured networks of its own on these prefixes: ours, probed at our responders, replace them)
    mine = {c["prefix"] for c in ours}
    network["client_networks"] = [c for c in network["client_networks"] if c["prefix"] not in mine] + ours
    for m in network["machines"]:
        if m["role"] == "edge":
            m["max_rps"] = MAX_RPS


def nft(script: str) -> None:
    r = subprocess.run(["nft", "-f", "-"], input=script, text=True, capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"nft failed: {r.stderr.strip()}")


class SteerNet:
    """The devnet, the two probe responders and the nftables table; `stop_all` ends all three."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.procs = Procs(self.dir)
        self.dn: Devnet | None = None
        self.table = False

    # responders ---------------------------------------------------------------------
    def _control(self, name: str) -> Path:
        return self.dir / f"delays-{name}.json"

    def set_delays(self, name: str, delays: dict[str, float]) -> None:
        """A responder's delay table (the file is replaced at once; it re-reads within 0.1 s)."""
        doc = {"default": FAR,
               "prefixes": {f"127.{LAYOUT.net}.{REGION_THIRD[r]}.0/24": d for r, d in delays.items()}}  # fmt: skip
        tmp = self._control(name).with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(self._control(name))

    def start(self, timeout: float, scenarios: list[str]) -> Devnet:
        if "lossy" in scenarios and (os.geteuid() != 0 or shutil.which("nft") is None):
            raise RuntimeError("the lossy scenario needs root and nft (Debian package nftables: make lab-deps)")
        for name in NETWORKS:
            self.set_delays(name, DELAYS[name])
            argv = [sys.executable, "-m", "akacdn.devnet.responder", "--listen", f"{resolver(name)}:{PROBE_PORT}",
                    "--control", str(self._control(name))]  # fmt: skip
            self.procs.start(f"responder-{name}", argv)
        self.dn = Devnet(self.dir / "devnet", LAYOUT, resolver=False, tweak=tweak)
        try:
            self.dn.start(timeout=timeout)
        except TimeoutError as e:
            raise RuntimeError(f"devnet did not start: {e}") from None
        self.dn.supervise()
        return self.dn

    # the lossy path -----------------------------------------------------------------
    def edges(self, region: str) -> list[str]:
        assert self.dn is not None
        return [m.address for m in self.dn.net.by_role("edge") if m.region == region]

    def lose(self, region: str, name: str, percent: int, hook: str) -> None:
        """Drop `percent` % of what `region`'s edges send to the responder of `name`. On the
        input hook the loss is silent, as on a real path (the prober waits out its timeout);
        on the output hook the kernel fails the send (EPERM) and the prober counts the loss
        at once."""
        sources = ", ".join(self.edges(region))
        self.table = True
        nft("\n".join([
            f"add table ip {TABLE}",
            f"add chain ip {TABLE} lose {{ type filter hook {hook} priority 0 ; }}",
            f"add rule ip {TABLE} lose ip saddr {{ {sources} }} ip daddr {resolver(name)} udp dport {PROBE_PORT} "
            f"numgen random mod 100 < {percent} drop",
        ]))  # fmt: skip

    def heal(self) -> None:
        if self.table or (shutil.which("nft") and _table_exists()):
            subprocess.run(["nft", "delete", "table", "ip", TABLE], capture_output=True)
            self.table = False

    def stop_all(self) -> None:
        self.heal()
        if self.dn is not None:
            self.dn.stop()
        self.procs.stop_all()

    # looking ------------------------------------------------------------------------
    def llns(self, machine_id: bool = False) -> str:
        """r3's LLNS: its address (or machine id)."""
        assert self.dn is not None
        m = next(m for m in self.dn.net.by_role("llns") if m.region == "r3")
        return m.id if machine_id else m.address

    def region_of(self, addresses: list[str]) -> str | None:
        assert self.dn is not None
        regions = {m.address: m.region for m in self.dn.net.by_role("edge")}
        found = {regions.get(a) for a in addresses}
        return found.pop() if len(found) == 1 else None

    def answered(self, name: str) -> str | None:
        """The region r3's LLNS answers a client of network `name` from (None: no answer)."""
        got = ask(self.llns(), LAYOUT.dns_port, client(name), qname())
        return None if not got else self.region_of(got)

    def dig_region(self, name: str) -> str | None:
        """The same asked with the real dig (-b the client's address), as a cross-check."""
        if shutil.which("dig") is None:
            return None
        argv = ["dig", f"@{self.llns()}", "-p", str(LAYOUT.dns_port), "-b", client(name), qname(), "A", "+norec",
                "+tries=1", "+time=2", "+short"]  # fmt: skip
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired:
            return None
        return self.region_of(r.stdout.split()) if r.stdout.strip() else None

    def events(self, machine: str) -> list[dict[str, Any]]:
        assert self.dn is not None
        status, body = self.dn.management(machine, "/events")
        try:
            return json.loads(body) if status == 200 else []
        except ValueError:
            return []


def _table_exists() -> bool:
    return subprocess.run(["nft", "list", "table", "ip", TABLE], capture_output=True).returncode == 0


def qname() -> str:
    return f"a{DEMO_SERIAL}.g.akacdn.test"


def ask(server: str, port: int, source: str, name: str, timeout: float = 0.5) -> list[str] | None:
    """One A query from `source` (what `dig -b source` does), RD=0; the addresses, or None
    when nothing came back in time."""
    q = DNSRecord.question(name, "A")
    q.header.rd = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        try:
            s.sendto(q.pack(), (server, port))
            deadline = time.monotonic() + timeout
            while True:
                data, _ = s.recvfrom(4096)
                r = DNSRecord.parse(data)
                if r.header.id == q.header.id:
                    return [str(rr.rdata) for rr in r.rr if rr.rtype == QTYPE.A]
                if time.monotonic() > deadline:
                    return None
        except Exception:  # a timeout, an ICMP error, a reply dnslib cannot parse: no answer
            return None


def poll_until(net: SteerNet, name: str, region: str, timeout: float, every: float) -> float | None:
    """Wall time of the first answer from `region` to a client of `name`; None at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        got = net.answered(name)
        now = time.time()
        if got == region:
            return now
        if time.monotonic() > deadline:
            return None
        time.sleep(every)


def split(net: SteerNet, leader: str, since: float, dst: str, seen: float | None) -> dict[str, float | None]:
    """The parts of a move from the daemons' events: when the center moved A to `dst`, built
    the next low map, and r3's LLNS accepted it; each as seconds since `since`."""
    moved = [e["ts"] for e in net.events(leader)
             if e["event"] == "network_moved" and e.get("network") == prefix("A") and e.get("dst") == dst
             and e["ts"] >= since - 0.01]  # fmt: skip
    out: dict[str, float | None] = {"decided": None, "built": None, "accepted": None, "seen": None}
    if not moved:
        return out
    t_moved = min(moved)
    built = [e["ts"] for e in net.events(leader) if e["event"] == "map_built" and e.get("map") == "low"
             and e["ts"] >= t_moved]  # fmt: skip
    accepted = [e["ts"] for e in net.events(net.llns(machine_id=True))
                if e["event"] == "map_accepted" and e.get("map") == "low" and e["ts"] >= t_moved]  # fmt: skip
    out["decided"] = t_moved - since
    if built:
        out["built"] = min(built) - t_moved
    if accepted:
        out["accepted"] = min(accepted) - (min(built) if built else t_moved)
        if seen is not None:
            out["seen"] = seen - min(accepted)
    return out


def trial(net: SteerNet, scenario: str, a: argparse.Namespace) -> dict[str, Any]:
    """One move away from r1 and back, timed on the wall clock."""
    assert net.dn is not None
    if poll_until(net, "A", "r1", a.timeout, 0.2) is None:
        raise RuntimeError("A is not answered from r1 before the trial")
    leader = net.dn.leader() or "mc1"
    row: dict[str, Any] = {"scenario": scenario}
    t0 = time.time()
    try:
        if scenario == "slow":
            net.set_delays("A", {**DELAYS["A"], "r1": SLOW})
        else:
            net.lose("r1", "A", a.loss, a.hook)
        t1 = poll_until(net, "A", "r2", a.timeout, a.poll)
        row["move"] = None if t1 is None else t1 - t0
        row["b_stayed"] = net.answered("B") == "r2"
        row["dig_agrees"] = net.dig_region("A") == "r2" if t1 is not None else None
    finally:
        t2 = time.time()
        if scenario == "slow":
            net.set_delays("A", DELAYS["A"])
        else:
            net.heal()
    t3 = poll_until(net, "A", "r1", a.timeout, a.poll)
    row["return"] = None if t3 is None else t3 - t2
    row["move_parts"] = split(net, leader, t0, "r2", t1)
    row["return_parts"] = split(net, leader, t2, "r1", t3)
    if t3 is None:
        raise RuntimeError(f"A did not come back to r1 within {a.timeout} s")
    time.sleep(a.settle)
    return row


# what the time is made of, computed ---------------------------------------------------
def reports_to_cross(before: float, after: float, other: float, alpha: float, margin: float, leave: bool) -> int:
    """EWMA rounds (reports) until a path whose score went from `before` to `after` crosses
    the move margin against `other`: leaving (`after` worse), score >= other / (1 - margin);
    coming back, score <= (1 - margin) * other."""
    score, k = before, 0
    while k < 1000:
        k += 1
        score += alpha * (after - score)
        if (other <= (1 - margin) * score) if leave else (score <= (1 - margin) * other):
            return k
    return k


def kth_report(k: int, probers: int, period: float) -> float:
    """Expected wait from a change to the k-th report taking it in: `probers` edges, each a
    report every `period`, at independent phases (the k-th order statistic, round by round)."""
    rounds, i = divmod(k - 1, probers)
    return rounds * period + (i + 1) * period / (probers + 1)


def model(settings: dict[str, Any], loss: int) -> dict[str, dict[str, float]]:
    """Expected move and return times (s) of both scenarios under `settings` (mean, and the
    range of the waits that are uniform: probe phase, allocation cycle, ramp)."""
    p, m = settings["probing"], settings["mapping"]
    interval, timeout, probers = p["interval"], p["timeout"], p["probers"]
    assign, hold, alpha = m["assign_interval"], m["hold"], m["probe_ewma"]
    ramp = m.get("ramp_steps", 1)
    margin, lw = m.get("move_margin", 0.15), m.get("loss_weight", 10.0) * 100
    near, mid, slow = NEAR * 1000, MID * 1000, SLOW * 1000
    out = {}
    share = loss / 100
    for scenario in SCENARIOS:
        if scenario == "slow":
            k = reports_to_cross(near, slow, mid, alpha, margin, True)
            back = reports_to_cross(slow, near, mid, alpha, margin, False)
            latency, period, got = SLOW, max(interval, SLOW), 1.0  # each report carries the change
        else:
            k = reports_to_cross(near, near + lw, mid, alpha, margin, True)  # every probe lost: loss -> 1
            back = reports_to_cross(near + lw * share, near, mid, alpha, margin, False)
            latency, period, got = timeout, max(interval, timeout), share  # a report shows a loss w.p. `share`
        detect = latency + kth_report(math.ceil(k / got), probers, period)
        ramp_wait = (ramp - 1) * assign
        move = detect + assign / 2 + ramp_wait / 2
        recover = kth_report(back, probers, interval)
        ret = max(hold, recover) + assign / 2 + ramp_wait / 2  # restored at the move: the hold runs first
        out[scenario] = {
            "reports_to_move": k,
            "reports_to_return": back,
            "detect_mean": detect,  # the change's first probes back + the reports needed
            "cycle_wait_mean": assign / 2,  # until the next allocation cycle
            "ramp_mean": ramp_wait / 2,  # a /24 (one ramp bucket) moves at one of the ramp's cycles
            "move_mean": move,
            "move_max": latency + math.ceil(math.ceil(k / got) / probers) * period + assign + ramp_wait,
            "return_mean": ret,
            "return_max": max(hold, back * period) + assign + ramp_wait,
        }
    return out


# report -------------------------------------------------------------------------------
def summary(rows: list[dict[str, Any]], scenario: str, key: str) -> dict[str, Any]:
    vals = [r[key] for r in rows if r["scenario"] == scenario and r.get(key) is not None]
    failed = sum(1 for r in rows if r["scenario"] == scenario and r.get(key) is None)
    if not vals:
        return {"trials": 0, "failed": failed}
    out: dict[str, Any] = {"trials": len(vals), "failed": failed, "median": statistics.median(vals),
                           "p95": pct(vals, 0.95), "max": max(vals)}  # fmt: skip
    for part in ("decided", "built", "accepted", "seen"):
        got = [r[f"{key}_parts"][part] for r in rows if r["scenario"] == scenario]
        got = [x for x in got if x is not None]
        out[f"{part}_median"] = statistics.median(got) if got else None
    return out


def _s(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def table(doc: dict[str, Any]) -> str:
    loss = doc["settings"]["loss"]
    out = ["", "| scenario | direction | trials | median s | p95 s | max s | failed | median parts: decided / built "
           "/ LLNS accepted / seen s |", "|:---|:---|---:|---:|---:|---:|---:|:---|"]  # fmt: skip
    for scenario, got in doc["results"].items():
        for key, label in (("move", "r1 -> r2"), ("return", "r2 -> r1")):
            s = got[key]
            parts = " / ".join(_s(s.get(f"{p}_median")) for p in ("decided", "built", "accepted", "seen"))
            out.append(f"| {LABELS[scenario].format(loss=loss)} | {label} | {s['trials']} | {_s(s.get('median'))} "
                       f"| {_s(s.get('p95'))} | {_s(s.get('max'))} | {s['failed']} | {parts} |")  # fmt: skip
    out += ["", "Computed (mean / worst case; a move's worst case not counting unlucky losses):", "",
            "| scenario | timing | reports to move | detect s | + cycle wait s | + ramp s | move mean s | move max s "
            "| reports back | return mean s | return max s |",
            "|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for timing, computed in doc["computed"].items():
        for scenario, c in computed.items():
            out.append(f"| {scenario} | {timing} | {c['reports_to_move']} | {c['detect_mean']:.1f} "
                       f"| {c['cycle_wait_mean']:.1f} | {c['ramp_mean']:.1f} | {c['move_mean']:.1f} "
                       f"| {c['move_max']:.1f} | {c['reports_to_return']} | {c['return_mean']:.1f} "
                       f"| {c['return_max']:.1f} |")  # fmt: skip
    rows = doc["trials"]
    odd = [f"trial {i + 1} ({r['scenario']}): B moved too" for i, r in enumerate(rows) if r.get("b_stayed") is False]
    odd += [f"trial {i + 1} ({r['scenario']}): dig saw another region" for i, r in enumerate(rows)
            if r.get("dig_agrees") is False]  # fmt: skip
    if odd:
        out += ["", *[f"- {x}" for x in odd]]
    return "\n".join(out)


def chart(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(s, k) for s in doc["results"] for k in ("move", "return")]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (scenario, key) in enumerate(groups):
        secs = [r[key] for r in doc["trials"] if r["scenario"] == scenario and r.get(key) is not None]
        ax.scatter([i + (j % 7 - 3) * 0.03 for j in range(len(secs))], secs, s=14, alpha=0.7)
        if secs:
            ax.hlines(statistics.median(secs), i - 0.25, i + 0.25, color="black")
    ax.set_xticks(range(len(groups)), [f"{s}\n{'r1 -> r2' if k == 'move' else 'r2 -> r1'}" for s, k in groups])
    ax.set_ylabel("seconds (wall clock)")
    ax.set_ylim(bottom=0)
    ax.set_title("Probes turn bad -> the LLNS answers elsewhere (lab timing; line: median)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.mapping.steer", description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=10, help="per scenario (default 10)")
    p.add_argument("--scenarios", type=csv_arg(str, SCENARIOS), default=list(SCENARIOS), help="slow,lossy")
    p.add_argument("--loss", type=int, default=80, help="%% of r1's probes to A dropped in the lossy one (80)")
    p.add_argument("--hook", choices=("input", "output"), default="input",
                   help="the lossy rule's hook: input (silent, as a real loss; default) or output (EPERM)")  # fmt: skip
    p.add_argument("--poll", type=float, default=0.025, help="seconds between queries to the LLNS (0.025)")
    p.add_argument("--settle", type=float, default=5.0,
                   help="seconds after a return before the next trial: past the hold, the EWMA back (5)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a move (60)")
    add_common_args(p, "steering", "nothing", 60.0)
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    if a.trials < 1 or not 0 < a.loss <= 100 or not 0.005 <= a.poll <= 1 or a.settle < 0 or a.timeout <= 0:
        raise SystemExit("--trials >= 1, --loss 1..100, --poll 0.005..1, --settle >= 0, --timeout > 0")
    stop_on_sigterm()
    tmp = Path(tempfile.mkdtemp(prefix="akacdn-bench-steering-"))
    net = SteerNet(tmp)
    doc: dict[str, Any] = {
        "machine": machine_info(),
        "args": {k: str(v) for k, v in vars(a).items()},
        "settings": {"lab": LAB, "defaults": DEFAULTS, "delays": DELAYS, "slow": SLOW, "loss": a.loss, "hook": a.hook,
                     "layout": {"net": LAYOUT.net, "dns_port": LAYOUT.dns_port, "http_port": LAYOUT.http_port}},
        "computed": {"lab": model(LAB, a.loss), "defaults": model(DEFAULTS, a.loss)},
    }  # fmt: skip

    def steps() -> None:
        say(f"starting the devnet and the probe responders in {tmp}")
        dn = net.start(a.start_timeout, a.scenarios)
        for name, region in (("A", "r1"), ("B", "r2")):
            if poll_until(net, name, region, a.timeout, 0.2) is None:
                raise RuntimeError(f"{name} is not answered from {region} after the start")
        rows: list[dict[str, Any]] = []
        doc["trials"] = rows
        for i in range(a.trials):
            for scenario in a.scenarios:
                row = trial(net, scenario, a)
                rows.append(row)
                say(f"{scenario} {i + 1}/{a.trials}: move {_s(row['move'])} s, return {_s(row['return'])} s")
        doc["results"] = {s: {k: summary(rows, s, k) for k in ("move", "return")} for s in a.scenarios}
        doc["restarts"] = [{"at": t, "process": name, "code": code} for t, name, code in dn.restarts]
        print(table(doc))
        if dn.restarts:
            say(f"devnet processes restarted during the run: {doc['restarts']}")
        write_results(a.out, "steering", doc, lambda path: chart(doc, path), say)

    return measure_guarded(steps, net, tmp, a.keep, say)


if __name__ == "__main__":
    sys.exit(main())
