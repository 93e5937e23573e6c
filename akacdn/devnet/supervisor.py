"""Start, watch and stop the devnet's processes (a small stand-in for systemd).

Each daemon runs as `python -m akacdn <role> --config ... --machine ...` in its own
session, its output in `<dir>/logs/<machine>.log`, and dies with the supervisor
(PR_SET_PDEATHSIG). Tests use the same class to kill and restart machines.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from dnslib import DNSRecord

from .. import serials
from ..config import Network, load_network
from .network import DEMO_SERIAL, Layout, Tweak, probe_delays, write_config
from .resolver import resolver_address, unbound_binary, unbound_conf

PR_SET_PDEATHSIG = 1
START_ORDER = ("relay", "mapper", "edge", "llns", "tlns")


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def http_get(url: str, timeout: float = 1.0) -> tuple[int, bytes]:
    """A tiny GET for readiness probes: (status, body); (0, b"") when unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (loopback only)
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, ValueError):
        return 0, b""


def dns_query(server: str, port: int, name: str, qtype: str = "A", timeout: float = 1.0) -> DNSRecord | None:
    """One UDP query (for probes); None when nothing parsable came back in time."""
    try:
        raw = DNSRecord.question(name, qtype).send(server, port, timeout=timeout)
        return DNSRecord.parse(raw)
    except Exception:  # timeouts, refused ports, unparsable replies: all "not answering"
        return None


class Devnet:
    def __init__(self, directory: Path, layout: Layout, resolver: bool = True, tweak: Tweak | None = None) -> None:
        self.dir = directory
        self.layout = layout
        self.config_path = write_config(directory, layout, tweak)
        self.net: Network = load_network(self.config_path)
        self.logs = directory / "logs"
        self.logs.mkdir(exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: list[tuple[float, str, int]] = []  # (when, process, exit code) of supervised restarts
        self._supervisor: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.RLock()  # procs change from the supervisor thread and the caller's
        self.unbound = unbound_binary() if resolver else None
        self.resolver = resolver_address(layout) if self.unbound else None

    # processes -------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.logs / f"{name}.log", "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("NOTIFY_SOCKET", None)
        self.procs[name] = subprocess.Popen(
            args if name == "resolver" else [sys.executable, "-m", "akacdn", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env=env,
        )
        log.close()

    def start_machine(self, machine_id: str) -> None:
        m = self.net.machine(machine_id)
        with self._lock:
            self._spawn(m.id, [m.role, "--config", str(self.config_path), "--machine", m.id])

    def start_origin(self) -> None:
        self._spawn("origin", ["origin", "--listen", f"{self.layout.origin}:{self.layout.http_port}"])

    def start_probe_responders(self) -> None:
        """The measured client networks' "resolvers" (`network.probe_delays`)."""
        for i, control in enumerate(probe_delays(self.dir, self.layout)):
            self.start_probe_responder(i, control)

    def start_probe_responder(self, i: int, control: Path | None = None) -> None:
        control = control or self.dir / "probes" / f"delays-{i}.json"
        listen = f"{self.layout.probed(i)}:{self.layout.dns_port}"
        self._spawn(f"probes{i}", ["responder", "--listen", listen, "--control", str(control)])

    def start_resolver(self, qname_minimisation: bool = True) -> None:
        assert self.unbound, "unbound is not installed"
        conf = unbound_conf(self.dir / "resolver", self.layout, self.net, qname_minimisation)
        self._spawn("resolver", [self.unbound, "-d", "-c", str(conf)])

    def start(self, timeout: float = 30.0) -> None:
        """Start every process and wait until each says it is ready."""
        self.start_origin()
        self.start_probe_responders()
        for role in START_ORDER:
            for m in self.net.by_role(role):
                self.start_machine(m.id)
        if self.unbound:
            self.start_resolver()
        self.wait_ready([m.id for m in self.net.machines], timeout)
        self.wait_converged(timeout)

    def restart_exited(self) -> list[str]:
        """Start again every process that ended by itself, as systemd's Restart=always does
        (the daemon itself decides whether it long-sleeps first). Returns their names."""
        with self._lock:
            done = []
            for name, code in self.exited().items():
                self.restarts.append((time.monotonic(), name, code))  # the new process replaces it in procs
                if name == "origin":
                    self.start_origin()
                elif name == "resolver":
                    self.start_resolver()
                elif name.startswith("probes"):
                    self.start_probe_responder(int(name[6:]))
                else:
                    self.start_machine(name)
                done.append(name)
            return done

    def supervise(self, every: float = 0.1) -> None:
        """Restart processes that end by themselves, from a thread, until `stop()`."""

        def loop() -> None:
            while not self._stopping.wait(every):
                self.restart_exited()

        self._supervisor = threading.Thread(target=loop, daemon=True, name="devnet-supervisor")
        self._supervisor.start()

    def kill(self, machine_id: str, sig: int = signal.SIGKILL) -> None:
        """End a process for good (it is not restarted; `start_machine` brings it back)."""
        with self._lock:
            p = self.procs.pop(machine_id)
        p.send_signal(sig)
        p.wait(10)

    def crash(self, machine_id: str, sig: int = signal.SIGKILL) -> None:
        """Kill a process and leave it to the supervisor (`supervise`) to restart: a roll."""
        p = self.procs[machine_id]
        p.send_signal(sig)
        p.wait(10)

    def signal(self, machine_id: str, sig: int) -> None:
        self.procs[machine_id].send_signal(sig)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM everything, then SIGKILL what is left after `grace` seconds."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(5)
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()

    def exited(self) -> dict[str, int]:
        """Processes that ended by themselves, with their exit codes."""
        with self._lock:
            return {name: p.returncode for name, p in list(self.procs.items()) if p.poll() is not None}

    # probes ----------------------------------------------------------------------
    def management(self, machine_id: str, path: str) -> tuple[int, bytes]:
        m = self.net.machine(machine_id)
        return http_get(f"http://{m.address}:{self.net.ports.management}{path}")

    def ready(self, machine_id: str) -> bool:
        return self.management(machine_id, "/readyz")[0] == 200

    def wait_ready(self, machine_ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(machine_ids)
        while waiting:
            waiting = [m for m in waiting if not self.ready(m)]
            dead = self.exited()
            if dead:
                raise RuntimeError(f"devnet processes exited: {dead}; see {self.logs}")
            if waiting and time.monotonic() > deadline:
                why = {m: json.loads(self.management(m, "/readyz")[1] or b"null") for m in waiting}
                raise TimeoutError(f"not ready after {timeout}s: {why}")
            if waiting:
                time.sleep(0.1)
        origin = f"http://{self.layout.origin}:{self.layout.http_port}/_origin/stats"
        while http_get(origin)[0] != 200:
            if time.monotonic() > deadline:
                raise TimeoutError("demo origin not answering")
            time.sleep(0.1)
        while self.resolver and dns_query(self.resolver, self.layout.dns_port, "localhost", timeout=0.3) is None:
            if time.monotonic() > deadline:
                raise TimeoutError("resolver (unbound) not answering")
            time.sleep(0.1)

    def leader(self) -> str | None:
        """The mapping center that leads now (by its metrics), if one does."""
        for m in self.net.by_role("mapper"):
            if m.id in self.procs and self.metric(m.id, "akacdn_center_leader") == 1:
                return m.id
        return None

    def wait_converged(self, timeout: float) -> None:
        """Wait until a mapping center leads, sees every machine live, and every nameserver
        holds its newest maps (so answers are stable from the first query)."""
        deadline = time.monotonic() + timeout
        want = {"edge": len(self.net.by_role("edge")), "llns": len(self.net.by_role("llns"))}
        consumers = [(m.id, "top") for m in self.net.by_role("tlns")]
        consumers += [(m.id, "low") for m in self.net.by_role("llns")]

        def converged() -> bool:
            mapper = self.leader()
            if mapper is None:
                return False
            if any(self.metric(mapper, "akacdn_live_machines", role=r) != n for r, n in want.items()):
                return False
            term = self.metric(mapper, "akacdn_center_term")
            built = {k: self.metric(mapper, "akacdn_map_built_seq", map=k) for k in ("top", "low")}
            return all(
                self.metric(m, "akacdn_map_version_seq", map=k) == built[k]
                and self.metric(m, "akacdn_map_version_term", map=k) == term
                for m, k in consumers
            )

        while not converged():
            if time.monotonic() > deadline:
                raise TimeoutError("the network did not converge on one map")
            time.sleep(0.1)

    def metric(self, machine_id: str, name: str, **labels: str) -> float:
        """Sum of a Prometheus sample on one machine (0 when absent)."""
        _, body = self.management(machine_id, "/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, labelpart = head.partition("{")
            if metric != name:
                continue
            if all(f'{k}="{v}"' in labelpart for k, v in labels.items()):
                total += float(value)
        return total


def hints(dn: Devnet) -> str:
    """The dig and curl lines to try against a running devnet."""
    lay, net = dn.layout, dn.net
    dport = "" if lay.dns_port == 53 else f" -p {lay.dns_port}"
    hport = "" if lay.http_port == 80 else f":{lay.http_port}"
    sport = "" if lay.https_port == 443 else f":{lay.https_port}"
    edge = lay.edge(1, 1)
    t1, llns = lay.tlns[0], lay.llns(1)
    demo = serials.hostname(DEMO_SERIAL, "g", net.base_domain)
    mgmt = net.ports.management
    tries = [
        (f"dig @{t1}{dport} {demo} +norec", "TLNS: referral to 8 LLNSes in 3 regions"),
        (f"dig @{llns}{dport} {demo} +norec", "LLNS: 2 edges of its region, TTL 20"),
        (f"dig @{t1}{dport} whoami.{net.base_domain} +short", "the address you asked from"),
        (f"dig @{t1}{dport} hostname.bind CH TXT +short", "which server answered"),
        (f"curl -si -H 'Host: www.demo.example' http://{edge}{hport}/", "run twice: MISS, then HIT"),
        (
            f"curl -si --cacert {dn.config_path.parent / 'tls' / 'ca.pem'} --resolve www.demo.example:"
            f"{lay.https_port}:{edge} https://www.demo.example{sport}/",
            "HTTPS: the demo customer's certificate, from the devnet's own CA",
        ),
        (f"curl -s http://{lay.origin}{hport}/_origin/stats", "what reached the origin"),
        (
            f"dig @{llns}{dport} {demo} +short -b 127.{lay.net}.51.53",
            "measured mapping: a client of 127.x.51.0/24, whose probes say r3 is nearest, gets r3's edges",
        ),
        (
            f"akacdn mapping --config {dn.config_path} --network 127.{lay.net}.51.0/24",
            f"its route, measured RTTs and loss (edit {dn.dir / 'probes'}/delays-1.json to move it)",
        ),
        (f"curl -s http://{t1}:{mgmt}/metrics | grep akacdn_dns", "Prometheus metrics"),
    ]
    if dn.resolver:
        tries[:0] = [
            (
                f"dig @{dn.resolver}{dport} www.demo.example",
                "through a real resolver (unbound): the customer's CNAME, the TLNS referral, the LLNS answer",
            ),
            (
                f"curl -si --resolve www.demo.example:{lay.http_port}:"
                f"$(dig @{dn.resolver}{dport} +short www.demo.example | tail -1) http://www.demo.example{hport}/",
                "fetch as a browser would",
            ),
        ]
    lines = ["akacdn devnet is up. Try:", ""]
    for cmd, why in tries:
        lines += [f"  # {why}", f"  {cmd}"]
    lines += ["", f"Config: {dn.config_path}", f"Logs:   {dn.logs}/", "Ctrl-C stops every process."]
    return "\n".join(lines)
