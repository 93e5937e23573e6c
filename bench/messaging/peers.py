"""The relay-rate load through a peer broker: nats-server (Debian's 2.9.10) with nats-py,
so the akacdn relay's datagrams per CPU-second have something to be compared with.

    nats_rate(workdir, subscribers=5, rate=8000, seconds=5)   # the same keys as run.relay_rate

Theory of operation (everything on one loopback address, 127.77.60.1 by default):
  1. nats-server from a minimal config (no auth, no monitoring port, JetStream off) in a
     session of its own; installed with apt-get when missing and we are root, its
     systemd unit left stopped and disabled;
  2. `subscribers` subscriber processes (`python -m bench.messaging.peers sub`) on one
     subject; each flushes its SUB to the server, then writes a ready file, and only
     when all are ready does the publisher start;
  3. one publisher process (`... peers pub`) sends `int(rate * seconds)` checkable
     bodies (`node.make_body`) on the same schedule as `bench.messaging.node`'s
     publisher (start after 1 s, paced at `rate`, then flush and linger 1 s);
  4. nats-server's utime+stime and the wall clock are read just before the publisher
     starts and just after it exits, as `run.relay_rate` does for the relay;
  5. each subscriber writes how many distinct intact messages it got when it has them
     all, on SIGTERM or at its own timeout; whatever is left is stopped in `finally`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.dns.system import CLK_TCK, Procs, install_debs, missing_debs

from .node import check_body, make_body

ROOT = Path(__file__).resolve().parents[2]  # so `python -m bench...` works from any cwd
SUBJECT = "bench"
NATS_PORT = 4222
START_AFTER = 1.0  # the same pauses as lab.publish uses for the akacdn relay
LINGER = 1.0
UNIT = "nats-server.service"


def say(msg: str) -> None:
    print(f"bench-messaging: {msg}", flush=True)


def cpu_seconds(pid: int) -> float:
    """utime+stime of one process (all its threads), as run.cpu_seconds reads the relay's."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# the server ------------------------------------------------------------------------------
def nats_binary() -> str | None:
    """The nats-server program; Debian puts it in /usr/sbin, which a user's PATH may lack."""
    return shutil.which("nats-server") or next((p for p in ("/usr/sbin/nats-server",) if Path(p).exists()), None)


def ensure_nats(install: bool = True) -> str:
    """nats-server's path and nats-py importable, installing the Debian package when
    missing (root only); RuntimeError saying what to install otherwise."""
    if importlib.util.find_spec("nats") is None:
        raise RuntimeError(
            f"nats-py missing: {sys.executable} -m pip install nats-py==2.16.0 (or pip install -e '.[bench]')"
        )
    binary = nats_binary()
    if binary:
        return binary
    if not install or os.geteuid() != 0:
        raise RuntimeError("nats-server missing: run as root without --no-install, or apt-get install nats-server")
    try:
        # no init script; apt would only enable (and with systemd running, start) the unit
        install_debs(("nats-server",), services={"nats-server": "nats-server"}, who="bench-messaging")
    except (subprocess.CalledProcessError, OSError, SystemExit) as e:
        raise RuntimeError(f"nats-server missing and apt-get install nats-server failed: {e}") from e
    _disable_unit()
    binary = nats_binary()
    if not binary or missing_debs(("nats-server",)):
        raise RuntimeError("nats-server missing after apt-get install nats-server")
    return binary


def _disable_unit() -> None:
    """Undo the postinst's `deb-systemd-helper enable`: the benchmark wants the binary,
    not a broker that comes up at the next boot. Works without a running systemd."""
    for cmd in (["systemctl", "disable", "--quiet", UNIT], ["deb-systemd-helper", "disable", UNIT]):
        if shutil.which(cmd[0]) and subprocess.run(cmd, capture_output=True).returncode == 0:
            return
    say(f"could not disable {UNIT}; it is installed but not running")


def nats_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    m = re.search(r"v?(\d+\.\d+\.\d+)", out.stdout + out.stderr)
    return f"nats-server {m.group(1) if m else '?'}"


def free_port(address: str, preferred: int = NATS_PORT) -> int:
    """`preferred` when nothing holds it on `address`, else one the kernel picks."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((address, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError(f"no free TCP port on {address}")


def write_conf(workdir: Path, address: str, port: int) -> Path:
    """Defaults otherwise (max_payload 1 MB, no JetStream); no `http` key: no monitoring."""
    conf = workdir / "nats-server.conf"
    conf.write_text(f'listen: "{address}:{port}"\nserver_name: "akacdn-bench"\n')
    return conf


def wait_listening(procs: Procs, name: str, address: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=0.5):
            return
        if procs.procs[name].poll() is not None:
            raise RuntimeError(f"nats-server exited: {procs.log_tail(name)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nats-server did not listen on {address}:{port} in {timeout:g}s")
        time.sleep(0.05)


# the run ---------------------------------------------------------------------------------
def _python(role: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "bench.messaging.peers", role, *args]


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{path}" if path else str(ROOT))


def wait_files(procs: Procs, names: list[str], files: list[Path], timeout: float, what: str) -> bool:
    """Until every file exists; False at the timeout; RuntimeError when one of `names`
    died without writing its file."""
    deadline = time.monotonic() + timeout
    while not all(f.exists() for f in files):
        for n, f in zip(names, files, strict=True):
            if not f.exists() and procs.procs[n].poll() is not None:
                raise RuntimeError(f"{n} exited before {what}: {procs.log_tail(n)}")
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def run_publisher(procs: Procs, url: str, count: int, rate: float, size: int) -> None:
    args = ["--server", url, "--count", str(count), "--rate", str(rate), "--size", str(size)]
    proc = procs.start("nats-pub", _python("pub", *args), env=_env())
    limit = time.monotonic() + START_AFTER + count / rate + LINGER + 120
    while proc.poll() is None:
        if time.monotonic() > limit:
            raise RuntimeError("the nats publisher did not finish")
        time.sleep(0.05)
    if proc.returncode != 0:
        raise RuntimeError(f"nats publisher exited {proc.returncode}: {procs.log_tail('nats-pub')}")
    procs.procs.pop("nats-pub", None)


def nats_rate(
    workdir: Path,
    subscribers: int,
    rate: float,
    seconds: float,
    size: int = 300,
    address: str = "127.77.60.1",
    install: bool = True,
) -> dict[str, Any]:
    """run.relay_rate's measurement with nats-server as the relay (see the module doc)."""
    binary = ensure_nats(install)
    workdir.mkdir(parents=True, exist_ok=True)
    procs = Procs(workdir)
    count = int(rate * seconds)
    try:
        port = free_port(address)
        url = f"nats://{address}:{port}"
        server = procs.start("nats-server", [binary, "-c", str(write_conf(workdir, address, port))])
        wait_listening(procs, "nats-server", address, port)
        subs = [f"nats-sub{i}" for i in range(1, subscribers + 1)]
        ready = [workdir / f"{s}.ready" for s in subs]
        outs = [workdir / f"{s}.json" for s in subs]
        timeout = START_AFTER + seconds + LINGER + 180  # a subscriber's own backstop
        for s, r, o in zip(subs, ready, outs, strict=True):
            args = [
                "--server",
                url,
                "--count",
                str(count),
                "--ready",
                str(r),
                "--out",
                str(o),
                "--timeout",
                f"{timeout}",
            ]
            procs.start(s, _python("sub", *args), env=_env())
        if not wait_files(procs, subs, ready, 60.0, "subscribing"):
            raise RuntimeError("nats subscribers did not all subscribe in 60 s")
        cpu0, wall0 = cpu_seconds(server.pid), time.monotonic()
        run_publisher(procs, url, count, rate, size)
        cpu, wall = cpu_seconds(server.pid) - cpu0, time.monotonic() - wall0
        wait_files(procs, subs, outs, 5.0, "writing its count")  # the stragglers get SIGTERM next
        for s in subs:
            procs.stop(s)
        got = [json.loads(o.read_text())["received"] if o.exists() else 0 for o in outs]
        return {
            "server": nats_version(binary),
            "subscribers": subscribers,
            "messages_offered": count,
            "datagrams_in": count,  # TCP: whatever the publisher wrote and flushed reached the server
            "datagrams_out": sum(got),
            "relay_cpu_s": cpu,
            "wall_s": wall,
            "in_per_cpu_s": count / cpu if cpu else float("nan"),
            "out_per_cpu_s": sum(got) / cpu if cpu else float("nan"),
            "out_per_s": sum(got) / wall,
            "relay_dropped": 0,
            "delivered_ratio_min": min(got) / count if count and got else float("nan"),
        }
    finally:
        procs.stop_all()


# the processes ---------------------------------------------------------------------------
async def _connect(url: str) -> Any:
    import nats

    return await nats.connect(url, allow_reconnect=False, connect_timeout=5)


async def subscriber(a: argparse.Namespace) -> None:
    """Count distinct intact messages; write the count when all arrived, on SIGTERM, or
    at --timeout after subscribing."""
    seen: set[int] = set()
    damaged = 0
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, done.set)

    async def on_message(msg: Any) -> None:
        nonlocal damaged
        index, ok = check_body(msg.data)
        if not ok:
            damaged += 1
        elif 0 <= index < a.count:
            seen.add(index)
            if len(seen) == a.count:
                done.set()

    nc = await _connect(a.server)
    try:
        await nc.subscribe(a.subject, cb=on_message)
        await nc.flush()  # the server has our SUB: the publisher may start
        _write(a.ready, {"ready": True})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), a.timeout)
        _write(a.out, {"received": len(seen), "damaged": damaged})
    finally:
        await nc.close()


async def publisher(a: argparse.Namespace) -> None:
    """node.py's publisher schedule: after --start-after, message i at begin + i/rate
    (late ones go at once), then flush (a PING answered) and linger."""
    nc = await _connect(a.server)
    try:
        await asyncio.sleep(a.start_after)
        loop = asyncio.get_running_loop()
        begin = loop.time()
        for i in range(a.count):
            if (wait := begin + i / a.rate - loop.time()) > 0:
                await asyncio.sleep(wait)
            await nc.publish(a.subject, make_body(i, a.size))
        await nc.flush(timeout=60)
        await asyncio.sleep(a.linger)
    finally:
        await nc.close()


def _write(path: Path, doc: dict[str, Any]) -> None:
    """Whole or not at all: the parent polls for the file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.messaging.peers", description=__doc__.split("\n")[0])
    p.add_argument("role", choices=["pub", "sub"])
    p.add_argument("--server", required=True, help="nats://address:port")
    p.add_argument("--subject", default=SUBJECT)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--rate", type=float, default=1000.0, help="messages per second (pub)")
    p.add_argument("--size", type=int, default=300)
    p.add_argument("--start-after", type=float, default=START_AFTER)
    p.add_argument("--linger", type=float, default=LINGER)
    p.add_argument("--ready", type=Path, help="written once subscribed (sub)")
    p.add_argument("--out", type=Path, help="the count goes here (sub)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds after subscribing (sub)")
    a = p.parse_args(argv)
    if a.role == "sub" and (a.ready is None or a.out is None):
        p.error("sub needs --ready and --out")
    asyncio.run(subscriber(a) if a.role == "sub" else publisher(a))
    return 0


if __name__ == "__main__":
    sys.exit(main())
