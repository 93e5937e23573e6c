"""The failover benchmark's network-namespace lab: one L2 segment (a bridge in its own
namespace), two edge machines (the victim and its buddy) and a client, each its own
namespace joined to the bridge by a veth pair; the same shape as
tests/integration/test_region_takeover.py.

Everything it makes is named with one unique prefix (`akfo<pid>`): the namespaces
(`<prefix>br`, `<prefix>v`, `<prefix>b`, `<prefix>c`) and the veth ends
(`<prefix>v0` in the machine, `<prefix>v1` on the bridge). Addresses are in
198.18.0.0/15 (benchmarking space), inside the namespaces only; the only sysctl it sets
is `arp_accept=1` in the client namespace. `Lab.stop_all` (also on failure and Ctrl-C)
stops every process it started, by process group, then deletes its namespaces (which
takes the veths with them).

Precise link flips: a socket created inside a namespace stays in it, so the lab keeps one
control socket per machine namespace (made by a short-lived thread that `setns`es there)
and sets links up or down with SIOCSIFFLAGS on it: microseconds, no `ip` process to spawn
when the victim is killed. The same trick gives the runner TCP sockets inside a namespace
(`http_get`: the agents' and edges' /events, /metrics and /readyz).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from akacdn.devnet.segment import Segment
from bench.dns.system import Procs, group_members

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

VICTIM, BUDDY = "v", "b"  # the two machine namespaces (suffixes)
HOSTS = {VICTIM: 11, BUDDY: 12, "c": 50}  # last octet of each namespace's own address
SERVICE = {VICTIM: 111, BUDDY: 112}  # last octet of each machine's service address (VIP)
MACHINE_ID = {VICTIM: "e1", BUDDY: "e2"}
AGENT_PORT = 7500  # akacdn's default ports.agent (agent /events, /metrics)
MANAGEMENT_PORT = 9400  # the edge's /readyz, /events
HTTP_PORT = 80

_libc = ctypes.CDLL(None, use_errno=True)


def socket_in(netns: str, kind: int = socket.SOCK_DGRAM) -> socket.socket:
    """A socket that lives in network namespace `netns` (made by a thread that joined it;
    a socket keeps the namespace it was created in, whoever uses it later)."""
    out: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns}: {os.strerror(err)}")
                out.append(socket.socket(socket.AF_INET, kind))
            finally:
                os.close(fd)
        except BaseException as e:  # noqa: BLE001 (handed to the caller's thread)
            out.append(e)

    t = threading.Thread(target=make, name=f"netns-{netns}")
    t.start()
    t.join()
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def set_link(ctl: socket.socket, ifname: str, up: bool) -> None:
    """Set interface `ifname` (in the namespace of `ctl`) up or down: SIOCSIFFLAGS."""
    req = struct.pack("16sH22x", ifname.encode(), 0)
    flags = struct.unpack("16sH22x", fcntl.ioctl(ctl, SIOCGIFFLAGS, req))[1]
    flags = flags | IFF_UP if up else flags & ~IFF_UP
    fcntl.ioctl(ctl, SIOCSIFFLAGS, struct.pack("16sH22x", ifname.encode(), flags))


def _zombie(pid: int) -> bool:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return raw[raw.rindex(")") + 2 :].startswith("Z")


@dataclass
class Lab:
    prefix: str
    dir: Path
    net: str  # first three octets, e.g. "198.19.42"
    procs: Procs = field(init=False)
    segment: Segment = field(init=False)
    ctl: dict[str, socket.socket] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)  # namespace -> its process names

    def __post_init__(self) -> None:
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        self.procs = Procs(self.dir / "logs")
        self.segment = Segment(self.prefix, self.net, HOSTS)

    # names and addresses ---------------------------------------------------------------
    def ns(self, name: str) -> str:
        return self.segment.ns(name)

    def dev(self, name: str) -> str:
        return self.segment.dev(name)

    def host(self, name: str) -> str:
        return f"{self.net}.{HOSTS[name]}"

    def service(self, name: str) -> str:
        return f"{self.net}.{SERVICE[name]}"

    def sh(self, name: str, *cmd: str) -> str:
        return self.segment.sh(name, *cmd)

    # building and tearing down ------------------------------------------------------------
    def build(self) -> None:
        self.segment.build()
        # the client takes a gratuitous ARP also for an address it has no entry for yet
        self.sh("c", "sysctl", "-qw", "net.ipv4.conf.all.arp_accept=1")
        for name in (VICTIM, BUDDY):
            self.ctl[name] = socket_in(self.ns(name))

    def stop_all(self) -> None:
        """Every process we started (their process groups), then our namespaces."""
        self.procs.stop_all()
        for s in self.ctl.values():
            s.close()
        self.ctl.clear()
        self.segment.remove()

    # processes --------------------------------------------------------------------------
    def start(self, name: str, proc: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start `argv` inside namespace `name` as process `<name>-<proc>` (own session)."""
        key = f"{name}-{proc}"
        self.procs.start(key, ["ip", "netns", "exec", self.ns(name), *argv], env)
        self.groups.setdefault(name, []).append(key)

    def alive(self, key: str) -> bool:
        p = self.procs.procs.get(key)
        return p is not None and p.poll() is None

    def stop(self, name: str, proc: str) -> None:
        key = f"{name}-{proc}"
        self.procs.stop(key)
        with contextlib.suppress(ValueError):
            self.groups.get(name, []).remove(key)

    def crash(self, name: str) -> tuple[float, float]:
        """The machine dies: every process group we started in it gets SIGKILL and its link
        goes down, back to back (microseconds). Returns (monotonic time just before, just
        after)."""
        keys = list(self.groups.get(name, []))
        pgids = [self.procs.procs[k].pid for k in keys if k in self.procs.procs]
        t0 = time.monotonic()
        for pgid in pgids:  # first: a daemon that saw its link go down could still act (keepalived: FAULT state)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        set_link(self.ctl[name], self.dev(name), up=False)
        t1 = time.monotonic()
        for k in keys:
            p = self.procs.procs.pop(k, None)
            if p is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)
        self.groups[name] = []
        deadline = time.monotonic() + 2.0
        while left := [pid for pgid in pgids for pid in group_members(pgid) if not _zombie(pid)]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes {left} of {name} survived SIGKILL to their group")
            time.sleep(0.01)
        return t0, t1

    def link(self, name: str, up: bool) -> None:
        set_link(self.ctl[name], self.dev(name), up)

    # addresses ----------------------------------------------------------------------------
    def addresses(self, name: str) -> set[str]:
        out = self.sh(name, "ip", "-4", "-o", "addr", "show", "dev", self.dev(name))
        return {line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3}

    def drop_address(self, name: str, address: str) -> bool:
        """Remove `address` from the machine's link if it is there (what a reboot does)."""
        if address not in self.addresses(name):
            return False
        self.sh(name, "ip", "addr", "del", f"{address}/24", "dev", self.dev(name))
        return True

    # talking to the machines ----------------------------------------------------------------
    def http_get(self, name: str, address: str, port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        """GET http://address:port/path from inside namespace `name` (0 when unreachable)."""
        try:
            s = socket_in(self.ns(name), socket.SOCK_STREAM)
        except OSError:
            return 0, b""
        with s:
            try:
                s.settimeout(timeout)
                s.connect((address, port))
                s.sendall(f"GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
                chunks = []
                while chunk := s.recv(65536):
                    chunks.append(chunk)
            except OSError:
                return 0, b""
        raw = b"".join(chunks)
        head, _, body = raw.partition(b"\r\n\r\n")
        try:
            return int(head.split(b" ", 2)[1]), body
        except (IndexError, ValueError):
            return 0, b""

    def wait_for(self, what: str, ok: Callable[[], bool], timeout: float, every: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: not after {timeout:g}s")
            time.sleep(every)

    def log_tail(self, key: str, lines: int = 15) -> str:
        return self.procs.log_tail(key, lines)


def new_lab(tmp: Path) -> Lab:
    pid = os.getpid()
    return Lab(prefix=f"akfo{pid}", dir=tmp, net=f"198.19.{pid % 200 + 20}")


# akacdn ------------------------------------------------------------------------------------
def akacdn_config(lab: Lab, interval: float, misses: int, recover_after: float) -> Path:
    """network.toml for the two edge machines (a relay, a mapping center and a TLNS are in
    it because the loader wants them; none is started, as in the takeover test)."""
    d = lab.dir / "akacdn"
    d.mkdir(exist_ok=True)
    pub = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    (d / "customers.toml").write_text(tomli_w.dumps({"customers": []}))
    n = lab.net
    net = {
        "base_domain": "akacdn.test",
        "state_dir": str(d / "state"),
        "keys": {"message_key": secrets.token_hex(32), "purge_token": secrets.token_hex(16)},
        "agent": {"interval": interval, "misses": misses, "recover_after": recover_after},
        "regions": [{"id": "r1"}],
        "machines": [
            {"id": "relay1", "role": "relay", "address": f"{n}.200"},
            {"id": "mc1", "role": "mapper", "address": f"{n}.201", "public_key": pub},
            {"id": "tlns1", "role": "tlns", "address": f"{n}.202"},
            *(
                {
                    "id": MACHINE_ID[m],
                    "role": "edge",
                    "region": "r1",
                    "address": lab.service(m),
                    "host_address": lab.host(m),
                }
                for m in (VICTIM, BUDDY)
            ),
        ],
    }
    path = d / "network.toml"
    path.write_text(tomli_w.dumps(net))
    from akacdn.config import load_network

    load_network(path)  # a config the loader refuses fails here, not in four daemons' logs
    return path


def akacdn_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("NOTIFY_SOCKET", None)
    return env


def akacdn_argv(role: str, config: Path, machine: str) -> list[str]:
    return [sys.executable, "-m", "akacdn", role, "--config", str(config), "--machine", machine]


# keepalived --------------------------------------------------------------------------------
def keepalived_config(lab: Lab, name: str, interval: float) -> Path:
    """VRRPv3 for machine `name`: instance VI_1 holds the victim's service address (the
    victim MASTER 200, the buddy BACKUP 100), VI_2 the buddy's (the other way round);
    preemption on (no `nopreempt`), so a returning owner takes its address back."""
    d = lab.dir / f"keepalived-{name}"
    d.mkdir(exist_ok=True)
    blocks = [
        "global_defs {",
        f"  router_id {lab.prefix}{name}",
        "  vrrp_version 3",
        "  vrrp_garp_master_delay 5",
        "  vrrp_garp_master_repeat 5",
        "}",
    ]
    for i, owner in enumerate((VICTIM, BUDDY), start=1):
        mine = owner == name
        blocks += [
            f"vrrp_instance VI_{i} {{",
            f"  state {'MASTER' if mine else 'BACKUP'}",
            f"  interface {lab.dev(name)}",
            f"  virtual_router_id {50 + i}",
            f"  priority {200 if mine else 100}",
            f"  advert_int {interval:g}",
            "  virtual_ipaddress {",
            f"    {lab.service(owner)}/24 dev {lab.dev(name)}",
            "  }",
            "}",
        ]
    path = d / "keepalived.conf"
    path.write_text("\n".join(blocks) + "\n")
    return path


def keepalived_argv(lab: Lab, name: str, config: Path) -> list[str]:
    """In the foreground, VRRP only, logging to its console (our log file), with pid files
    of its own (two keepalived processes must not share them)."""
    d = config.parent
    return [
        "keepalived",
        "--dont-fork",
        "--log-console",
        "--log-detail",
        "--no-syslog",
        "--vrrp",
        "-f",
        str(config),
        "-p",
        str(d / "keepalived.pid"),
        "-r",
        str(d / "vrrp.pid"),
        "-c",
        str(d / "checkers.pid"),
    ]
