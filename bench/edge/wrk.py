"""Running wrk and reading its output (requests/s, latency percentiles, errors)."""

from __future__ import annotations

import re
import resource
import subprocess
from dataclasses import asdict, dataclass, field

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass
class Result:
    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    bytes_read: float = 0.0
    percentiles: dict[str, float] = field(default_factory=dict)  # "50" -> seconds
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)  # connect/read/write/timeout
    client_cpu: float = 0.0  # wrk's own CPU seconds
    error: str = ""

    @property
    def p99(self) -> float | None:
        return self.percentiles.get("99")

    def as_dict(self) -> dict[str, object]:
        return asdict(self) | {"p99": self.p99}


def seconds(text: str) -> float:
    """'1.23ms' -> 0.00123; '980.00us', '2.01s', '1.00m'."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def size(text: str) -> float:
    """'12.34MB' -> bytes (wrk's binary units)."""
    m = re.fullmatch(r"([\d.]+)([KMGT]?B)", text.strip())
    if not m:
        raise ValueError(f"not a wrk size: {text!r}")
    return float(m.group(1)) * 1024 ** "BKMGT".index(m.group(2)[0])


def parse(out: str) -> Result:
    r = Result()
    m = re.search(r"^\s*(\d+) requests in ([\d.]+\w+), ([\d.]+\w?B) read", out, re.M)
    if m:
        r.requests, r.seconds, r.bytes_read = int(m.group(1)), seconds(m.group(2)), size(m.group(3))
    m = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if m:
        r.rps = float(m.group(1))
    dist = out.split("Latency Distribution", 1)
    if len(dist) == 2:
        for pct, value in re.findall(r"^\s+(\d+(?:\.\d+)?)%\s+([\d.]+\w+)\s*$", dist[1], re.M):
            r.percentiles[pct.rstrip("0").rstrip(".") if "." in pct else pct] = seconds(value)
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        r.non_2xx = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r.socket_errors = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True))
    if not r.requests:
        r.error = "wrk reported no requests: " + (out.strip().splitlines() or ["(no output)"])[-1]
    return r


def argv(
    url: str, host: str, connections: int, duration: float, threads: int = 1, extra: tuple[str, ...] = ()
) -> list[str]:
    """wrk's command line; `extra`: more request fields (e.g. `Connection: close`, which makes
    wrk open, and over https handshake, a new connection for every request)."""
    fields = [arg for f in extra for arg in ("-H", f)]
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "5s",
        "-H",
        f"Host: {host}",
        *fields,
        url,
    ]


def run(
    url: str, host: str, connections: int, duration: float, threads: int = 1, extra: tuple[str, ...] = ()
) -> tuple[Result, str]:
    """Run wrk to the end; returns the parsed result and wrk's output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(
        argv(url, host, connections, duration, threads, extra), capture_output=True, text=True, timeout=duration + 60
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = p.stdout + p.stderr
    r = parse(out)
    r.client_cpu = round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 3)
    if p.returncode != 0 and not r.error:
        r.error = f"wrk exited with {p.returncode}"
    return r, out
