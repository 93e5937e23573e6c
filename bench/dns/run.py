"""DNS benchmark: dnsperf against akacdn's LLNS and TLNS, and against NSD and Knot DNS
serving equivalent static zones, all on loopback, in one run; 1 server process each,
then 2. Per run it measures the server's CPU (utime+stime of its whole process tree
from /proc) and reports answers per server CPU-second and the ratio to NSD.

    python -m bench.dns.run [--seconds 10] [--processes 1,2] [--variants plain,ecs] ...

Theory of operation:
  1. install dnsperf, nsd and knot when root and missing (system services kept stopped);
  2. write an akacdn network (bench/dns/network.py) and its signed seed maps, the
     static zones and NSD/Knot configs, and the query files, all in a temp dir;
  3. for each process count, for each group (llns: the `g` zone; tlns: the base
     domain): start akacdn's nameserver, NSD and Knot on their own 127.77.x.y
     addresses, check each answers the same questions alike, then for each query
     variant run dnsperf against each server in turn (warm-up, then the measured run);
  4. print the table; write bench/results/dns.json and dns.png;
  5. always (also on Ctrl-C or SIGTERM) stop every process it started and remove the
     temp dir.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from dnslib import QTYPE, RCODE, DNSRecord

from ..common import (
    add_common_args,
    csv_arg,
    fold_notes,
    gist,
    measure_guarded,
    stop_on_sigterm,
    write_results,
)
from . import dnsperf, network, peers, queries, report, system
from .system import say

PEER_ADDR = {("nsd", "llns"): "127.77.90.1", ("nsd", "tlns"): "127.77.90.2"}
PEER_ADDR |= {("knot", "llns"): "127.77.91.1", ("knot", "tlns"): "127.77.91.2"}
GROUPS = ("llns", "tlns")
SERVERS = ("nsd", "knot", "akacdn")


@dataclass
class Server:
    """One running server under test."""

    kind: str  # nsd | knot | akacdn
    group: str  # llns | tlns
    address: str
    processes: int  # server processes (NSD) / UDP worker threads (Knot) / akacdn processes
    pid: int
    requested: int  # the process count of this round (what the ratio to NSD compares at)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"akacdn {self.group.upper()}" if self.kind == "akacdn" else {"nsd": "NSD", "knot": "Knot"}[self.kind]


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.port: int = args.port
        self.procs = system.Procs(tmp / "logs")
        self.procs.logdir.mkdir()
        self.notes: list[str] = []
        self.rows: list[dict[str, object]] = []
        self.net_path: Path | None = None

    # setup --------------------------------------------------------------------------
    def prepare(self) -> None:
        subnets = [f"{x >> 16}.{(x >> 8) & 255}.{x & 255}.0/24" for x in queries.subnets()]
        lay = network.layout(self.port)
        self.net_path, notes = network.write_config(self.tmp / "akacdn", lay, subnets)
        self.notes += notes
        net, written = network.seed(self.net_path)
        say(f"akacdn network in {self.net_path.parent}: {len(net.customers)} customers, {written} seed maps written")
        self.net = net
        edges = [m.address for m in net.machines if m.role == "edge" and m.region == "r1"]
        tlns = [m.address for m in net.by_role("tlns")]
        llns = [m.address for m in net.by_role("llns")]
        zones = self.tmp / "zones"
        zones.mkdir()
        self.zonefiles = {
            "llns": (f"g.{net.base_domain}", zones / "g.zone"),
            "tlns": (net.base_domain, zones / "base.zone"),
        }
        self.zonefiles["llns"][1].write_text(peers.llns_zone(net.base_domain, len(net.customers), edges))
        self.zonefiles["tlns"][1].write_text(peers.tlns_zone(net.base_domain, tlns, llns))
        say("writing query files ...")
        self.queryfiles = queries.write_all(
            self.tmp / "queries", net.base_domain, len(net.customers), self.args.queries
        )

    # servers -------------------------------------------------------------------------
    def start(self, kind: str, group: str, processes: int) -> Server:
        if kind == "akacdn":
            return self._start_akacdn(group, processes)
        addr = PEER_ADDR[(kind, group)]
        self._check_free(addr)
        zone, zonefile = self.zonefiles[group]
        d = self.tmp / f"{kind}-{group}-{processes}"
        if kind == "nsd":
            argv = peers.nsd_argv(peers.nsd_conf(d, addr, self.port, zone, zonefile, processes))
        else:
            argv = peers.knot_argv(peers.knot_conf(d, addr, self.port, zone, zonefile, processes))
        name = f"{kind}-{group}-{processes}"
        p = self.procs.start(name, argv)
        self._wait_dns(name, addr, zone)
        return Server(kind, group, addr, processes, p.pid, processes)

    def _start_akacdn(self, group: str, processes: int) -> Server:
        assert self.net_path is not None
        path, got, notes = network.with_workers(self.net_path, processes)
        machine = network.LLNS_ID if group == "llns" else network.TLNS_ID
        m = self.net.machine(machine)
        self._check_free(m.address)
        exe = Path(sys.executable).with_name("akacdn")
        argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "akacdn"]
        argv += [group, "--config", str(path), "--machine", machine]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("NOTIFY_SOCKET", None)
        name = f"akacdn-{group}-{processes}"
        p = self.procs.start(name, argv, env)
        url = f"http://{m.address}:{self.net.ports.management}/readyz"
        deadline = time.monotonic() + self.args.start_timeout
        while True:
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{self.procs.log_tail(name)}")
            if _http_status(url) == 200:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{name}: {url} not 200 after {self.args.start_timeout:g}s:\n{self.procs.log_tail(name)}"
                )
            time.sleep(0.2)
        zone = self.zonefiles[group][0]
        self._wait_dns(name, m.address, zone)
        return Server("akacdn", group, m.address, got, p.pid, processes, notes)

    def _check_free(self, addr: str) -> None:
        if system.port_in_use(addr, self.port):
            raise RuntimeError(f"{addr}:{self.port} is taken (UDP): {system.who_listens(self.port)}")

    def _wait_dns(self, name: str, addr: str, zone: str) -> None:
        deadline = time.monotonic() + self.args.start_timeout
        while time.monotonic() < deadline:
            r = _ask(addr, self.port, zone, "SOA")
            if r is not None and r.header.rcode == RCODE.NOERROR and r.rr:
                return
            p = self.procs.procs.get(name)
            if p is not None and p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{self.procs.log_tail(name)}")
            time.sleep(0.2)
        raise RuntimeError(f"{name} does not answer {zone} SOA at {addr}:{self.port}:\n{self.procs.log_tail(name)}")

    def probe(self, s: Server) -> list[str]:
        """The same few questions to every server: are the answers alike in shape?"""
        base = self.net.base_domain
        problems = []
        if s.group == "llns":
            checks = [
                (f"a1.g.{base}", "A", RCODE.NOERROR, lambda r: sum(x.rtype == QTYPE.A for x in r.rr) == 2),
                (f"a1000.g.{base}", "A", RCODE.NOERROR, lambda r: sum(x.rtype == QTYPE.A for x in r.rr) == 2),
                (f"a99999.g.{base}", "A", RCODE.NXDOMAIN, lambda r: any(x.rtype == QTYPE.SOA for x in r.auth)),
                (f"zzz.g.{base}", "A", RCODE.NXDOMAIN, lambda r: True),
                (f"g.{base}", "NS", RCODE.NOERROR, lambda r: sum(x.rtype == QTYPE.NS for x in r.rr) == 8),
            ]
        else:
            checks = [
                (f"a1.g.{base}", "A", RCODE.NOERROR, lambda r: sum(x.rtype == QTYPE.NS for x in r.auth) == 8),
                (f"zzz.{base}", "A", RCODE.NXDOMAIN, lambda r: any(x.rtype == QTYPE.SOA for x in r.auth)),
                (base, "NS", RCODE.NOERROR, lambda r: sum(x.rtype == QTYPE.NS for x in r.rr) == 8),
                (base, "SOA", RCODE.NOERROR, lambda r: bool(r.rr)),
            ]
        for name, qtype, rcode, ok in checks:
            r = _ask(s.address, self.port, name, qtype)
            if r is None:
                problems.append(f"{name} {qtype}: no answer")
            elif r.header.rcode != rcode or not ok(r):
                got = RCODE.get(r.header.rcode)
                problems.append(f"{name} {qtype}: {got}, {len(r.rr)}/{len(r.auth)}/{len(r.ar)} records")
        return problems

    # measuring --------------------------------------------------------------------------
    def measure(self, s: Server, variant: str) -> dict[str, object]:
        a = self.args
        datafile = self.queryfiles[(s.group, variant)]
        out = self.tmp / f"dnsperf-{s.kind}-{s.group}-{variant}-{s.processes}.out"
        load = dnsperf.Load(a.seconds, a.clients, a.threads, a.outstanding)
        if a.warmup > 0:
            dnsperf.run(
                s.address, self.port, datafile, dnsperf.Load(a.warmup, a.clients, a.threads, a.outstanding), out, False
            )
        cpu0, _ = system.tree_cpu(s.pid)
        busy0, t0 = _machine_busy(), time.monotonic()
        r = dnsperf.run(s.address, self.port, datafile, load, out, verbose=not a.no_percentiles)
        cpu1, nprocs = system.tree_cpu(s.pid)
        busy1, t1 = _machine_busy(), time.monotonic()
        if not a.no_percentiles:
            dnsperf.add_percentiles(r, out)
        server_cpu = max(cpu1 - cpu0, 1e-9)
        row: dict[str, object] = {
            "server": s.label,
            "kind": s.kind,
            "group": s.group,
            "variant": variant,
            "processes": s.processes,
            "round": s.requested,
            "os_processes": nprocs,
            "address": s.address,
            **r.as_dict(),
            "server_cpu": round(cpu1 - cpu0, 3),
            "server_cores": round((cpu1 - cpu0) / max(t1 - t0, 1e-9), 3),
            # what else the machine did meanwhile (it is shared): busy CPU less server and dnsperf
            "other_cpu": round(max(0.0, busy1 - busy0 - (cpu1 - cpu0) - r.client_cpu), 3),
            "other_cores": round(max(0.0, busy1 - busy0 - (cpu1 - cpu0) - r.client_cpu) / max(t1 - t0, 1e-9), 2),
            "answers_per_cpu_s": round(r.completed / server_cpu, 1) if cpu1 > cpu0 else None,
            "notes": list(s.notes),
        }
        if s.kind == "akacdn" and nprocs < s.processes:
            row["processes"] = nprocs
            row["notes"].append(  # type: ignore[union-attr]
                f"config accepted [dns] workers = {s.processes}, but only {nprocs} process ran"
            )
        odd = {k: v for k, v in r.rcodes.items() if k not in ("NOERROR", "NXDOMAIN")}
        if odd and r.completed and sum(odd.values()) > 0.01 * r.completed:
            row["notes"].append(f"unexpected rcodes {odd}")  # type: ignore[union-attr]
        if r.lost > 0.01 * max(r.sent, 1):
            row["notes"].append(f"{r.lost} of {r.sent} queries lost")  # type: ignore[union-attr]
        if r.error:
            row["notes"].append(r.error)  # type: ignore[union-attr]
        p = self.procs.procs.get(f"{s.kind}-{s.group}-{s.requested}")
        if p is not None and p.poll() is not None:
            row["notes"].append(f"server exited with {p.returncode} during the run")  # type: ignore[union-attr]
        return row

    def run(self) -> None:
        a = self.args
        for processes in a.processes:
            for group in a.groups:
                servers: list[Server] = []
                try:
                    for kind in a.servers:
                        try:
                            s = self.start(kind, group, processes)
                        except RuntimeError as e:
                            self.procs.stop(f"{kind}-{group}-{processes}")  # if it is still there
                            say(f"{kind} ({group}, {processes} process(es)) not measured: {e}")
                            self.notes.append(
                                f"{kind} ({group} zone, {processes}-process round) not measured: {gist(e)}"
                            )
                            continue
                        problems = self.probe(s)
                        if problems:
                            s.notes.append("answers differ: " + "; ".join(problems))
                            say(f"{s.label} ({group}): answers differ: {'; '.join(problems)}")
                        servers.append(s)
                    for variant in a.variants:
                        for rep in range(1, a.repeat + 1):  # interleaved: the servers take turns
                            for s in servers:
                                say(
                                    f"{s.label:<12} {group} {variant:<5} {s.processes} proc: dnsperf {a.seconds:g}s"
                                    + (f" (repeat {rep}/{a.repeat})" if a.repeat > 1 else "")
                                    + " ..."
                                )
                                row = self.measure(s, variant)
                                row["repeat"] = rep
                                self.rows.append(row)
                                say("  " + report.one_line(row))
                finally:
                    for s in servers:
                        self.procs.stop(f"{s.kind}-{group}-{s.requested}")


def _ask(addr: str, port: int, name: str, qtype: str, timeout: float = 1.0) -> DNSRecord | None:
    q = DNSRecord.question(name, qtype)
    q.header.rd = 0
    try:
        return DNSRecord.parse(q.send(addr, port, timeout=timeout))
    except Exception:  # a timeout, a refused port, an unparsable reply: "no answer"
        return None


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as r:  # noqa: S310 (loopback only)
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):
        return 0


def _machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far (all cores, /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / system.CLK_TCK


def parser() -> argparse.ArgumentParser:
    root = os.geteuid() == 0
    p = argparse.ArgumentParser(prog="python -m bench.dns.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="length of each measured dnsperf run (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured dnsperf run before each (default 2)")
    p.add_argument("--processes", type=csv_arg(int), default=[1, 2], help="server process counts (default 1,2)")
    p.add_argument("--servers", type=csv_arg(str, SERVERS), default=list(SERVERS), help="default nsd,knot,akacdn")
    p.add_argument(
        "--groups", type=csv_arg(str, GROUPS), default=list(GROUPS), help="llns (g zone), tlns (base domain)"
    )
    p.add_argument("--variants", type=csv_arg(str, queries.VARIANTS), default=list(queries.VARIANTS), help="plain,ecs")
    p.add_argument("--repeat", type=int, default=1, help="measured runs per server, taking turns; median kept")
    p.add_argument(
        "--queries", type=int, default=queries.QUERIES_PER_FILE, help="queries per file, dnsperf loops over it (50000)"
    )
    p.add_argument("--clients", type=int, default=8, help="dnsperf -c: client sockets (default 8)")
    p.add_argument("--threads", type=int, default=1, help="dnsperf -T (default 1: it takes one core)")
    p.add_argument("--outstanding", type=int, default=200, help="dnsperf -q: queries in flight (default 200)")
    p.add_argument("--no-percentiles", action="store_true", help="skip dnsperf -v (no p50/p99 latency)")
    p.add_argument("--port", type=int, default=53 if root else 5300, help="DNS port (default 53 as root, else 5300)")
    add_common_args(p, "dns", "dnsperf/nsd/knot", 60.0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    stop_on_sigterm()
    if not args.no_install:
        system.install_debs()
    missing = [b for b in ("dnsperf", "nsd", "knotd") if not shutil.which(b)]
    if missing:
        print(f"bench-dns: not installed: {' '.join(missing)} (Debian: dnsperf nsd knot)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="akacdn-bench-dns-"))
    bench = Bench(args, tmp)
    started = time.time()
    info = system.machine_info()

    def steps() -> None:
        bench.prepare()
        bench.run()

    code = measure_guarded(steps, bench.procs, tmp, args.keep, say)
    if not bench.rows:
        return code or 1
    rows = report.medians(bench.rows)
    report.add_ratios(rows)
    bench.notes += fold_notes(rows, "server", lambda r: f"{r['group']}/{r['variant']}")
    doc = {
        "machine": info,
        "versions": system.versions(sys.executable),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "duration_s": round(time.time() - started, 1),
        "notes": bench.notes,
        "results": rows,
        **({"runs": bench.rows} if args.repeat > 1 else {}),
    }
    print()
    print(report.table(rows))
    for n in bench.notes:
        print(f"note: {n}")
    if code == 0:
        write_results(args.out, "dns", doc, lambda path: report.chart(rows, path, doc), say)
    return code


if __name__ == "__main__":
    sys.exit(main())
