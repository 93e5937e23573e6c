"""Mininet topology of the akacdn "paper world" (Linux bridges, no controller).

Pure topology plus a ``build_lab()`` helper that returns a started net; no akacdn
daemons are started here.

Requirements (Debian 12, as root)::

    apt-get install -y --no-install-recommends mininet bridge-utils nftables iputils-ping

``mininet`` (2.3.0) installs the Python package into /usr/lib/python3/dist-packages
and ``/usr/bin/mnexec`` (it pulls iperf, socat, telnet, net-tools' ifconfig,
cgroup-tools); ``bridge-utils`` (``brctl``) is required by
``mininet.nodelib.LinuxBridge`` (its setup() exits without it); ``nftables`` is
for loss/partition rules on the routers (no sch_netem in this kernel);
``iputils-ping`` is not pulled in by mininet but pingAll() and the smoke test
need ``ping``.  ``--no-install-recommends`` skips openvswitch-switch (unused).
Run scripts with ``/usr/bin/python3`` or the project venv: the venv (pyenv 3.11)
does not see Debian's dist-packages, so ``_import_mininet()`` below loads only the
``mininet`` package from there when it is not importable otherwise.

Address plan (everything inside 198.18.0.0/15, every network a /24)::

    network            prefix              gateway router  core address     hosts
    core (transit)     198.18.254.0/24     -               -                routers only
    region R (1..49)   198.18.R.0/24       rRgw  .1        198.18.254.R     rRe1.. at .11..,
                                                                            LLNS rRns1.. at .2..
    TLNS               198.18.100.0/24     tlnsgw .1       198.18.254.100   tlns1.. at .11..
    mapping center 1   198.18.101.0/24     mcgw  .1        198.18.254.101   mc1 at .11
    mapping center N   198.18.(110+N).0/24 mcNgw .1        198.18.254.(110+N)  mcN at .11 (N = 2..)
    relays             198.18.102.0/24     relaygw .1      198.18.254.102   relay1.. at .11..
    resolver           198.18.103.0/24     resgw .1        198.18.254.103   resolver at .53
    origin             198.18.200.0/24     origw .1        198.18.254.200   origin at .10
    client net C       198.19.C.0/24       cCgw  .1        198.18.254.(150+C)  cCh1.. at .11..
                       (C = 1..49)

Every network is one L2 segment (one Linux bridge); its gateway router has
``eth0`` on that segment and ``eth1`` on the core segment.  Leaf hosts have one
interface and a default route via their gateway (.1).  Every router has
ip_forward=1 and one static route per other network, via that network's
gateway on the core.  So every host reaches every other host in at most three
router hops (own gw -> core -> peer gw).  IPv6 is disabled in every node (no
ND/MLD noise in ``ip neigh``/captures).

Where things live: each host/router is a Mininet node (a bash in its own
*unnamed* network namespace created by ``mnexec -n``; not listed by
``ip netns``; enter with ``mnexec -a <pid> CMD`` or ``nsenter -t <pid> -n CMD``).
Bridges are ``NsLinuxBridge``: a ``mininet.nodelib.LinuxBridge`` (stp off) that
lives in its *own* network namespace instead of the root namespace, so the lab
creates no interface in the root namespace at all: nothing can clash with other
users' links, two labs can run at once, br_netfilter of the root namespace
(bridge-nf-call-iptables=1 on this machine) is not involved, and everything
vanishes with the processes.  Bridge names still carry the lab ``prefix`` (so
``ps`` shows ``mininet:<prefix>core`` etc.).  ``build_lab(root_bridges=True)``
uses plain root-namespace LinuxBridge instead (visible to ``brctl show``; then
the prefix must be unique, because LinuxBridge.start() runs ``brctl delbr
<name>`` first and would destroy a same-named bridge of someone else).

Use::

    net = build_lab(prefix="mnx0", regions=2, edges_per_region=3, client_nets=2)
    try:
        net.get("c1h1").cmd("ping -c1 198.18.1.11")
        info = net.topo.hostinfo["r1e1"]          # role, ip, net, region
    finally:
        stop_lab(net)

``build_lab`` waits until every bridge port forwards (``wait_ready``; right after
start the kernel's linkwatch still holds veth carrier events for up to ~1 s and
first packets are lost), records pids/netns inodes in
``/tmp/akacdn-mininet/<prefix>.json`` and refuses a prefix that is in use (a
stale file of a crashed run is cleaned first).  ``stop_lab`` also kills
processes that net.stop() leaves behind (``node.popen()`` children).  After a
crash: ``python deploy/mininet/topo.py --prefix mnx0 --cleanup`` (never
``mn -c``, which tears down every Mininet on the machine).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import ipaddress
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages"


def _import_mininet() -> None:
    """Make ``import mininet`` work, also from the project venv.

    Loads only the ``mininet`` package from Debian's dist-packages (instead of
    putting the whole of dist-packages on sys.path).  Mininet is pure Python
    (stdlib only; uses distutils.version, present in 3.11)."""
    try:
        import mininet  # noqa: F401

        return
    except ModuleNotFoundError:
        pass
    spec = importlib.machinery.PathFinder.find_spec("mininet", [DEBIAN_DIST_PACKAGES])
    if spec is None:
        raise ModuleNotFoundError(
            "mininet not found: apt-get install -y --no-install-recommends mininet bridge-utils nftables"
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules["mininet"] = module
    spec.loader.exec_module(module)


_import_mininet()

from mininet.log import setLogLevel  # noqa: E402
from mininet.net import Mininet  # noqa: E402
from mininet.node import Node  # noqa: E402
from mininet.nodelib import LinuxBridge  # noqa: E402
from mininet.topo import Topo  # noqa: E402

IFNAMSIZ = 15  # max interface name length on Linux
CORE_NET = ipaddress.ip_network("198.18.254.0/24")
STATE_DIR = os.environ.get("AKACDN_MININET_STATE", "/tmp/akacdn-mininet")


# --------------------------------------------------------------------------- nodes


def _require_own_netns(node) -> None:
    """Guard before node-wide sysctls: never run them in the root namespace.

    (Mininet.addSwitch() passes inNamespace=False explicitly; a node that silently
    ended up in the root netns would change the host's sysctls.)"""
    if not node.inNamespace or _netns_inode(node.pid) == _netns_inode(os.getpid()):
        raise RuntimeError(f"{node.name} is not in its own network namespace")


class LabHost(Node):
    """A leaf host: default route via its gateway, IPv6 off."""

    def config(self, **params):
        _require_own_netns(self)
        r = super().config(**params)
        self.cmd("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
        return r


class LabRouter(LabHost):
    """A router host: ip_forward=1 plus static routes ``routes=[(prefix, via)]``."""

    def config(self, routes=(), **params):
        r = super().config(**params)
        self.cmd("sysctl -qw net.ipv4.ip_forward=1")
        for prefix, via in routes:
            self.cmd(f"ip route replace {prefix} via {via}")
        return r


class NsLinuxBridge(LinuxBridge):
    """mininet.nodelib.LinuxBridge (stp off) living in its own network namespace.

    The bridge and its veth ports never appear in the root namespace."""

    def __init__(self, name, **params):
        # Mininet.addSwitch() always passes inNamespace=<Mininet's inNamespace> (False)
        params["inNamespace"] = True
        params.setdefault("stp", False)
        super().__init__(name, **params)

    @classmethod
    def setup(cls):
        # LinuxBridge.setup() checks for brctl and warns about the *root* namespace's
        # bridge-nf-call-*tables, which do not apply to a bridge in its own netns
        # (those sysctls are per-netns; set to 0 in start()).
        from mininet.moduledeps import pathCheck

        pathCheck("brctl", moduleName="bridge-utils")
        LinuxBridge.isSetup = True

    def start(self, controllers):
        _require_own_netns(self)
        self.cmd(
            "sysctl -qw net.bridge.bridge-nf-call-iptables=0 "
            "net.bridge.bridge-nf-call-ip6tables=0 net.bridge.bridge-nf-call-arptables=0 "
            "net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1"
        )
        super().start(controllers)


# ---------------------------------------------------------------------------- plan


@dataclass
class LabNet:
    name: str  # short segment name, e.g. "r1", "core", "c2"
    kind: str  # region | tlns | mapper | relay | resolver | origin | client | core
    prefix: str  # "198.18.1.0/24"
    bridge: str  # switch (bridge) name, "<labprefix><name>"
    gateway: str | None = None  # router host name
    gateway_ip: str | None = None  # router address on this segment
    core_ip: str | None = None  # router address on the core segment
    hosts: list[str] = field(default_factory=list)


@dataclass
class LabHostInfo:
    name: str
    role: str  # edge | llns | tlns | mapper | relay | resolver | origin | client | router
    ip: str  # primary address (no prefix length)
    net: str  # LabNet.name
    region: int | None = None


class AkacdnTopo(Topo):
    """The paper's world as L2 segments behind router hosts (see module docstring).

    After construction ``self.nets`` (name -> LabNet) and ``self.hostinfo``
    (host name -> LabHostInfo) describe the plan; ``self.plan()`` is JSON-able."""

    def build(
        self,
        regions: int = 2,
        edges_per_region: int = 3,
        client_nets: int = 2,
        clients_per_net: int = 2,
        tlns: int = 2,
        mappers: int = 2,
        relays: int = 2,
        prefix: str = "mnx0",
        llns_per_region: int = 1,
    ):
        if not (1 <= regions <= 49 and 1 <= client_nets <= 49):
            raise ValueError("regions and client_nets must be in 1..49")
        if not (1 <= edges_per_region <= 200 and 1 <= clients_per_net <= 200):
            raise ValueError("edges_per_region / clients_per_net must be in 1..200")
        if not 0 <= llns_per_region <= 9:
            raise ValueError("llns_per_region must be in 0..9")
        self.labprefix = prefix
        self.nets: dict[str, LabNet] = {}
        self.hostinfo: dict[str, LabHostInfo] = {}
        self._dpid = 0

        core = self._add_net("core", "core", CORE_NET)
        specs = []  # (net name, kind, prefix, core host id, gateway name, [(host, role, host id)])
        for r in range(1, regions + 1):
            members = [(f"r{r}e{i}", "edge", 10 + i) for i in range(1, edges_per_region + 1)]
            members += [(f"r{r}ns{i}", "llns", 1 + i) for i in range(1, llns_per_region + 1)]
            specs.append((f"r{r}", "region", f"198.18.{r}.0/24", r, f"r{r}gw", members, r))
        specs.append(
            (
                "tl",
                "tlns",
                "198.18.100.0/24",
                100,
                "tlnsgw",
                [(f"tlns{i}", "tlns", 10 + i) for i in range(1, tlns + 1)],
                None,
            )
        )
        # each mapping center in a network of its own (its own gateway and uplink), so a
        # lab can cut or degrade one center's network, as in the paper's 4.2
        for i in range(1, mappers + 1):
            name, pfx, core_id = (
                ("mc", "198.18.101.0/24", 101) if i == 1 else (f"mc{i}", f"198.18.{110 + i}.0/24", 110 + i)
            )
            specs.append(
                (name, "mapper", pfx, core_id, "mcgw" if i == 1 else f"mc{i}gw", [(f"mc{i}", "mapper", 11)], None)
            )
        specs.append(
            (
                "rl",
                "relay",
                "198.18.102.0/24",
                102,
                "relaygw",
                [(f"relay{i}", "relay", 10 + i) for i in range(1, relays + 1)],
                None,
            )
        )
        specs.append(("dns", "resolver", "198.18.103.0/24", 103, "resgw", [("resolver", "resolver", 53)], None))
        specs.append(("org", "origin", "198.18.200.0/24", 200, "origw", [("origin", "origin", 10)], None))
        for c in range(1, client_nets + 1):
            members = [(f"c{c}h{i}", "client", 10 + i) for i in range(1, clients_per_net + 1)]
            specs.append((f"c{c}", "client", f"198.19.{c}.0/24", 150 + c, f"c{c}gw", members, None))

        # segments, gateways and their addresses
        for name, kind, pfx, core_id, gw, members, region in specs:
            net = self._add_net(name, kind, ipaddress.ip_network(pfx))
            net.gateway = gw
            net.gateway_ip = str(net_addr(net.prefix, 1))
            net.core_ip = str(CORE_NET.network_address + core_id)
            net._members = members  # type: ignore[attr-defined]
            net._region = region  # type: ignore[attr-defined]

        # routers: eth0 on their segment (added first, so it is the default intf), eth1 on core
        for net in self.nets.values():
            if net.kind == "core":
                continue
            routes = [
                (other.prefix, other.core_ip)
                for other in self.nets.values()
                if other.kind != "core" and other.name != net.name
            ]
            plen = ipaddress.ip_network(net.prefix).prefixlen
            self._check_ifname(net.gateway, 1)
            self.addHost(net.gateway, cls=LabRouter, ip=f"{net.gateway_ip}/{plen}", routes=routes)
            self.hostinfo[net.gateway] = LabHostInfo(net.gateway, "router", net.gateway_ip, net.name, net._region)
            self.addLink(net.gateway, net.bridge, intfName1=f"{net.gateway}-eth0")
            self.addLink(
                net.gateway,
                core.bridge,
                intfName1=f"{net.gateway}-eth1",
                params1={"ip": f"{net.core_ip}/{CORE_NET.prefixlen}"},
            )
            core.hosts.append(net.gateway)
            for host, role, host_id in net._members:
                ip = str(net_addr(net.prefix, host_id))
                self._check_ifname(host, 0)
                self.addHost(host, cls=LabHost, ip=f"{ip}/{plen}", defaultRoute=f"via {net.gateway_ip}")
                self.addLink(host, net.bridge, intfName1=f"{host}-eth0")
                net.hosts.append(host)
                self.hostinfo[host] = LabHostInfo(host, role, ip, net.name, net._region)
        for net in self.nets.values():
            for a in ("_members", "_region"):
                net.__dict__.pop(a, None)
        for sw in self.switches():
            n_ports = sum(1 for _ in self.links(sort=False) if sw in _)
            self._check_ifname(sw, n_ports)

    # helpers
    def _add_net(self, name, kind, prefix) -> LabNet:
        bridge = f"{self.labprefix}{name}"
        self._dpid += 1
        self.addSwitch(bridge, dpid=f"{self._dpid:016x}")
        net = LabNet(name=name, kind=kind, prefix=str(prefix), bridge=bridge)
        self.nets[name] = net
        return net

    @staticmethod
    def _check_ifname(node: str, max_port: int) -> None:
        name = f"{node}-eth{max_port}"
        if len(name) > IFNAMSIZ:
            raise ValueError(f"interface name {name!r} longer than {IFNAMSIZ}: shorten prefix")

    def plan(self) -> dict:
        return {
            "prefix": self.labprefix,
            "nets": {k: asdict(v) for k, v in self.nets.items()},
            "hosts": {k: asdict(v) for k, v in self.hostinfo.items()},
        }

    def hosts_by_role(self, role: str) -> list[str]:
        return [h.name for h in self.hostinfo.values() if h.role == role]


def net_addr(prefix: str, host_id: int) -> ipaddress.IPv4Address:
    return ipaddress.ip_network(prefix).network_address + host_id


# ------------------------------------------------------------------------- lab life


def _raise_rlimits() -> None:
    """Process-local part of Mininet's fixLimits() (which we skip, see build_lab)."""
    for res, want in ((resource.RLIMIT_NOFILE, 16384), (resource.RLIMIT_NPROC, 8192)):
        soft, hard = resource.getrlimit(res)
        if soft != resource.RLIM_INFINITY and soft < want:
            new_hard = hard if hard == resource.RLIM_INFINITY or hard >= want else want
            resource.setrlimit(res, (want, new_hard))


def _netns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def state_path(prefix: str) -> str:
    return os.path.join(STATE_DIR, f"{prefix}.json")


def build_lab(prefix: str = "mnx0", root_bridges: bool = False, loglevel: str = "warning", **topo_kwargs) -> Mininet:
    """Build and start the lab; returns the started Mininet (``net.topo.plan()`` has the plan).

    - no controller, Linux bridges (stp off) in their own netns (or root ns if
      ``root_bridges``), switch names ``<prefix><segment>``;
    - Mininet's global ``fixLimits()`` (raises host-wide sysctls such as
      net.core.rmem_max, tcp_rmem, gc_thresh*, kernel.pty.max) is skipped on
      purpose on a shared machine; only this process' rlimits are raised;
    - writes ``$AKACDN_MININET_STATE/<prefix>.json`` (default /tmp/akacdn-mininet)
      with node pids and netns inodes so ``cleanup(prefix)`` can remove a crashed lab.
    """
    if os.geteuid() != 0:
        raise PermissionError("Mininet needs root")
    if not prefix.isalnum() or not prefix[0].isalpha():
        raise ValueError("prefix must be alphanumeric and start with a letter")
    setLogLevel(loglevel)
    _claim(prefix)
    try:
        if root_bridges:
            clash = [n for n in os.listdir("/sys/class/net") if n.startswith(prefix)]
            if clash:
                raise RuntimeError(f"root-ns interfaces with prefix {prefix!r} exist: {clash}")
        _raise_rlimits()
        Mininet.inited = True  # skip Mininet.init() -> fixLimits() (global sysctls)
        topo = AkacdnTopo(prefix=prefix, **topo_kwargs)
        net = Mininet(
            topo=topo,
            switch=LinuxBridge if root_bridges else NsLinuxBridge,
            controller=None,
            build=False,
            autoSetMacs=False,
            ipBase="198.18.0.0/15",
            waitConnected=False,
        )
    except BaseException:
        os.unlink(state_path(prefix))
        raise
    try:
        net.build()
        _write_state(net)
        net.start()
        wait_ready(net)
        if root_bridges:
            for sw in net.switches:  # keep the root ns out of the lab's IPv6 ND
                for intf in [sw.name] + [i.name for i in sw.intfList() if i.name != "lo"]:
                    sw.cmd(f"sysctl -qw net.ipv6.conf.{intf}.disable_ipv6=1")
    except BaseException:
        stop_lab(net)
        raise
    return net


def wait_ready(net: Mininet, timeout: float = 10.0) -> float:
    """Wait until every bridge port is forwarding and every node interface has carrier.

    Right after net.start() veth carrier-up events are still queued in the kernel's
    linkwatch (batched, up to ~1 s): bridge ports are "disabled"/NO-CARRIER and the
    first packets (ARP) are dropped, so the first ping of a fresh lab fails.
    Returns the seconds waited; raises TimeoutError."""
    t0 = time.monotonic()
    pending = lab_nodes(net)
    while True:
        still = []
        for node in pending:
            if node in net.switches:
                ports = [i.name for i in node.intfList() if i.name.startswith(node.name + "-eth")]
                out = node.cmd("bridge link show")
                ok = sum(
                    1 for line in out.splitlines() if f" master {node.name} " in line and "state forwarding" in line
                ) == len(ports)
            else:
                lines = [ln for ln in node.cmd("ip -o link show").splitlines() if "-eth" in ln]
                ok = all("LOWER_UP" in ln and "NO-CARRIER" not in ln and "qdisc noop" not in ln for ln in lines)
            if not ok:
                still.append(node)
        if not still:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"lab not ready after {timeout}s: {[n.name for n in still]}")
        pending = still
        time.sleep(0.05)


def lab_nodes(net: Mininet):
    return list(net.hosts) + list(net.switches)


def _claim(prefix: str) -> None:
    """Create the state file exclusively; a stale one (owner dead) is cleaned up first."""
    os.makedirs(STATE_DIR, exist_ok=True)
    for _ in range(2):
        tmp = f"{state_path(prefix)}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"prefix": prefix, "owner_pid": os.getpid(), "nodes": {}}, f)
        try:
            os.link(tmp, state_path(prefix))  # atomic, fails if it exists
        except FileExistsError:
            if _state_alive(prefix):
                raise RuntimeError(f"a lab with prefix {prefix!r} is running (see {state_path(prefix)})") from None
            cleanup(prefix)  # leftovers of a crashed run with this prefix
            continue
        finally:
            os.unlink(tmp)
        return
    raise RuntimeError(f"cannot claim {state_path(prefix)}")


def _write_state(net: Mininet) -> None:
    os.makedirs(STATE_DIR, exist_ok=True)
    prefix = net.topo.labprefix
    nodes = {n.name: {"pid": n.pid, "netns": _netns_inode(n.pid) if n.inNamespace else None} for n in lab_nodes(net)}
    data = {
        "prefix": prefix,
        "owner_pid": os.getpid(),
        "started": time.time(),
        "root_bridges": not net.switches[0].inNamespace,
        "nodes": nodes,
        "plan": net.topo.plan(),
    }
    tmp = f"{state_path(prefix)}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, state_path(prefix))


def _state_alive(prefix: str) -> bool:
    try:
        with open(state_path(prefix)) as f:
            owner = int(json.load(f)["owner_pid"])
        if owner <= 0:
            return False
        os.kill(owner, 0)
        return not _zombie(owner)
    except (OSError, ValueError, KeyError):
        return False


def processes_in_netns(inodes: set[int]) -> list[int]:
    """PIDs whose network namespace is one of ``inodes``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ino = _netns_inode(int(entry))
            if ino is not None and ino in inodes:
                pids.append(int(entry))
    return pids


def _kill_pids(pids: list[int], grace: float = 2.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 1.0)
        while time.monotonic() < deadline:
            pids = [p for p in pids if os.path.exists(f"/proc/{p}") and not _zombie(p)]
            if not pids:
                return
            time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def stop_lab(net: Mininet, fast: bool = True) -> None:
    """Stop the lab and kill every process still inside its namespaces.

    Mininet's net.stop() only SIGHUPs each node's bash; programs started with
    ``node.popen()`` (``mnexec -da``, detached into a new session) or that ignore
    SIGHUP survive it and keep their namespace (and its veths) alive, so they are
    killed here (SIGTERM, then SIGKILL after 2 s).

    ``fast`` (only with namespaced bridges): skip Mininet's one-by-one
    ``ip link del`` of every link/bridge (~1.5 s for 36 links) and just end the
    node shells; the kernel removes each namespace with its veths and bridge when
    its last process exits.  Root-namespace bridges always get net.stop().
    Idempotent (a second Mininet.stop() raises AttributeError in Link.delete)."""
    if getattr(net, "_akacdn_stopped", False):
        return
    net._akacdn_stopped = True
    inodes = set()
    for n in lab_nodes(net):
        if n.inNamespace and n.pid:
            ino = _netns_inode(n.pid)
            if ino:
                inodes.add(ino)
    shells = {n.pid for n in lab_nodes(net)}
    strays = [p for p in processes_in_netns(inodes) if p not in shells]
    _kill_pids(strays)
    try:
        if fast and all(sw.inNamespace for sw in net.switches):
            for node in lab_nodes(net):
                node.terminate()  # SIGHUP to the shell's process group
        else:
            net.stop()
    finally:
        _kill_pids(processes_in_netns(inodes))
        try:
            os.unlink(state_path(net.topo.labprefix))
        except FileNotFoundError:
            pass


def cleanup(prefix: str) -> list[str]:
    """Remove the leftovers of a crashed lab ``prefix`` precisely (no ``mn -c``).

    Kills the processes in the namespaces recorded in the state file (namespaces
    and their veths/bridges disappear with their last process) and, for
    root_bridges labs, deletes root-ns links named ``<prefix><segment>[-ethN]``.
    Refuses while the owner process is alive.  Returns what it did."""
    done = []
    try:
        with open(state_path(prefix)) as f:
            state = json.load(f)
    except FileNotFoundError:
        state = None
    if state:
        if _state_alive(prefix):
            raise RuntimeError(f"owner {state['owner_pid']} of lab {prefix!r} still runs")
        inodes = {n["netns"] for n in state["nodes"].values() if n["netns"]}
        pids = processes_in_netns(inodes)
        # root-namespace node shells (root_bridges mode) are identified by pid+cmdline
        for name, n in state["nodes"].items():
            if n["netns"] is None and _cmdline(n["pid"]).endswith(f"mininet:{name}"):
                pids.append(n["pid"])
        _kill_pids(pids)
        done += [f"killed {p}" for p in pids]
        os.unlink(state_path(prefix))
        done.append(f"removed {state_path(prefix)}")
    # root_bridges labs: the bridges and their ports <bridge>-ethN in the root netns.
    # Match the exact naming scheme (a bare prefix test would also hit a lab whose
    # prefix merely starts with ours, e.g. mnx vs mnxc).
    names = re.compile(rf"^{re.escape(prefix)}(core|tl|mc|rl|dns|org|r[0-9]+|c[0-9]+)(-eth[0-9]+)?$")
    for link in sorted(os.listdir("/sys/class/net"), key=len, reverse=True):
        if names.match(link) and os.path.exists(f"/sys/class/net/{link}"):
            subprocess.run(["ip", "link", "del", link], capture_output=True)
            done.append(f"ip link del {link}")
    return done


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="akacdn Mininet lab: plan / cleanup")
    ap.add_argument("--prefix", default="mnx0")
    ap.add_argument("--plan", action="store_true", help="print the address plan as JSON")
    ap.add_argument("--cleanup", action="store_true", help="remove a crashed lab's leftovers")
    a = ap.parse_args()
    if a.cleanup:
        print("\n".join(cleanup(a.prefix)) or "nothing to clean")
    else:
        print(json.dumps(AkacdnTopo(prefix=a.prefix).plan(), indent=1))
