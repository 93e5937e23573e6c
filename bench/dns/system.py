"""The machine side of the benchmark: Debian packages, the processes it starts, and
their CPU time.

Every process the benchmark starts goes through `Procs.start`: its own session (so a
Ctrl-C at the terminal reaches only the benchmark, which then stops its servers in
order), PR_SET_PDEATHSIG (so a server dies with a benchmark killed by SIGKILL), and an
entry in the table that `Procs.stop_all` empties. Nothing is ever stopped by name.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DEBS = ("dnsperf", "nsd", "knot")
# the init scripts these packages bring, and the daemons those scripts start
SERVICES = {"nsd": "nsd", "knot": "knotd"}
POLICY_RC = Path("/usr/sbin/policy-rc.d")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1


def say(msg: str) -> None:
    print(f"bench-dns: {msg}", flush=True)


# Debian packages ---------------------------------------------------------------------
def missing_debs(debs: tuple[str, ...] = DEBS) -> list[str]:
    return [p for p in debs if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]


def _pids_named(name: str) -> set[int]:
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout
    return {int(x) for x in out.split()}


def install_debs(debs: tuple[str, ...] = DEBS, services: dict[str, str] | None = None, who: str = "bench-dns") -> None:
    """Install `debs` (default: dnsperf, NSD and Knot) when missing (root only), without
    leaving their system services running: a temporary policy-rc.d keeps apt from
    starting them, and any daemon (`services`: init script -> daemon name) that still
    came up during *this* install is stopped with its init script and then by pid."""
    services = SERVICES if services is None else services
    missing = missing_debs(debs)
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(
            f"{who}: missing Debian packages: {' '.join(missing)} "
            f"(run as root, or: sudo apt-get install {' '.join(missing)})"
        )
    before = {svc: _pids_named(daemon) for svc, daemon in services.items()}
    print(f"{who}: installing Debian packages: {' '.join(missing)}", flush=True)
    made_policy = False
    if not POLICY_RC.exists():
        # Debian's documented switch: exit 101 = "action forbidden", so postinst starts nothing
        POLICY_RC.write_text(f"#!/bin/sh\n# written by akacdn {who} during its apt-get install\nexit 101\n")
        POLICY_RC.chmod(0o755)
        made_policy = True
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, stdout=subprocess.DEVNULL)
    finally:
        if made_policy:
            POLICY_RC.unlink(missing_ok=True)
    for svc, daemon in services.items():
        started = _pids_named(daemon) - before[svc]
        if not started:
            continue
        print(f"{who}: apt-get started the {svc} service; stopping it", flush=True)
        subprocess.run(["service", svc, "stop"], capture_output=True)
        for pid in _pids_named(daemon) & started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def port_in_use(addr: str, port: int) -> bool:
    """True when something already holds addr:port over UDP (e.g. a system NSD on 0.0.0.0:53)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((addr, port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def who_listens(port: int) -> str:
    out = subprocess.run(["ss", "-Hlunp", f"sport = :{port}"], capture_output=True, text=True).stdout
    return out.strip() or "(unknown)"


# versions and machine facts ------------------------------------------------------------
def _first_line(cmd: list[str], pattern: str = r"(\d+\.\d+[\w.\-]*)") -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    m = re.search(pattern, p.stdout + p.stderr)
    return m.group(1) if m else (p.stdout + p.stderr).strip().splitlines()[0] if (p.stdout + p.stderr).strip() else "?"


def versions(python: str) -> dict[str, str]:
    return {
        "nsd": _first_line(["nsd", "-v"]),
        "knot": _first_line(["knotd", "--version"]),
        "dnsperf": _first_line(["dnsperf", "-h"], r"DNS Performance Testing Tool\s+Version\s+(\S+)"),
        "python": _first_line([python, "--version"]),
    }


def machine_info() -> dict[str, object]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "nproc_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": platform.release(),
        "os": _os_release(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_at_start": os.getloadavg(),
    }


def _os_release() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return "?"


# CPU time of a process tree ----------------------------------------------------------
def _stat(pid: int) -> tuple[int, float] | None:
    """(ppid, utime+stime+cutime+cstime in seconds) of one process, None if it is gone.

    cutime/cstime hold the CPU of children already reaped, which are no longer in the
    tree; summing all four over the live tree counts every CPU-second once."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    ppid = int(fields[1])
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ppid, ticks / CLK_TCK


def tree_cpu(root: int) -> tuple[float, int]:
    """CPU seconds used so far by `root` and all its descendants, and how many processes
    that tree has now."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st:
                parents[int(entry)], cpu[int(entry)] = st
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    total, count, todo = 0.0, 0, [root]
    while todo:
        pid = todo.pop()
        if pid in cpu:
            total += cpu[pid]
            count += 1
        todo.extend(children.get(pid, ()))
    return total, count


def group_members(pgid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                raw = Path(f"/proc/{entry}/stat").read_text()
                if int(raw[raw.rindex(")") + 2 :].split()[2]) == pgid:
                    out.append(int(entry))
    return out


# processes we start ----------------------------------------------------------------------
def _die_with_parent() -> None:
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Procs:
    """The servers the benchmark started, by name; each in its own session."""

    logdir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        if not shutil.which(argv[0]) and not Path(argv[0]).exists():
            raise RuntimeError(f"{argv[0]} not found")
        log = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
        p = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self.procs[name] = p
        return p

    def log_tail(self, name: str, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.logdir / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, name: str, grace: float = 5.0) -> None:
        """SIGTERM the server's process group (its session: the server and the children it
        forked), wait, then SIGKILL what is left of that group."""
        p = self.procs.pop(name, None)
        if p is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        # children may outlive the leader (NSD's server processes): clear what is left of
        # the group; the kernel does not reuse a pid while it still names a live group
        if group_members(p.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(2)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)
