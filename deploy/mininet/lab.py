#!/usr/bin/env python3
"""The akacdn lab: the paper's world in Mininet, with the akacdn daemons running in it.

Run as root (with the system python3 or the project venv; the script re-executes itself
with ``<repo>/.venv/bin/python`` when akacdn's dependencies are not importable)::

    python3 deploy/mininet/lab.py [--prefix akl0] [--dir /tmp/akacdn-lab-akl0]
        [--regions 2] [--edges 3] [--client-nets 2] [--clients-per-net 2]
        [--check] [--no-agents] [--cleanup] [-v]

It builds the topology of ``topo.py`` (Linux bridges in their own namespaces, routers,
198.18.0.0/15), writes the lab's config (``network.py``), starts every daemon in its host
(``host.popen([python, -m, akacdn, <role>, --config, ..., --machine, <host>])``), the
demo origin (``akacdn origin``) in ``origin`` and unbound in ``resolver``, waits until
the lab works end to end and drops you into the Mininet CLI (``--check``: stop instead,
exit 0 when it worked).  Extra CLI commands: ``status``, ``hints``, ``fail <machine>
[kill|link]``, ``restore <machine>``, ``failregion <rN> [kill|link]``, ``restoreregion
<rN>``, ``drop <net> <net> [percent]``, ``heal <net> <net>|all``; ``py`` sees ``lab``.

Edges' service addresses: from the command line an ``akacdn agent`` runs next to every
edge (``start_lab(agents=True)``) and holds and moves them (IP takeover): a machine's
``kill`` kills its agent too, and its service address moves to a buddy. With
``--no-agents`` (and ``start_lab()``'s default, used by tests/lab/test_lab.py) the lab
puts each edge's service address on its own host's interface itself
(``Lab.add_service_addresses``) and nothing moves it. ``--llns 2`` gives each region two
LLNS machines, which cover each other the same way (service address = host + 100).

Ready means, in this order: every daemon's management ``/readyz`` (port 9400, asked
from inside its host; agents: port 7500) answers 200; the origin answers; (agents: every
agent sees its peers alive and holds its own address;) every mapping center hears every
edge and LLNS; every LLNS answers each client network with two edges of that network's
region; unbound (started only now, so it caches nothing from a half-started network)
answers ``www.demo.example`` to a host of every client network with edge service
addresses of its region; and every edge service address answers HTTP 200 for
``Host: www.demo.example`` to a client host.

The same code drives the tests (``tests/lab``)::

    lab = start_lab(prefix="akt1", regions=2, edges_per_region=3, client_nets=2)
    try:
        fail_machine(lab, "r1e1")            # SIGKILL its daemons ("link": cable pulled)
        drop_path(lab, "c1", "r1", 100)      # nftables on c1's router, both directions
        heal_all(lab)                        # undo every recorded fault, wait until healed
    finally:
        lab.stop()

Every failure helper returns the ``Fault`` it recorded in ``lab.faults`` (what it did,
and how to undo it); ``restore_machine``/``restore_region``/``heal_path``/``heal_all``
undo them, ``lab.stop()`` undoes the cheap ones and then removes everything: daemons
(SIGTERM, then SIGKILL), the Mininet net and its state file.  Daemons also die with the
lab process (PR_SET_PDEATHSIG).  After a crash: ``python3 deploy/mininet/lab.py --prefix
akl0 --cleanup`` (never ``mn -c``).  Files: ``<dir>/config`` (network.toml,
customers.toml, keys), ``<dir>/state`` (state_dir), ``<dir>/logs/<host>.log``,
``<dir>/resolver`` (unbound.conf).
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
VENV_PYTHON = os.path.join(REPO, ".venv", "bin", "python")


def _reexec_in_venv() -> None:
    """Run under the project venv when akacdn's dependencies are missing (system python3)."""
    try:
        import msgspec  # noqa: F401
        import tomli_w  # noqa: F401
    except ModuleNotFoundError:
        if os.path.exists(VENV_PYTHON) and not os.environ.get("AKACDN_LAB_REEXEC"):
            os.environ["AKACDN_LAB_REEXEC"] = "1"
            os.execv(VENV_PYTHON, [VENV_PYTHON, os.path.abspath(__file__), *sys.argv[1:]])
        raise SystemExit(f"akacdn's Python packages are missing: run `make venv` (expected {VENV_PYTHON})") from None


if __name__ == "__main__":
    _reexec_in_venv()

if HERE not in sys.path:
    sys.path.insert(0, HERE)
if REPO not in sys.path:
    sys.path.insert(1, REPO)

import ctypes  # noqa: E402
import ipaddress  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import network as labnet  # noqa: E402
import topo  # noqa: E402

from akacdn.config import Network, load_network  # noqa: E402
from akacdn.devnet.network import BASE_DOMAIN, DEMO_HOST, DEMO_SERIAL  # noqa: E402

SERIAL_NAME = f"a{DEMO_SERIAL}.g.{BASE_DOMAIN}"
PR_SET_PDEATHSIG = 1
_IPV4 = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def _say(*_args: object) -> None:
    pass


class _Wrong(str):
    """A failed check's reason: falsy, so a poll goes on, and shown when it times out."""

    def __bool__(self) -> bool:
        return False


@dataclass
class Fault:
    """One recorded failure: what was done (``detail``: the exact action) and its undo."""

    kind: str  # kill | link | uplink | path
    target: str  # machine/host id, region id, or "netA<->netB"
    detail: str
    undo: Callable[[], None] = field(repr=False)
    machines: tuple[str, ...] = ()  # daemons this fault takes off the network


class Lab:
    """A running lab: the Mininet net, the config, the daemons and the recorded faults."""

    def __init__(
        self, net, directory: Path, cfg: labnet.LabConfig, log: Callable[..., None] = _say, agents: bool = False
    ) -> None:
        self.net = net
        self.topo = net.topo
        self.prefix: str = net.topo.labprefix
        self.dir = directory
        self.cfg = cfg
        self.config_path = cfg.network_path
        self.network: Network = load_network(cfg.network_path)
        self.logs = directory / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.faults: list[Fault] = []
        self.timings: dict[str, float] = {}
        self.service_addresses_added: list[tuple[str, str]] = []  # (host, "addr/len dev ifname")
        self.log = log
        # region agents (`akacdn agent`) next to every machine with a host_address, holding
        # and moving the service addresses; without them add_service_addresses() does it
        self.agents = agents
        self._mgmt: dict[str, str] = {}
        self._last_http_failures: dict[str, int] = {}
        self._stopped = False

    # ----------------------------------------------------------------- topology
    def host(self, name: str):
        return self.net.get(name)

    def machine_ids(self, role: str | None = None, region: str | None = None) -> list[str]:
        return [
            m.id
            for m in self.network.machines
            if (role is None or m.role == role) and (region is None or m.region == region)
        ]

    def region_of(self, machine_id: str) -> str:
        return self.network.machine(machine_id).region

    def client_nets(self) -> list[str]:
        return list(self.cfg.client_regions)

    def client_host(self, client_net: str) -> str:
        return self.topo.nets[client_net].hosts[0]

    def region_for_client(self, client_net: str) -> str:
        return self.cfg.client_regions[client_net]

    def services(self, region: str | None = None, live_only: bool = False) -> dict[str, str]:
        """Edge id -> service address (of one region)."""
        down = self.down_machines() if live_only else set()
        return {
            e: self.cfg.service[e] for e in self.machine_ids("edge", region) if e not in down and e in self.cfg.service
        }

    def edge_by_service(self, address: str) -> str | None:
        return next((e for e, a in self.cfg.service.items() if a == address), None)

    def net_of(self, name: str) -> topo.LabNet:
        """A lab network by name ("c1", "r1", "org", ...) or by one of its hosts."""
        if name in self.topo.nets:
            return self.topo.nets[name]
        if name in self.topo.hostinfo:
            return self.topo.nets[self.topo.hostinfo[name].net]
        raise KeyError(f"no lab network or host {name!r}")

    # ------------------------------------------------------------ the agent's step
    def add_service_addresses(self) -> None:
        """STAND-IN FOR THE REGION AGENT: put each service address (edges; LLNS when a
        region has several) on its own host's interface (``ip addr replace SERVICE/24 dev
        rXeY-eth0``) before the daemons start.  Nothing moves it when the machine dies.  With ``agents`` the lab skips
        this step: the region agent (``akacdn agent``) adds the address itself and a
        buddy's agent takes it over; once agents are the lab's default, this step goes."""
        for m in self.network.machines:
            if not m.host_address:
                continue
            plen = ipaddress.ip_network(self.net_of(m.id).prefix).prefixlen
            ifname = getattr(m, "interface", "") or self.host(m.id).defaultIntf().name
            spec = f"{m.address}/{plen} dev {ifname}"
            out = self.host(m.id).cmd(f"ip addr replace {spec} && echo rc=0").strip()
            if not out.endswith("rc=0"):
                raise RuntimeError(f"{m.id}: ip addr replace {spec}: {out}")
            self.service_addresses_added.append((m.id, spec))

    # ---------------------------------------------------------------- processes
    def _env(self) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(k, None)
        env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    def _spawn(self, name: str, host: str, args: list[str]) -> subprocess.Popen[bytes]:
        old = self.procs.get(name)
        if old is not None and old.poll() is None:
            raise RuntimeError(f"{name} already runs (pid {old.pid})")
        with open(self.logs / f"{name}.log", "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {shlex.join(args)}\n".encode())
            log.flush()
            # mnexec -da <pid>: into the host's namespace, own session (pgid = pid)
            p = self.host(host).popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env(),
                preexec_fn=_die_with_parent,
                cwd=str(self.dir),
            )
        self.procs[name] = p
        return p

    def processes_of(self, machine_id: str) -> list[str]:
        """The processes a machine runs: its daemon (named by the machine id) and, with
        agents, its region agent (``<id>-agent``)."""
        if machine_id not in self.cfg.daemons:
            return [machine_id]  # origin, resolver
        if self.agents and self.network.machine(machine_id).host_address:
            return [machine_id, f"{machine_id}-agent"]
        return [machine_id]

    def start_machine(self, machine_id: str) -> None:
        """Start a machine's daemon (and its region agent, with agents)."""
        m = self.network.machine(machine_id)
        for name in self.processes_of(machine_id):
            role = "agent" if name.endswith("-agent") else m.role
            self._spawn(
                name,
                m.id,
                [sys.executable, "-m", "akacdn", role, "--config", str(self.config_path), "--machine", m.id],
            )

    def start_origin(self) -> None:
        port = self.network.ports.http
        self._spawn(
            "origin", "origin", [sys.executable, "-m", "akacdn", "origin", "--listen", f"{self.cfg.origin}:{port}"]
        )

    def start_resolver(self) -> None:
        binary = shutil.which("unbound") or "/usr/sbin/unbound"
        conf = labnet.unbound_conf(self.dir / "resolver", self.cfg)
        self._spawn("resolver", "resolver", [binary, "-d", "-c", str(conf)])

    def start_process(self, name: str) -> None:
        """(Re)start by name: a machine id (its daemon and agent), "origin" or "resolver"."""
        if name == "origin":
            self.start_origin()
        elif name == "resolver":
            self.start_resolver()
        else:
            self.start_machine(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a process and everything in its session (daemon workers); wait for it."""
        p = self.procs.pop(name)
        _killpg(p, sig)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            _killpg(p, signal.SIGKILL)
            p.wait(5)

    def exited(self) -> dict[str, int]:
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join((self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _check_alive(self) -> None:
        dead = self.exited()
        if dead:
            tails = "\n".join(f"--- {n} (exit {rc}):\n{self.log_tail(n)}" for n, rc in dead.items())
            raise RuntimeError(f"lab processes exited: {dead}; logs in {self.logs}\n{tails}")

    # ------------------------------------------------------------------- probes
    def sh(self, host: str, command: str) -> str:
        """Run a shell command in a host; its output without the tty's carriage returns."""
        return self.host(host).cmd(command).replace("\r", "")

    def http(
        self, src: str, url: str, host_header: str | None = None, timeout: float = 2.0, extra: str = ""
    ) -> tuple[int, dict[str, str], str]:
        """curl from host ``src``: (status, headers (lower-case names), body); status 0 = no answer."""
        hdr = f"-H {shlex.quote('Host: ' + host_header)} " if host_header else ""
        # --no-styled-output: the node's shell is a tty, curl would print bold header names;
        # the tty also turns \n into \r\n (so the body's own \r are lost: fine for probes)
        out = self.host(src).cmd(
            f"curl -s -i --no-styled-output --max-time {timeout} {hdr}{extra} {shlex.quote(url)}; echo"
        )
        head, _, body = out.replace("\r", "").partition("\n\n")
        m = re.match(r"HTTP/[\d.]+ (\d{3})", head)
        if not m:
            return 0, {}, out
        headers = {}
        for line in head.splitlines()[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return int(m.group(1)), headers, body.rstrip("\n")

    def http_code(self, src: str, url: str, host_header: str | None = None, timeout: float = 1.0) -> int:
        hdr = f"-H {shlex.quote('Host: ' + host_header)} " if host_header else ""
        out = self.host(src).cmd(
            f"curl -s -o /dev/null -w '%{{http_code}}' --max-time {timeout} {hdr}{shlex.quote(url)}"
        )
        m = re.search(r"(\d{3})\s*$", out)
        return int(m.group(1)) if m else 0

    def dig(self, src: str, server: str, name: str = SERIAL_NAME, *opts: str) -> list[str]:
        """``dig +short`` from host ``src``: the IPv4 addresses of the answer."""
        args = " ".join(shlex.quote(o) for o in opts)
        out = self.host(src).cmd(f"dig +short +tries=1 +time=1 {args} @{server} {shlex.quote(name)} A")
        return [line.strip() for line in out.splitlines() if _IPV4.match(line.strip())]

    def mgmt_address(self, machine_id: str) -> str:
        """Where the machine's management server listens (its own address: host_address
        when set, else address; the address that answered first is remembered)."""
        if machine_id in self._mgmt:
            return self._mgmt[machine_id]
        m = self.network.machine(machine_id)
        return m.host_address or m.address

    def management(self, machine_id: str, path: str, agent: bool = False) -> tuple[int, str]:
        """GET a management path of the machine's daemon (or of its region agent), from
        inside its host."""
        if agent:
            m = self.network.machine(machine_id)
            url = f"http://{m.host_address}:{self.network.ports.agent}{path}"
        else:
            url = f"http://{self.mgmt_address(machine_id)}:{self.network.ports.management}{path}"
        code, _, body = self.http(machine_id, url, timeout=2)
        return code, body

    def ready(self, machine_id: str) -> bool:
        """GET /readyz from inside the machine's host; 200 = ready."""
        m = self.network.machine(machine_id)
        port = self.network.ports.management
        candidates = (
            [self._mgmt[m.id]] if m.id in self._mgmt else list(dict.fromkeys([m.host_address or m.address, m.address]))
        )
        for addr in candidates:
            code = self.http_code(m.id, f"http://{addr}:{port}/readyz")
            if code:
                self._mgmt[m.id] = addr
                return code == 200
        return False

    def metric(self, machine_id: str, name: str, agent: bool = False, **labels: str) -> float:
        """Sum of a Prometheus sample on one machine's daemon or agent (0 when absent)."""
        _, body = self.management(machine_id, "/metrics", agent=agent)
        total = 0.0
        for line in body.splitlines():
            head, _, value = line.rpartition(" ")
            metric, _, labelpart = head.partition("{")
            if metric == name and all(f'{k}="{v}"' in labelpart for k, v in labels.items()):
                total += float(value)
        return total

    def origin_stats(self) -> dict:
        code, _, body = self.http("origin", f"http://{self.cfg.origin}:{self.network.ports.http}/_origin/stats")
        return json.loads(body) if code == 200 else {}

    # -------------------------------------------------------------------- waits
    def _poll(self, what: str, check: Callable[[], object], deadline: float, interval: float = 0.1):
        """Call ``check`` until it returns something truthy; raise TimeoutError with
        the last falsy result (or exception) after ``deadline`` (monotonic)."""
        last: object = None
        while True:
            self._check_alive()
            try:
                got = check()
                if got:
                    return got
                last = got
            except (OSError, ValueError, KeyError) as e:
                last = e
            if time.monotonic() > deadline:
                raise TimeoutError(f"lab {self.prefix}: {what}: last result {last!r}; logs in {self.logs}")
            time.sleep(interval)

    def wait_ready(self, names: Iterable[str], deadline: float) -> None:
        """Until every named process is ready: machines by /readyz, the origin by its
        stats page, the resolver by an answer."""
        pending = list(names)

        def step():
            pending[:] = [n for n in pending if not self._is_ready(n)]
            if pending:
                return None
            return True

        try:
            self._poll("daemons ready", step, deadline)
        except TimeoutError:
            why = {n: self._why_not_ready(n) for n in pending}
            raise TimeoutError(f"lab {self.prefix}: not ready: {why}; logs in {self.logs}") from None

    def _why_not_ready(self, name: str) -> str:
        if name in ("origin", "resolver"):
            return "not answering"
        agent = name.endswith("-agent")
        code, body = self.management(name.removesuffix("-agent"), "/readyz", agent=agent)
        return f"{code} {body.strip()[:200]}" if code else "management not answering"

    def _is_ready(self, name: str) -> bool:
        if name == "origin":
            return self.http_code("origin", f"http://{self.cfg.origin}:{self.network.ports.http}/_origin/stats") == 200
        if name == "resolver":  # unbound answers localhost. itself (RFC 6761 local zone)
            return "status: NOERROR" in self.host("resolver").cmd(
                f"dig +tries=1 +time=1 @{self.cfg.resolver} localhost A"
            )
        if name.endswith("-agent"):  # the agent's management server: own address, ports.agent
            m = self.network.machine(name.removesuffix("-agent"))
            return self.http_code(m.id, f"http://{m.host_address}:{self.network.ports.agent}/readyz") == 200
        return self.ready(name)

    def down_machines(self) -> set[str]:
        return {m for f in self.faults for m in f.machines}

    def mappers_see_all_live(self) -> bool:
        down = self.down_machines()
        want = {r: sum(1 for m in self.machine_ids(r) if m not in down) for r in ("edge", "llns")}
        mappers = [m for m in self.machine_ids("mapper") if m not in down]
        return all(self.metric(mc, "akacdn_live_machines", role=r) == n for mc in mappers for r, n in want.items())

    def llns_answers(self, client_net: str, llns: str) -> list[str]:
        return self.dig(self.client_host(client_net), self.network.machine(llns).address, SERIAL_NAME, "+norec")

    def llns_answers_right(self) -> dict[str, list[str]] | str:
        """Every LLNS answers a host of every client net with 2 edges of its region
        (meant for a lab without faults)."""
        got = {}
        for c in self.client_nets():
            region = self.services(self.region_for_client(c)).values()
            for ns in self.machine_ids("llns"):
                addrs = self.llns_answers(c, ns)
                if len(addrs) != min(2, len(region)) or not set(addrs) <= set(region):
                    return _Wrong(f"{ns} answers {addrs} to {c} (its region's edges: {sorted(region)})")
                got[f"{c}@{ns}"] = addrs
        return got

    def resolve(self, client_net: str, name: str = DEMO_HOST) -> list[str]:
        """``dig @resolver name`` from the client net's first host: the A addresses."""
        return self.dig(self.client_host(client_net), self.cfg.resolver, name)

    def resolver_answers_right(self) -> dict[str, list[str]] | None:
        got = {}
        for c in self.client_nets():
            addrs = self.resolve(c)
            if not addrs or not set(addrs) <= set(self.services(self.region_for_client(c)).values()):
                return None
            got[c] = addrs
        return got

    def edges_not_answering(self, src: str | None = None) -> dict[str, int]:
        """Live edges whose service address does not answer HTTP 200 to a client host:
        {edge: status (0 = no answer)}."""
        src = src or self.client_host(self.client_nets()[0])
        codes = {
            e: self.http_code(src, f"http://{a}/?lab=ready", DEMO_HOST, timeout=2)
            for e, a in self.services(live_only=True).items()
        }
        return {e: c for e, c in codes.items() if c != 200}

    def edges_answer_http(self, src: str | None = None) -> bool:
        bad = self.edges_not_answering(src)
        self._last_http_failures = bad
        return not bad

    def wait_healed(self, deadline: float) -> None:
        """Until the network is whole again: mapping centers see every live machine and
        (with no fault left) every LLNS answers each client net from its region.  With
        a path fault left nothing is predictable, so nothing is waited for."""
        if any(f.kind == "path" for f in self.faults):
            return
        if self.agents and not self.faults:
            self._poll("region agents agree (all peers alive, own address held)", self.agents_agree, deadline, 0.2)
        self._poll("mapping centers see every live machine", self.mappers_see_all_live, deadline, 0.2)
        if not self.faults:
            # stable across one agent report interval (a report takes a machine out at once)
            settle = 1.2 if self.agents else 0.0
            while True:
                self._poll("LLNS answers from each client net's region", self.llns_answers_right, deadline, 0.2)
                if not settle:
                    break
                time.sleep(settle)
                if self.llns_answers_right() and self.mappers_see_all_live():
                    break

    def agents_agree(self) -> bool:
        """Every region agent sees all its peers alive, passes its own checks and holds
        exactly its own service address."""
        for m in self.network.machines:
            if not m.host_address:
                continue
            peers = len(self.network.region_peers(m)) - 1
            checks = (
                ("akacdn_agent_peers_alive", peers),
                ("akacdn_agent_healthy", 1),
                ("akacdn_agent_addresses_held", 1),
            )
            for name, want in checks:
                if self.metric(m.id, name, agent=True) != want:
                    return False
        return True

    # --------------------------------------------------------------- life cycle
    def start(self, timeout: float = 60.0) -> None:
        t0 = time.monotonic()
        deadline = t0 + timeout
        if not self.agents:
            self.add_service_addresses()
        self.start_origin()
        for mid in self.cfg.daemons:  # relays, mappers, edges, LLNS, TLNS
            self.start_machine(mid)
        self.wait_ready(list(self.procs), deadline)  # the origin, every daemon (and agent)
        self.timings["daemons_ready"] = time.monotonic() - t0
        self.log(f"  daemons ready after {self.timings['daemons_ready']:.1f}s")
        self.wait_healed(deadline)
        self.timings["converged"] = time.monotonic() - t0
        self.log(f"  maps converged after {self.timings['converged']:.1f}s")
        # the resolver only now: it caches nothing from a half-started network
        self.start_resolver()
        self.wait_ready(["resolver"], deadline)
        self._poll("resolver answers each client net from its region", self.resolver_answers_right, deadline, 0.2)
        self.timings["resolver"] = time.monotonic() - t0
        self.log(f"  dig through the resolver works after {self.timings['resolver']:.1f}s")
        try:
            self._poll("edge service addresses answer HTTP", self.edges_answer_http, deadline, 0.2)
        except TimeoutError as e:
            raise TimeoutError(f"{e}: not answering {self._last_http_failures}") from None
        self.timings["working"] = time.monotonic() - t0
        self.log(f"  curl through every edge's service address works after {self.timings['working']:.1f}s")

    def stop(self, grace: float = 3.0) -> None:
        """Undo the cheap faults (nftables, links), stop every daemon (SIGTERM, SIGKILL
        after ``grace``), stop the net (kills what is left in its namespaces) and remove
        its state file.  Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            for f in reversed(self.faults):
                if f.kind in ("path", "link", "uplink"):
                    try:
                        f.undo()
                    except Exception as e:  # the namespaces go anyway
                        self.log(f"  undo {f.detail}: {e}")
            self.faults.clear()
            for p in self.procs.values():
                if p.poll() is None:
                    _killpg(p, signal.SIGTERM)
            end = time.monotonic() + grace
            for p in self.procs.values():
                try:
                    p.wait(max(0.05, end - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _killpg(p, signal.SIGKILL)
                    try:
                        p.wait(2)
                    except subprocess.TimeoutExpired:
                        pass
            self.procs.clear()
        finally:
            topo.stop_lab(self.net)

    def hints(self) -> str:
        c = self.client_nets()[0]
        ch = self.client_host(c)
        region = self.region_for_client(c)
        ns = self.machine_ids("llns", region)[0]
        edge = self.machine_ids("edge", region)[0]
        svc = self.cfg.service[edge]
        tl = self.cfg.tlns[0]
        tries = [
            (f"{ch} dig @{self.cfg.resolver} {DEMO_HOST}", f"through unbound: CNAME, then 2 edges of {region}"),
            (f"{ch} dig @{tl} {SERIAL_NAME} +norec", "TLNS: referral to the LLNSes"),
            (f"{ch} dig @{self.network.machine(ns).address} {SERIAL_NAME} +norec", f"LLNS {ns}: 2 edges"),
            (f"{ch} curl -si -H 'Host: {DEMO_HOST}' http://{svc}/", f"edge {edge} (run twice: MISS, then HIT)"),
            (f"origin curl -s http://{self.cfg.origin}/_origin/stats", "what reached the origin"),
            (f"{edge} curl -s http://{self.mgmt_address(edge)}:9400/metrics", "an edge's metrics"),
            ("status", "daemons, pids, readiness, faults"),
            (f"fail {edge} kill", "SIGKILL its daemon (or: link)"),
            (f"restore {edge}", "restart it / link up"),
            (f"drop {c} {region} 30", "30% loss each way between the nets (100 = partition)"),
            ("heal all", "undo every fault"),
        ]
        lines = [f"akacdn lab {self.prefix} is up ({len(self.procs)} processes). Try:", ""]
        for cmd, why in tries:
            lines += [f"  # {why}", f"  {cmd}"]
        lines += ["", f"Config: {self.config_path}", f"Logs:   {self.logs}/", "exit (or Ctrl-D) stops the lab."]
        return "\n".join(lines)

    def status(self) -> str:
        """One line per machine: role, region, addresses, its processes' pids (or down)."""

        def state(name: str) -> str:
            p = self.procs.get(name)
            if p is None:
                return "down"
            return f"exited {p.returncode}" if p.poll() is not None else f"pid {p.pid}"

        rows = []
        for m in self.network.machines:
            addr = m.address + (f" (host {m.host_address})" if m.host_address else "")
            procs = ", ".join(state(n) + (" (agent)" if n.endswith("-agent") else "") for n in self.processes_of(m.id))
            rows.append(f"  {m.id:9} {m.role:7} {m.region or '-':4} {addr:32} {procs}")
        for name in ("origin", "resolver"):
            rows.append(f"  {name:9} {'-':7} {'-':4} {self.topo.hostinfo[name].ip:32} {state(name)}")
        rows += [f"  fault: {f.kind} {f.target}: {f.detail}" for f in self.faults]
        return "\n".join(rows)


def _killpg(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        p.send_signal(sig)


# ------------------------------------------------------------------------ start


def start_lab(
    prefix: str = "akl0",
    directory: str | Path | None = None,
    regions: int = 2,
    edges_per_region: int = 3,
    client_nets: int = 2,
    clients_per_net: int = 2,
    timeout: float = 60.0,
    log: Callable[..., None] = _say,
    loglevel: str = "warning",
    agents: bool = False,
    llns_per_region: int = 1,
    tweak: Callable[[dict, dict], None] | None = None,
) -> Lab:
    """Build the topology, write the config, start every daemon and wait until the lab
    works end to end (see the module docstring); ``tweak(network, customers)`` changes
    the config documents before they are written.  On any failure everything started is
    removed again before the exception propagates."""
    t0 = time.monotonic()
    directory = Path(directory or f"/tmp/akacdn-lab-{prefix}")
    net = topo.build_lab(  # claims the prefix: refuses while a lab with it runs
        prefix=prefix,
        loglevel=loglevel,
        regions=regions,
        edges_per_region=edges_per_region,
        client_nets=client_nets,
        clients_per_net=clients_per_net,
        llns_per_region=llns_per_region,
    )
    lab = None
    try:
        t_net = time.monotonic() - t0
        directory.mkdir(parents=True, exist_ok=True)
        for sub in ("state", "logs", "resolver", "nft"):  # fresh: no maps, terms, caches of an earlier run
            shutil.rmtree(directory / sub, ignore_errors=True)
        log(f"  topology {prefix}: {len(net.hosts)} hosts, {len(net.switches)} bridges in {t_net:.1f}s")
        cfg = labnet.write_lab_config(directory / "config", net.topo, state_dir=directory / "state", tweak=tweak)
        lab = Lab(net, directory, cfg, log=log, agents=agents)
        lab.timings["topology"] = t_net
        lab.start(timeout)
        lab.timings["total"] = time.monotonic() - t0
    except BaseException:
        if lab is not None:
            lab.stop()
        else:
            topo.stop_lab(net)
        raise
    return lab


# ----------------------------------------------------------------- failure helpers


def fail_machine(lab: Lab, machine_id: str, how: str = "kill") -> Fault:
    """Fail one machine: ``kill`` SIGKILLs its daemon (and its workers); ``link`` pulls
    its cable (the bridge port of its eth0 goes down: no carrier, routes stay)."""
    if how == "kill":
        names = [n for n in lab.processes_of(machine_id) if n in lab.procs]
        if not names:
            raise KeyError(f"{machine_id} runs no process")
        pids = [str(lab.procs[n].pid) for n in names]
        for n in names:
            lab.kill(n, signal.SIGKILL)
        fault = Fault(
            "kill",
            machine_id,
            f"kill -KILL {' '.join('-' + p for p in pids)} ({', '.join(names)})",
            lambda: lab.start_process(machine_id),
            (machine_id,) if machine_id in lab.cfg.daemons else (),
        )
    elif how == "link":
        intf = f"{machine_id}-eth0"
        detail, undo = _port(lab, machine_id, intf, "down")
        machines = (machine_id,) if machine_id in lab.cfg.daemons else ()
        fault = Fault("link", machine_id, detail, undo, machines)
    else:
        raise ValueError(f"how must be 'kill' or 'link', not {how!r}")
    lab.faults.append(fault)
    lab.log(f"  fault: {fault.detail}")
    return fault


def restore_machine(lab: Lab, machine_id: str, wait: bool = True, timeout: float = 20.0) -> list[Fault]:
    """Undo every fault recorded for this machine (restart / link up); with ``wait``,
    return once it is ready and the mapping centers hear it again."""
    undone = _undo(lab, [f for f in lab.faults if f.target == machine_id])
    if wait and undone:
        deadline = time.monotonic() + timeout
        if any(f.kind == "kill" for f in undone):
            lab.wait_ready(lab.processes_of(machine_id), deadline)
        lab.wait_healed(deadline)
    return undone


def fail_region(lab: Lab, region: str, how: str = "kill") -> list[Fault]:
    """Fail a whole region: ``kill`` every daemon in it (edges and LLNS); ``link`` cuts
    the region's uplink (the core bridge's port to its router goes down)."""
    if region not in lab.cfg.regions:
        raise KeyError(f"no region {region!r}")
    members = tuple(lab.machine_ids(region=region))
    if how == "kill":
        return [fail_machine(lab, m, "kill") for m in members]
    if how != "link":
        raise ValueError(f"how must be 'kill' or 'link', not {how!r}")
    gw = lab.topo.nets[region].gateway
    detail, undo = _port(lab, gw, f"{gw}-eth1", "down")
    fault = Fault("uplink", region, detail, undo, members)
    lab.faults.append(fault)
    lab.log(f"  fault: {fault.detail}")
    return [fault]


def restore_region(lab: Lab, region: str, wait: bool = True, timeout: float = 30.0) -> list[Fault]:
    members = set(lab.machine_ids(region=region))
    undone = _undo(lab, [f for f in lab.faults if f.target == region or f.target in members])
    if wait and undone:
        deadline = time.monotonic() + timeout
        lab.wait_ready([p for f in undone if f.kind == "kill" for p in lab.processes_of(f.target)], deadline)
        lab.wait_healed(deadline)
    return undone


def _path_table(a: str, b: str) -> str:
    return f"akacdn_lab_{a}_{b}"


def drop_path(lab: Lab, net_a: str, net_b: str, loss_percent: int = 100) -> Fault:
    """Drop ``loss_percent`` % of the packets between two lab networks, in each
    direction (so a round trip survives with (1-p)^2), with nftables in the forward
    chain of ``net_a``'s router (``numgen random mod 100 < p``; 100 = partition).
    Networks by name ("c1", "r1", "org", "tl", "mc", "mc2", "rl", "dns") or by a host in them."""
    a, b = lab.net_of(net_a), lab.net_of(net_b)
    if a.name == b.name:
        raise ValueError("the two networks must differ")
    if not 0 < loss_percent <= 100:
        raise ValueError("loss_percent must be in 1..100")
    heal_path(lab, a.name, b.name)
    router = lab.host(a.gateway)
    table = _path_table(a.name, b.name)
    match = "" if loss_percent >= 100 else f"numgen random mod 100 < {loss_percent} "
    ruleset = (
        f"table inet {table} {{\n"
        "  chain forward {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        f"    ip saddr {a.prefix} ip daddr {b.prefix} {match}counter drop\n"
        f"    ip saddr {b.prefix} ip daddr {a.prefix} {match}counter drop\n"
        "  }\n}\n"
    )
    rules = lab.dir / "nft" / f"{table}.nft"
    rules.parent.mkdir(exist_ok=True)
    rules.write_text(ruleset)
    out = router.cmd(f"nft -f {rules} && echo rc=0").strip()
    if not out.endswith("rc=0"):
        raise RuntimeError(f"{a.gateway}: nft -f {rules}: {out}")

    def undo() -> None:
        router.cmd(f"nft delete table inet {table}")

    fault = Fault(
        "path", f"{a.name}<->{b.name}", f"{a.gateway}: nft table inet {table} ({loss_percent}% each way)", undo
    )
    lab.faults.append(fault)
    lab.log(f"  fault: {fault.detail}")
    return fault


def heal_path(lab: Lab, net_a: str, net_b: str) -> list[Fault]:
    a, b = lab.net_of(net_a).name, lab.net_of(net_b).name
    return _undo(lab, [f for f in lab.faults if f.kind == "path" and f.target in (f"{a}<->{b}", f"{b}<->{a}")])


def heal_all(lab: Lab, wait: bool = True, timeout: float = 30.0) -> list[Fault]:
    """Undo every recorded fault (newest first); with ``wait``, until the lab is whole."""
    undone = _undo(lab, list(lab.faults))
    if wait and undone:
        deadline = time.monotonic() + timeout
        lab.wait_ready([p for f in undone if f.kind == "kill" for p in lab.processes_of(f.target)], deadline)
        lab.wait_healed(deadline)
    return undone


def _undo(lab: Lab, faults: list[Fault]) -> list[Fault]:
    for f in reversed(faults):
        f.undo()
        lab.faults.remove(f)
        lab.log(f"  undone: {f.detail}")
    return faults


def _port(lab: Lab, node_name: str, intf_name: str, state: str) -> tuple[str, Callable[[], None]]:
    """Set the *bridge side* of ``node_name``'s interface down (a pulled cable: the node
    keeps its addresses and routes, its interface loses carrier); returns (detail, undo)."""
    intf = lab.host(node_name).intf(intf_name)
    link = intf.link
    peer = link.intf2 if link.intf1 is intf else link.intf1
    sw = peer.node
    out = sw.cmd(f"ip link set {peer.name} {state} && echo rc=0").strip()
    if not out.endswith("rc=0"):
        raise RuntimeError(f"{sw.name}: ip link set {peer.name} {state}: {out}")

    def undo() -> None:
        sw.cmd(f"ip link set {peer.name} up")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # linkwatch: carrier and forwarding take a moment
            forwarding = "state forwarding" in _bridge_port_line(sw, peer.name)
            if forwarding and "NO-CARRIER" not in lab.host(node_name).cmd(f"ip -o link show {intf_name}"):
                return
            time.sleep(0.05)

    return f"{sw.name}: ip link set {peer.name} {state} (cable of {intf_name})", undo


def _bridge_port_line(sw, port: str) -> str:
    for line in sw.cmd("bridge link show").splitlines():  # "5: <port>[@<peer>]: <FLAGS> ... state forwarding"
        if re.match(rf"\d+: {re.escape(port)}[@:]", line):
            return line
    return ""


# -------------------------------------------------------------------------- CLI


def _cli_class():
    from mininet.cli import CLI

    class LabCLI(CLI):
        """Mininet's CLI plus the lab's failure helpers."""

        prompt = "akacdn-lab> "

        def __init__(self, lab: Lab, **kw) -> None:
            self.lab = lab
            super().__init__(lab.net, **kw)

        def getLocals(self):  # noqa: N802 (Mininet's name)
            loc = super().getLocals()
            loc.update(lab=self.lab, fail_machine=fail_machine, restore_machine=restore_machine)
            loc.update(fail_region=fail_region, restore_region=restore_region)
            loc.update(drop_path=drop_path, heal_path=heal_path, heal_all=heal_all)
            return loc

        def _run(self, fn, *args) -> None:
            try:
                fn(*args)  # the lab's log says what was done
            except Exception as e:  # keep the CLI alive
                print(f"*** {type(e).__name__}: {e}")

        def do_status(self, _line: str) -> None:
            "status: the lab's daemons, addresses, pids and recorded faults"
            print(self.lab.status())

        def do_hints(self, _line: str) -> None:
            "hints: commands to try"
            print(self.lab.hints())

        def do_fail(self, line: str) -> None:
            "fail <machine> [kill|link]: SIGKILL a machine's daemon, or pull its cable"
            args = line.split()
            self._run(fail_machine, self.lab, *args[:2])

        def do_restore(self, line: str) -> None:
            "restore <machine>: undo its faults and wait until it is back"
            self._run(restore_machine, self.lab, line.strip())

        def do_failregion(self, line: str) -> None:
            "failregion <rN> [kill|link]: kill a region's daemons, or cut its uplink"
            self._run(fail_region, self.lab, *line.split()[:2])

        def do_restoreregion(self, line: str) -> None:
            "restoreregion <rN>: undo the region's faults"
            self._run(restore_region, self.lab, line.strip())

        def do_drop(self, line: str) -> None:
            "drop <net> <net> [percent]: packet loss each way between two networks (nftables)"
            args = line.split()
            if len(args) >= 3:
                args[2] = int(args[2])
            self._run(drop_path, self.lab, *args[:3])

        def do_heal(self, line: str) -> None:
            "heal <net> <net> | heal all: remove path faults (all: every fault)"
            args = line.split()
            if args == ["all"]:
                self._run(heal_all, self.lab)
            else:
                self._run(heal_path, self.lab, *args[:2])

    return LabCLI


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="akacdn lab: the paper's world in Mininet, with the daemons running")
    ap.add_argument("--prefix", default="akl0", help="unique lab name (bridge names, state file); default akl0")
    ap.add_argument("--dir", help="config, state and logs (default /tmp/akacdn-lab-<prefix>)")
    ap.add_argument("--regions", type=int, default=2)
    ap.add_argument("--edges", type=int, default=3, help="edges per region")
    ap.add_argument(
        "--llns", type=int, default=1, help="LLNS machines per region (2 or more: they cover each other by IP takeover)"
    )
    ap.add_argument("--client-nets", type=int, default=2)
    ap.add_argument("--clients-per-net", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds for the lab to come up")
    ap.add_argument("--check", action="store_true", help="start, check, print timings, stop (no CLI)")
    ap.add_argument(
        "--no-agents",
        dest="agents",
        action="store_false",
        help="no region agents: the lab puts each edge's service address on its host itself and "
        "nothing moves it (default: an akacdn agent next to every edge holds and moves them)",
    )
    ap.add_argument("--cleanup", action="store_true", help="remove a crashed lab's leftovers (by prefix)")
    ap.add_argument("-v", action="store_true", help="Mininet info logging")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("the lab needs root (Mininet)", file=sys.stderr)
        return 2
    if a.cleanup:
        print("\n".join(topo.cleanup(a.prefix)) or "nothing to clean")
        return 0

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    t0 = time.monotonic()
    print(f"* starting lab {a.prefix}", flush=True)
    lab = start_lab(
        prefix=a.prefix,
        directory=a.dir,
        regions=a.regions,
        edges_per_region=a.edges,
        client_nets=a.client_nets,
        clients_per_net=a.clients_per_net,
        timeout=a.timeout,
        log=lambda *x: print(*x, flush=True),
        loglevel="info" if a.v else "warning",
        agents=a.agents,
        llns_per_region=a.llns,
    )
    try:
        print(f"* lab up in {time.monotonic() - t0:.1f}s", flush=True)
        if a.check:
            print(lab.status())
            print("resolver answers:", lab.resolver_answers_right())
            return 0
        print(lab.hints(), flush=True)
        if not a.v:
            from mininet.log import setLogLevel

            setLogLevel("output")  # the CLI prints node output at this level
        _cli_class()(lab)
        return 0
    finally:
        t1 = time.monotonic()
        lab.stop()
        print(f"* lab {a.prefix} stopped in {time.monotonic() - t1:.1f}s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
