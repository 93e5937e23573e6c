"""Edge benchmark: wrk against cache hits (1 KiB, 100 KiB and 1 MiB objects) on akacdn's
edge, nginx proxy_cache and Varnish, all on loopback in front of one origin, in one
run, and over HTTPS (akacdn and nginx: keep-alive 1 KiB hits, and a new connection with
its TLS handshake per request); 1 server process each, then 2; plus a cold stampede
(200 clients, one new object) counting the requests that reach the origin.

    python -m bench.edge.run [--seconds 10] [--processes 1,2] [--caches nginx,varnish,akacdn] ...

Theory of operation:
  1. install nginx, varnish and wrk when root and missing (system services kept stopped);
  2. start the benchmark origin (bench/edge/origin.py, 127.78.40.1:8080), which counts
     the requests it serves per path;
  3. for each process count, for each cache: write its config in a temp dir and start it
     on its own 127.78.x.y:8080 (and :8443 for HTTPS, nginx and akacdn, one local-CA
     ECDSA P-256 certificate); per object size warm the object (first request a miss,
     the next ones must not reach the origin), run wrk (warm-up, then measured) and
     read the server's CPU (utime+stime over its process tree) before and after; the TLS
     rows likewise over https (their own object, warmed over https; before them a short
     probe through a relay on 127.78.60.1 records whether wrk's handshakes were resumed:
     bench/edge/tlsprobe.py); then a cold stampede on a path no cache has seen; stop the cache;
  4. print the tables; write bench/results/edge.json and edge.png;
  5. always (also on Ctrl-C or SIGTERM) stop every process it started and remove the
     temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from akacdn.devnet import certs
from bench.dns.run import _machine_busy

from ..common import (
    add_common_args,
    csv_arg,
    fold_notes,
    gist,
    measure_guarded,
    stop_on_sigterm,
    write_results,
)
from . import network, origin, peers, report, stampede, system, tlsprobe, wrk
from .system import say

CACHES = ("nginx", "varnish", "akacdn")
ADDR = {"nginx": network.NGINX_ADDR, "varnish": network.VARNISH_ADDR, "akacdn": network.EDGE_ADDR}
SIZES = {"1 KiB": 1024, "100 KiB": 100 * 1024, "1 MiB": 2**20}  # the default rows; any '<n> KiB|MiB' runs
# over HTTPS (nginx and akacdn: Varnish has no TLS): keep-alive 1 KiB hits, and a new
# connection, so a TLS handshake, for every request (wrk with `Connection: close`; wrk
# offers its last session again on each, so servers with tickets resume: see tlsprobe)
TLS_ROWS = {"TLS 1 KiB": ((), 1024), "TLS handshake": (("Connection: close",), 1024)}
TLS_CACHES = ("nginx", "akacdn")
NO_TLS = "no TLS"  # the table cell of a cache without an HTTPS listener (Varnish)
PORT = network.PORT
TLS_PORT = network.TLS_PORT


def object_size(label: str) -> int:
    """Bytes of a hit row's object: '<n> KiB' or '<n> MiB' (ValueError otherwise)."""
    m = re.fullmatch(r"(\d+) (KiB|MiB)", label)
    if m is None:
        raise ValueError(f"not an object size: {label!r}")
    return int(m[1]) * (2**10 if m[2] == "KiB" else 2**20)


def objects_arg(text: str) -> list[str]:
    """An argparse type: the rows to run, each a TLS row's name or an object size."""
    items = [" ".join(x.split()) for x in text.split(",") if x.strip()]
    for x in items:
        if x not in TLS_ROWS:
            try:
                size = object_size(x)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"unknown object {x!r}: '<n> KiB', '<n> MiB' or one of {', '.join(TLS_ROWS)}"
                ) from None
            if not 0 < size <= origin.MAX_SIZE:
                raise argparse.ArgumentTypeError(f"{x!r}: the origin serves 1 byte to {origin.MAX_SIZE >> 20} MiB")
    return items


@dataclass
class Cache:
    kind: str
    round: int  # the process count asked for
    processes: int  # what it runs: nginx workers, Varnish 1 (thread pools = round), akacdn edge processes
    pid: int
    name: str
    notes: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return ADDR[self.kind]


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.procs = system.Procs(tmp / "logs")
        self.procs.logdir.mkdir()
        self.notes: list[str] = []
        self.rows: list[dict[str, object]] = []
        self.stampedes: list[dict[str, object]] = []
        self.origin_url = f"http://{network.ORIGIN_ADDR}:{PORT}"
        # one local CA and certificate (ECDSA P-256) for both servers' HTTPS listeners
        names = [network.HOST, network.EDGE_ADDR, network.NGINX_ADDR]
        self.tls = certs.leaf(tmp / "tls", "bench", names)
        # the warm-up requests over https check the chain against the CA (and the IP names)
        self.client_tls = ssl.create_default_context(cafile=tmp / "tls" / "ca.pem")
        self.probes: dict[tuple[str, int], dict[str, object]] = {}  # (kind, round): the TLS probe's tally

    # origin --------------------------------------------------------------------------
    def start_origin(self) -> None:
        _check_free(network.ORIGIN_ADDR, PORT)
        argv = [sys.executable, "-m", "bench.edge.origin", "--listen", f"{network.ORIGIN_ADDR}:{PORT}"]
        argv += ["--cold-delay", str(self.args.cold_delay)]
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        self.procs.start("origin", argv, env)
        self._wait("origin", f"{self.origin_url}/_origin/stats", None)

    def origin_count(self, path: str | None = None) -> int:
        with urllib.request.urlopen(f"{self.origin_url}/_origin/stats", timeout=5) as r:  # noqa: S310 (loopback)
            stats = json.load(r)
        return int(stats["total"] if path is None else stats["requests"].get(path, 0))

    # caches --------------------------------------------------------------------------
    def start(self, kind: str, rnd: int) -> Cache:
        addr = ADDR[kind]
        _check_free(addr, PORT)
        name = f"{kind}-{rnd}"
        d = self.tmp / name
        notes: list[str] = []
        processes = rnd
        env = None
        if kind == "nginx":
            tls = (*self.tls, TLS_PORT)
            conf = peers.nginx_conf(d, addr, PORT, f"{network.ORIGIN_ADDR}:{PORT}", rnd, tls, self.args.sndbuf)
            argv = peers.nginx_argv(conf)
        elif kind == "varnish":
            vcl = peers.varnish_vcl(d, network.ORIGIN_ADDR, PORT)
            argv = peers.varnish_argv(d, addr, PORT, vcl, rnd)
            processes = 1  # one process (plus its manager); the round sets its thread pools
        else:
            path, processes, notes = network.write_config(d, self.origin_url, rnd, self.tls, self.args.sndbuf)
            exe = Path(sys.executable).with_name("akacdn")
            argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "akacdn"]
            argv += ["edge", "--config", str(path), "--machine", network.EDGE_ID]
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            env.pop("NOTIFY_SOCKET", None)
        p = self.procs.start(name, argv, env)
        if kind == "akacdn":
            self._wait(name, f"http://{addr}:{network.MANAGEMENT_PORT}/readyz", None)
        self._wait(name, f"http://{addr}:{PORT}/obj/ready-{kind}{rnd}-16", network.HOST)
        return Cache(kind, rnd, processes, p.pid, name, notes)

    def _wait(self, name: str, url: str, host: str | None) -> None:
        deadline = time.monotonic() + self.args.start_timeout
        while True:
            p = self.procs.procs.get(name)
            if p is not None and p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{self.procs.log_tail(name)}")
            if _get(url, host)[0] == 200:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{name}: {url} not 200 after {self.args.start_timeout:g}s:\n{self.procs.log_tail(name)}"
                )
            time.sleep(0.2)

    # measuring -----------------------------------------------------------------------
    def warm(self, c: Cache, path: str, size: int, https: bool = False) -> list[str]:
        """Request the object 3 times: the first may reach the origin, the others must not."""
        url = f"https://{c.address}:{TLS_PORT}{path}" if https else f"http://{c.address}:{PORT}{path}"
        problems = []
        expected = origin.body(path, size)
        for _ in range(3):
            status, body, _headers = _get(url, network.HOST, context=self.client_tls if https else None)
            if status != 200 or body != expected:
                problems.append(f"{path}: status {status}, {len(body)} bytes (expected 200, {size})")
                break
        seen = self.origin_count(path)
        if seen != 1:
            problems.append(f"{path}: the origin saw {seen} requests for 3 requests (expected 1: hits after the first)")
        return problems

    def measure(
        self, c: Cache, label: str, size: int, warm: bool = True, tls: tuple[str, ...] | None = None
    ) -> dict[str, object]:
        """One wrk run against one object; `tls`: over HTTPS, with these extra fields (the
        HTTPS rows have their own object: akacdn keys its cache by scheme, nginx here does not)."""
        a = self.args
        path = f"/obj/{c.kind}{c.round}-{size}" if tls is None else f"/obj/{c.kind}{c.round}-tls-{size}"
        row = _row_head(c, label, size) | {"path": path, "notes": list(c.notes)}
        if warm:
            row["notes"] += self.warm(c, path, size, https=tls is not None)  # type: ignore[operator]
        if tls is not None:
            row["tls_probe"] = self.probe(c, path)
        url = f"http://{c.address}:{PORT}{path}" if tls is None else f"https://{c.address}:{TLS_PORT}{path}"
        extra = tls or ()
        if a.warmup > 0:
            wrk.run(url, network.HOST, a.connections, a.warmup, a.threads, extra)
        origin0 = self.origin_count()
        cpu0, _ = system.tree_cpu(c.pid)
        busy0, t0 = _machine_busy(), time.monotonic()
        r, out = wrk.run(url, network.HOST, a.connections, a.seconds, a.threads, extra)
        cpu1, nprocs = system.tree_cpu(c.pid)
        busy1, t1 = _machine_busy(), time.monotonic()
        (self.tmp / f"wrk-{c.kind}-{c.round}-{label.replace(' ', '_')}.out").write_text(out)
        server_cpu = cpu1 - cpu0
        origin_during = self.origin_count() - origin0
        other = max(0.0, busy1 - busy0 - server_cpu - r.client_cpu)
        row |= {
            "os_processes": nprocs,
            "requests": r.requests,
            "rps": round(r.rps, 1),
            "p50": r.percentiles.get("50"),
            "p99": r.p99,
            "percentiles": r.percentiles,
            "non_2xx": r.non_2xx,
            "socket_errors": r.socket_errors,
            "server_cpu": round(server_cpu, 3),
            "server_cores": round(server_cpu / max(t1 - t0, 1e-9), 3),
            "client_cpu": r.client_cpu,
            "other_cores": round(other / max(t1 - t0, 1e-9), 2),
            "rps_per_cpu_s": round(r.requests / server_cpu, 1) if server_cpu > 0 and r.requests else None,
            "origin_requests_during_run": origin_during,
        }
        notes: list[str] = row["notes"]  # type: ignore[assignment]
        if r.error:
            notes.append(r.error)
        if r.non_2xx:
            notes.append(f"{r.non_2xx} non-2xx responses")
        if sum(r.socket_errors.values()):
            notes.append(f"socket errors {r.socket_errors}")
        if origin_during:
            notes.append(f"{origin_during} requests reached the origin during the run (not all hits)")
        if "Connection: close" in extra:
            probe = row["tls_probe"]
            notes.append(str(probe["summary"]))  # type: ignore[index]
        if c.kind == "akacdn" and nprocs < c.processes:
            row["processes"] = nprocs
            notes.append(f"config asked for {c.processes} edge processes, {nprocs} ran")
        p = self.procs.procs.get(c.name)
        if p is not None and p.poll() is not None:
            notes.append(f"server exited with {p.returncode} during the run")
        return row

    def probe(self, c: Cache, path: str) -> dict[str, object]:
        """Once per cache and round: the handshakes of a short `Connection: close` wrk run
        through a relay (was the session resumed; version, cipher, group)."""
        key = (c.kind, c.round)
        if key not in self.probes:
            try:
                _check_free(network.PROBE_ADDR, TLS_PORT)
                t = tlsprobe.probe((c.address, TLS_PORT), (network.PROBE_ADDR, TLS_PORT), network.HOST, path)
                self.probes[key] = t.as_dict() | {"summary": t.summary()}
            except Exception as e:  # noqa: BLE001 (reported, the measurement itself goes on)
                self.probes[key] = {"summary": f"TLS probe failed: {gist(e)}"}
            say(f"  {self.probes[key]['summary']}")
        return self.probes[key]

    def skipped(self, c: Cache, label: str, size: int, why: str) -> dict[str, object]:
        """The row of a measurement a cache cannot take part in (Varnish over HTTPS)."""
        return _row_head(c, label, size) | {
            "not_measured": why,
            "notes": [f"{report.LABEL[c.kind]} has no TLS (no HTTPS listener): not measured"],
            "rps_per_cpu_s": None,
            "repeat": 1,
        }

    def stampede(self, c: Cache) -> dict[str, object]:
        size = self.args.stampede_size
        path = f"/cold/stampede-{c.kind}{c.round}-{os.getpid()}-{size}"
        expected = origin.body(path, size)
        before = self.origin_count(path)
        try:
            out = asyncio.run(
                stampede.stampede(c.address, PORT, network.HOST, path, self.args.clients, expected, timeout=30.0)
            )
            res: dict[str, object] = asdict(out) | {"all_identical_and_full": out.all_identical_and_full}
        except Exception as e:  # noqa: BLE001 (reported, not fatal: the other caches still run)
            res = {"clients": self.args.clients, "error": f"{type(e).__name__}: {e}"}
        time.sleep(0.2)  # let a straggling fetch land in the origin's counter
        res |= {
            "kind": c.kind,
            "cache": report.LABEL[c.kind],
            "round": c.round,
            "path": path,
            "size": size,
            "origin_requests": self.origin_count(path) - before,
        }
        return res

    def run(self) -> None:
        """Per round: start every cache, measure them taking turns (object by object,
        repeat by repeat, so a noisy moment on the shared machine does not land on one
        cache only), then the stampede on each, then stop them."""
        a = self.args
        for rnd in a.processes:
            caches: list[Cache] = []
            try:
                for kind in a.caches:
                    try:
                        caches.append(self.start(kind, rnd))
                    except RuntimeError as e:
                        self.procs.stop(f"{kind}-{rnd}")
                        say(f"{kind} ({rnd} process(es)) not measured: {e}")
                        self.notes.append(f"{kind} ({rnd}-process round) not measured: {gist(e)}")
                rows: list[tuple[str, int, tuple[str, ...] | None]] = [
                    (label, object_size(label), None) for label in a.objects if label not in TLS_ROWS
                ]
                rows += [(label, size, extra) for label, (extra, size) in TLS_ROWS.items() if label in a.objects]
                for label, size, tls in rows:
                    for rep in range(1, a.repeat + 1):
                        for c in caches:
                            if tls is not None and c.kind not in TLS_CACHES:
                                if rep == 1:
                                    self.rows.append(self.skipped(c, label, size, NO_TLS))
                                continue
                            say(
                                f"{report.LABEL[c.kind]:<17} {label:>13} {rnd} proc: "
                                f"wrk -c{a.connections} {a.seconds:g}s"
                                + (f" (repeat {rep}/{a.repeat})" if a.repeat > 1 else "")
                                + " ..."
                            )
                            row = self.measure(c, label, size, warm=rep == 1, tls=tls)
                            row["repeat"] = rep
                            self.rows.append(row)
                            say("  " + report.one_line(row))
                if a.clients > 0:
                    for c in caches:
                        s = self.stampede(c)
                        self.stampedes.append(s)
                        say(
                            f"{report.LABEL[c.kind]:<17} stampede {rnd} proc: {s['origin_requests']} origin "
                            f"request(s), {s.get('ok', 0)}/{s['clients']} full bodies, "
                            f"{s.get('distinct_bodies', '-')} distinct"
                            + (
                                f", errors {s.get('errors') or s.get('error')}"
                                if s.get("errors") or s.get("error")
                                else ""
                            )
                        )
            finally:
                for c in caches:
                    self.procs.stop(c.name)


def _row_head(c: Cache, label: str, size: int) -> dict[str, object]:
    """What every row says of the cache and the object it is about."""
    return {
        "kind": c.kind,
        "cache": report.LABEL[c.kind],
        "object": label,
        "size": size,
        "round": c.round,
        "processes": c.processes,
        "address": c.address,
    }


def _check_free(addr: str, port: int) -> None:
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
    except OSError as e:
        raise RuntimeError(f"{addr}:{port} is taken (TCP): {e}") from None
    finally:
        s.close()


def _get(
    url: str, host: str | None, timeout: float = 5.0, context: ssl.SSLContext | None = None
) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers={"Host": host} if host else {})  # noqa: S310 (loopback only)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:  # noqa: S310
            return int(r.status), r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, b"", {}
    except (OSError, ValueError):
        return 0, b"", {}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.edge.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="length of each measured wrk run (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured wrk run before each (default 2; 0: none)")
    p.add_argument("--processes", type=csv_arg(int), default=[1, 2], help="server process counts (default 1,2)")
    p.add_argument("--caches", type=csv_arg(str, CACHES), default=list(CACHES), help="default nginx,varnish,akacdn")
    p.add_argument(
        "--objects",
        type=objects_arg,
        default=[*SIZES, *TLS_ROWS],
        help="'1 KiB','100 KiB','1 MiB' (or any '<n> KiB', '<n> MiB'),'TLS 1 KiB','TLS handshake' (default "
        "the five named)",
    )
    p.add_argument("--repeat", type=int, default=1, help="measured runs per cache, taking turns; median kept")
    p.add_argument(
        "--sndbuf",
        type=int,
        default=256 * 1024,
        help="nginx's listen sndbuf= and akacdn's [edge] sndbuf, bytes (default 262144; 0: kernel autotuning). "
        "Varnish has no such setting",
    )
    p.add_argument("--connections", type=int, default=50, help="wrk -c: open connections (default 50)")
    p.add_argument("--threads", type=int, default=1, help="wrk -t (default 1: wrk gets one core)")
    p.add_argument("--clients", type=int, default=200, help="stampede clients (default 200; 0: no stampede)")
    p.add_argument("--stampede-size", type=int, default=100 * 1024, help="stampede object bytes (default 102400)")
    p.add_argument("--cold-delay", type=float, default=0.2, help="origin delay on a cold object, s (default 0.2)")
    add_common_args(p, "edge", "nginx/varnish/wrk", 30.0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    stop_on_sigterm()
    if not args.no_install:
        system.install()
    missing = [b for b in system.BINARIES if not shutil.which(b)]
    if missing:
        print(f"bench-edge: not installed: {' '.join(missing)} (Debian: nginx varnish wrk)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="akacdn-bench-edge-"))
    bench = Bench(args, tmp)
    started = time.time()
    info = system.machine_info()

    def steps() -> None:
        bench.start_origin()
        bench.run()

    code = measure_guarded(steps, bench.procs, tmp, args.keep, say)
    if not bench.rows and not bench.stampedes:
        return code or 1
    rows = report.medians(bench.rows)
    report.add_ratios(rows)
    bench.notes += fold_notes(rows, "cache", lambda r: str(r["object"]))
    if "varnish" in args.caches:
        bench.notes.append("Varnish is one worker process (plus its manager) whatever the round: N = thread pools")
    if "nginx" in args.caches:
        bench.notes.append("nginx: proxy_cache_lock on (concurrent misses wait for one fetch; off by default)")
    if any(o in TLS_ROWS for o in args.objects):
        bench.notes.append(
            "TLS: nginx and the akacdn edge serve one ECDSA P-256 certificate (local CA), TLS 1.2/1.3 with OpenSSL's "
            "defaults (session tickets on in both); wrk sends the IP as SNI and does not verify; 'TLS handshake' "
            "rows: wrk -H 'Connection: close', a new connection and handshake per request (requests/CPU-s = "
            "handshakes/CPU-s); wrk keeps its last session per connection slot (SSL_clear) and offers it: see the "
            "TLS probe notes for how many were resumed"
        )
    doc = {
        "machine": info,
        "versions": system.versions(sys.executable),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "duration_s": round(time.time() - started, 1),
        "notes": bench.notes,
        "results": rows,
        "stampede": bench.stampedes,
        **({"runs": bench.rows} if args.repeat > 1 else {}),
    }
    print()
    print(report.table(rows))
    if bench.stampedes:
        print()
        print(report.stampede_table(bench.stampedes))
    for n in bench.notes:
        print(f"note: {n}")
    if code == 0:
        write_results(args.out, "edge", doc, lambda path: report.chart(rows, bench.stampedes, path, doc), say)
    return code


if __name__ == "__main__":
    sys.exit(main())
