"""Failover benchmark: how long a dead edge machine's service address goes unanswered
before its buddy serves it, and what the owner's return costs, with akacdn's region agent
and with keepalived (VRRPv3) at the same heartbeat interval, in one network-namespace lab;
then a soak under CPU load that counts false takeovers.

    python -m bench.failover.run [--trials 20] [--interval 0.05] [--soak SECONDS] ...

Theory of operation (root only: network namespaces):
  0. install keepalived and stress-ng when missing (apt, keepalived's service kept stopped:
     it only ever runs as this benchmark's own process, inside the lab);
  1. the lab (bench/failover/lab.py): a bridge namespace, the victim machine (e1, service
     address .111), its buddy (e2, .112) and a client, on 198.19.N.0/24;
  2. akacdn: both machines run `akacdn edge` + `akacdn agent` (`[agent] interval` =
     --interval, misses 3, recover_after 0.5, the rest at their defaults); the probe
     (bench/failover/probe.py) runs in the client namespace and asks the victim's service
     address every 10 ms on a fresh TCP connection who serves it (X-Served-By);
  3. each trial: wait until the victim serves steadily, then kill it (SIGKILL to its
     process groups, then its link down, microseconds apart, the time taken just before on
     CLOCK_MONOTONIC, the clock every namespace and the agents share); outage = the first
     answer from the buddy minus that time; the buddy agent's /events give the steps in
     between (declared dead, address added, first gratuitous ARP). Then restore it (drop the
     address the crash left on its link, as a reboot would; link up; start its processes),
     wait until it serves steadily again and the buddy holds nothing of it, and measure the
     longest gap between two answers meanwhile (the return disruption);
  4. keepalived: the same lab, both machines run `akacdn edge` (which listens on both
     service addresses with IP_FREEBIND) and keepalived 2.x as our own foreground process
     (VRRPv3, advert_int = --interval, the victim MASTER 200 / buddy BACKUP 100 for .111 and
     the other way round for .112, preemption on); the same trials; on restore the victim's
     edge is started and ready before its keepalived;
  5. --soak S (per system): stress-ng --cpu N in each machine's namespace, the probe on both
     service addresses, S seconds; false takeovers = a live machine's address taken by the
     other (akacdn: `took`/`address_added` in the agents' /events and their add counters;
     keepalived: `Entering MASTER STATE` for the other's instance), which must be 0;
  6. print the tables; write bench/results/failover.json and failover.png;
  7. always (also on Ctrl-C or SIGTERM) stop every process it started and delete its
     namespaces (`akfo<pid>*`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.dns.run import _machine_busy
from bench.dns.system import _first_line, install_debs, machine_info

from ..common import add_common_args, measure_guarded, stop_on_sigterm, write_results
from . import analysis, lab, report
from .analysis import Answer
from .lab import BUDDY, MACHINE_ID, VICTIM, Lab

SYSTEMS = ("akacdn", "keepalived")
PROBE = Path(__file__).resolve().parent / "probe.py"
STEADY_ANSWERS = 20  # answers in a row from the owner: "it serves steadily" (~0.2 s at 10 ms)


def say(msg: str) -> None:
    print(f"bench-failover: {msg}", flush=True)


class ProbeLog:
    """The probe's output file, read as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pos = 0
        self.rest = b""
        self.answers: list[Answer] = []

    def poll(self) -> list[Answer]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return self.answers
        self.pos += len(data)
        lines = (self.rest + data).split(b"\n")
        self.rest = lines.pop()
        for raw in lines:
            a = analysis.parse_line(raw.decode("latin-1"))
            if a is not None:
                self.answers.append(a)
        return self.answers

    def recent(self, since: float) -> list[Answer]:
        """Answers completing after `since` (the list is in completion order, near enough)."""
        xs = self.poll()
        i = len(xs)
        while i > 0 and xs[i - 1].end > since - 1.0:  # 1 s of slack for out-of-order lines
            i -= 1
        return [a for a in xs[i:] if a.end > since]


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.lab: Lab = lab.new_lab(tmp)
        self.notes: list[str] = []
        self.trials: dict[str, list[dict[str, Any]]] = {s: [] for s in args.systems}
        self.soaks: dict[str, dict[str, Any]] = {}
        self.config: Path | None = None
        self.probe: ProbeLog | None = None
        self.system = ""

    # processes -------------------------------------------------------------------------
    def start_probe(self, name: str, addresses: list[str]) -> ProbeLog:
        argv = [sys.executable, str(PROBE), *addresses, "--every", str(self.args.probe_every)]
        argv += ["--connect-timeout", str(self.args.connect_timeout)]
        self.lab.stop("c", name)
        env = dict(os.environ)
        env.pop("PYTHONUNBUFFERED", None)  # the probe flushes once per round of requests
        self.lab.start("c", name, argv, env)
        return ProbeLog(self.lab.dir / "logs" / f"c-{name}.log")

    def start_machine(self, m: str) -> None:
        """Start machine `m`'s daemons for the current system: the edge and the agent
        together (the agent waits for the edge itself); or the edge, and once it is ready,
        keepalived (which has no check of its own here)."""
        self.start_edge(m)
        if self.system == "akacdn":
            self.start_agent(m)
        else:
            self.wait_ready(m, lab.MANAGEMENT_PORT, f"{m}-edge")
            self.start_keepalived(m)

    def start_machines(self) -> None:
        for m in (VICTIM, BUDDY):
            self.start_edge(m)
            if self.system == "akacdn":
                self.start_agent(m)
        if self.system == "keepalived":
            for m in (VICTIM, BUDDY):
                self.wait_ready(m, lab.MANAGEMENT_PORT, f"{m}-edge")
            for m in (VICTIM, BUDDY):
                self.start_keepalived(m)

    def start_edge(self, m: str) -> None:
        assert self.config is not None
        self.lab.start(m, "edge", lab.akacdn_argv("edge", self.config, MACHINE_ID[m]), lab.akacdn_env())

    def start_agent(self, m: str) -> None:
        assert self.config is not None
        self.lab.start(m, "agent", lab.akacdn_argv("agent", self.config, MACHINE_ID[m]), lab.akacdn_env())

    def start_keepalived(self, m: str) -> None:
        conf = lab.keepalived_config(self.lab, m, self.args.interval)
        for pid_file in conf.parent.glob("*.pid"):  # a killed keepalived leaves them: it would refuse to start
            pid_file.unlink()
        self.lab.start(m, "keepalived", lab.keepalived_argv(self.lab, m, conf))

    def wait_ready(self, m: str, port: int, key: str) -> None:
        def ready() -> bool:
            if not self.lab.alive(key):
                raise RuntimeError(f"{key} exited:\n{self.lab.log_tail(key)}")
            return self.lab.http_get(m, self.lab.host(m), port, "/readyz", timeout=1.0)[0] == 200

        self.lab.wait_for(f"{key} ready", ready, self.args.start_timeout)

    def stop_machines(self) -> None:
        for m in (VICTIM, BUDDY):
            for key in list(self.lab.groups.get(m, [])):
                self.lab.stop(m, key.split("-", 1)[1])
            self.lab.link(m, True)
            for address in (self.lab.service(VICTIM), self.lab.service(BUDDY)):
                self.lab.drop_address(m, address)

    def events(self, m: str) -> list[dict[str, Any]]:
        status, body = self.lab.http_get(m, self.lab.host(m), lab.AGENT_PORT, "/events")
        if status != 200:
            return []
        try:
            out = json.loads(body)
        except ValueError:
            return []
        return out if isinstance(out, list) else []

    def metrics(self, m: str) -> str:
        return self.lab.http_get(m, self.lab.host(m), lab.AGENT_PORT, "/metrics")[1].decode("latin-1")

    # waiting on the probe -----------------------------------------------------------------
    def wait_steady(self, address: str, who: str, after: float, timeout: float) -> float:
        """Until `who` has answered on `address` STEADY_ANSWERS times in a row (requests
        started after `after`) and (when it is the owner) nobody else holds the address."""
        assert self.probe is not None
        deadline = time.monotonic() + timeout
        other = BUDDY if who == MACHINE_ID[VICTIM] else VICTIM
        while True:
            t = analysis.steady_since(self.probe.recent(after), address, who, after, STEADY_ANSWERS)
            if t is not None and address not in self.lab.addresses(other):
                return t
            if time.monotonic() > deadline:
                last = self.probe.recent(time.monotonic() - 1.0)
                seen = sorted({a.who or f"!{a.reason}" for a in last if a.address == address})
                raise RuntimeError(
                    f"{self.system}: {address} not served steadily by {who} after {timeout:g}s "
                    f"(last second: {seen}; {other} holds {sorted(self.lab.addresses(other))})\n"
                    + "\n".join(f"--- {k}\n{self.lab.log_tail(k, 8)}" for k in self.lab.procs.procs)
                )
            time.sleep(0.05)

    def wait_first(self, address: str, who: str, after: float, timeout: float) -> Answer | None:
        assert self.probe is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            a = analysis.first_answer_from(self.probe.recent(after), address, who, after)
            if a is not None:
                return a
            time.sleep(0.02)
        return None

    # the phases ---------------------------------------------------------------------------
    def run(self) -> None:
        lb = self.lab
        lb.build()
        say(
            f"lab {lb.prefix}*: bridge, victim e1 {lb.service(VICTIM)}, buddy e2 {lb.service(BUDDY)}, client; "
            f"net {lb.net}.0/24"
        )
        self.config = lab.akacdn_config(lb, self.args.interval, self.args.misses, self.args.recover_after)
        for system in self.args.systems:
            self.system = system
            try:
                self.phase()
            except RuntimeError as e:
                say(f"{system}: stopped early: {e}")
                self.notes.append(
                    f"{system}: stopped early after {len(self.trials[system])} trial(s): {str(e).splitlines()[0]}"
                )
            finally:
                self.lab.stop("c", f"probe-{system}")
                self.lab.stop("c", f"soak-{system}")
                for m in (VICTIM, BUDDY):
                    self.lab.stop(m, "stress")
                self.stop_machines()

    def phase(self) -> None:
        a, lb, system = self.args, self.lab, self.system
        vaddr = lb.service(VICTIM)
        say(f"{system}: starting both machines")
        self.start_machines()
        self.probe = self.start_probe(f"probe-{system}", [vaddr])
        t = time.monotonic()
        self.wait_steady(vaddr, MACHINE_ID[VICTIM], t, a.start_timeout)
        if system == "akacdn":
            self.wait_ready(BUDDY, lab.AGENT_PORT, f"{BUDDY}-agent")
        for i in range(1, a.trials + 1):
            row = self.trial(i)
            self.trials[system].append(row)
            say(f"{system} trial {i}/{a.trials}: " + report.trial_line(row))
        self.lab.stop("c", f"probe-{system}")
        if a.soak > 0:
            self.soaks[system] = self.soak()

    def trial(self, i: int) -> dict[str, Any]:
        a, lb, system = self.args, self.lab, self.system
        assert self.probe is not None
        vaddr, victim, buddy = lb.service(VICTIM), MACHINE_ID[VICTIM], MACHINE_ID[BUDDY]
        time.sleep(a.settle + random.uniform(0, 2 * a.interval))  # a random phase against the beacons
        t_kill, t_killed = lb.crash(VICTIM)
        first = self.wait_first(vaddr, buddy, t_kill, a.outage_timeout)
        time.sleep(a.down)
        answers = self.probe.recent(t_kill - 2.0)
        out = analysis.outage(answers, vaddr, buddy, victim, t_kill)
        row: dict[str, Any] = {"trial": i, "t_kill": t_kill, "kill_spread": t_killed - t_kill} | out
        row["baseline"] = analysis.gaps(answers, vaddr, t_kill - 1.0, t_kill)
        if first is None:
            row["note"] = f"no answer from {buddy} within {a.outage_timeout:g}s"
        if system == "akacdn":
            row["breakdown"] = analysis.takeover_breakdown(self.events(BUDDY), t_kill, victim, vaddr)
        row["buddy_holds"] = vaddr in lb.addresses(BUDDY)
        # the machine comes back: the address the crash left on its link goes (a reboot)
        row["stale_address_dropped"] = lb.drop_address(VICTIM, vaddr)
        t_restore = time.monotonic()
        lb.link(VICTIM, True)
        self.start_machine(VICTIM)
        t_steady = self.wait_steady(vaddr, victim, t_restore, a.return_timeout)
        time.sleep(0.1)
        answers = self.probe.recent(t_restore - 2.0)
        row |= {"t_restore": t_restore, "back_after": t_steady - t_restore}
        row["return"] = analysis.gaps(answers, vaddr, t_restore, t_steady)
        if system == "akacdn":
            row["return_breakdown"] = analysis.return_breakdown(
                self.events(BUDDY), self.events(VICTIM), t_restore, vaddr
            )
        return row

    def soak(self) -> dict[str, Any]:
        a, lb, system = self.args, self.lab, self.system
        vaddr, baddr = lb.service(VICTIM), lb.service(BUDDY)
        victim, buddy = MACHINE_ID[VICTIM], MACHINE_ID[BUDDY]
        probe = self.start_probe(f"soak-{system}", [vaddr, baddr])
        self.probe = probe
        self.wait_steady(baddr, buddy, time.monotonic(), a.start_timeout)
        self.wait_steady(vaddr, victim, time.monotonic(), a.start_timeout)
        before: dict[str, Any] = {}
        if system == "akacdn":
            before = {
                m: analysis.metric(self.metrics(m), "akacdn_agent_actions_total", {"action": "add"})
                for m in (VICTIM, BUDDY)
            }
        logs = {m: lb.dir / "logs" / f"{m}-keepalived.log" for m in (VICTIM, BUDDY)}
        offsets = {m: p.stat().st_size if p.exists() else 0 for m, p in logs.items()}
        workers = a.stress_cpus or os.cpu_count() or 1
        say(f"{system}: soak {a.soak:g}s, stress-ng --cpu {workers} in each machine, probe on both addresses")
        for m in (VICTIM, BUDDY):
            lb.start(m, "stress", ["stress-ng", "--cpu", str(workers), "--timeout", f"{int(a.soak) + 60}s", "--quiet"])
        t0 = time.monotonic()
        busy0, load0 = _machine_busy(), os.getloadavg()
        died: list[str] = []
        while time.monotonic() < t0 + a.soak:
            time.sleep(min(1.0, max(0.0, t0 + a.soak - time.monotonic())))
            died = [k for k in lb.procs.procs if not lb.alive(k)]
            if died:
                break
        t1 = time.monotonic()
        busy1, load1 = _machine_busy(), os.getloadavg()
        for m in (VICTIM, BUDDY):
            lb.stop(m, "stress")
        time.sleep(0.5)
        answers = [x for x in probe.poll() if t0 <= x.start <= t1]
        res: dict[str, Any] = {
            "seconds": round(t1 - t0, 1),
            "stress_cpus_per_machine": workers,
            "machine_busy": round((busy1 - busy0) / max(t1 - t0, 1e-9) / (os.cpu_count() or 1), 3),
            "loadavg_during": [round(x, 2) for x in load1],
            "loadavg_before": [round(x, 2) for x in load0],
            "requests": len(answers),
            "failed": sum(1 for x in answers if not x.ok),
            "wrong_machine": sum(1 for x in answers if x.ok and x.who != (victim if x.address == vaddr else buddy)),
            "failed_reasons": sorted({x.reason for x in answers if not x.ok}),
        }
        if died:
            res["note"] = f"exited during the soak: {', '.join(died)}"
        if system == "akacdn":
            after = {
                m: analysis.metric(self.metrics(m), "akacdn_agent_actions_total", {"action": "add"})
                for m in (VICTIM, BUDDY)
            }
            b = analysis.false_takeovers(self.events(BUDDY), vaddr, victim, t0, t1 + 0.5)
            v = analysis.false_takeovers(self.events(VICTIM), baddr, buddy, t0, t1 + 0.5)
            res |= {
                "buddy": b,
                "victim": v,
                "adds_counted": {m: after[m] - before[m] for m in (VICTIM, BUDDY)},
                "false_takeovers": max(b["took"], b["address_added"]) + max(v["took"], v["address_added"]),
            }
        else:
            texts = {m: p.read_bytes()[offsets[m] :].decode("latin-1") if p.exists() else "" for m, p in logs.items()}
            b_master = analysis.vrrp_master_entries(texts[BUDDY], "VI_1")
            v_master = analysis.vrrp_master_entries(texts[VICTIM], "VI_2")
            res |= {"buddy_became_master_of_VI_1": b_master, "victim_became_master_of_VI_2": v_master}
            res["false_takeovers"] = b_master + v_master
        say(f"{system}: soak: {report.soak_line(res)}")
        return res


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.failover.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=20, help="kills per system (default 20)")
    p.add_argument(
        "--interval",
        type=float,
        default=0.05,
        help="akacdn [agent] interval and keepalived advert_int, seconds (default 0.05)",
    )
    p.add_argument("--misses", type=int, default=3, help="akacdn [agent] misses (default 3)")
    p.add_argument("--recover-after", type=float, default=0.5, help="akacdn [agent] recover_after (default 0.5)")
    p.add_argument(
        "--soak",
        type=float,
        default=0.0,
        help="seconds of soak under CPU load per system, counting false takeovers (default 0: none)",
    )
    p.add_argument("--stress-cpus", type=int, default=0, help="stress-ng --cpu N per machine (default: nproc)")
    p.add_argument(
        "--systems",
        type=lambda s: [x for x in s.split(",") if x],
        default=list(SYSTEMS),
        help="akacdn,keepalived (default both)",
    )
    p.add_argument("--probe-every", type=float, default=0.01, help="seconds between probe requests (default 0.01)")
    p.add_argument("--connect-timeout", type=float, default=0.05, help="probe connect timeout (default 0.05)")
    p.add_argument("--settle", type=float, default=1.0, help="seconds of steady service before each kill (default 1)")
    p.add_argument(
        "--down", type=float, default=1.0, help="seconds the victim stays dead after the takeover (default 1)"
    )
    p.add_argument("--outage-timeout", type=float, default=10.0, help="give up on a takeover after (default 10 s)")
    p.add_argument("--return-timeout", type=float, default=60.0, help="give up on a return after (default 60 s)")
    add_common_args(p, "failover", "keepalived/stress-ng", 60.0)
    return p


def versions() -> dict[str, str]:
    return {
        "keepalived": _first_line(["keepalived", "--version"], r"Keepalived v(\S+)"),
        "stress-ng": _first_line(["stress-ng", "--version"], r"version (\S+)"),
        "python": _first_line([sys.executable, "--version"]),
    }


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    bad = [s for s in args.systems if s not in SYSTEMS]
    if bad:
        print(f"bench-failover: unknown system(s) {bad}; choose from {','.join(SYSTEMS)}", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("bench-failover: needs root (network namespaces)", file=sys.stderr)
        return 2
    if not args.no_install:
        # keepalived's init script is kept from starting it (policy-rc.d): it runs only as our process
        debs = tuple(d for d, on in (("keepalived", "keepalived" in args.systems), ("stress-ng", args.soak > 0)) if on)
        install_debs(debs, {"keepalived": "keepalived"} if "keepalived" in debs else {}, who="bench-failover")
    need = ["ip"] + (["keepalived"] if "keepalived" in args.systems else []) + (["stress-ng"] if args.soak else [])
    missing = [b for b in need if not shutil.which(b)]
    if missing:
        print(f"bench-failover: not installed: {' '.join(missing)} (Debian: keepalived stress-ng)", file=sys.stderr)
        return 2
    stop_on_sigterm()
    tmp = Path(tempfile.mkdtemp(prefix="akacdn-bench-failover-"))
    bench = Bench(args, tmp)
    started = time.time()
    info = machine_info()
    say(
        f"machine: {info['nproc']} cores ({info['cpu_model']}), kernel {info['kernel']}, "
        f"load average {' '.join(f'{x:.2f}' for x in info['loadavg_at_start'])}"  # type: ignore[attr-defined]
    )
    code = measure_guarded(bench.run, bench.lab, tmp, args.keep, say)
    info["loadavg_at_end"] = os.getloadavg()
    if not any(bench.trials.values()):
        return code or 1
    summary = report.summarize(bench.trials, args)
    doc = {
        "machine": info,
        "versions": versions(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "akacdn_agent": {
            "interval": args.interval,
            "misses": args.misses,
            "recover_after": args.recover_after,
            "other": "release_grace, check_interval, garp_* at their defaults",
        },
        "duration_s": round(time.time() - started, 1),
        "notes": bench.notes,
        "summary": summary,
        "soak": bench.soaks,
        "trials": bench.trials,
    }
    print()
    print(report.header(doc))
    print()
    print(report.table(summary))
    if steps := report.breakdown_table(summary):
        print()
        print(steps)
    if bench.soaks:
        print()
        print(report.soak_table(bench.soaks))
    for n in bench.notes + report.notes(doc):
        print(f"note: {n}")
    if code == 0:
        write_results(args.out, "failover", doc, lambda path: report.chart(bench.trials, summary, path, doc), say)
    return code


if __name__ == "__main__":
    sys.exit(main())
