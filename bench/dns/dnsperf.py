"""Running dnsperf and reading what it prints.

dnsperf 2.10 (Debian 12) prints the average, minimum and maximum latency but no
percentiles; with `-v` it prints one line per answer with its latency
(`> NOERROR binary input 0.000182`), from which `percentiles` computes p50/p99. The
verbose output goes to a file and is read after the run, so reading it costs the
measured servers nothing (dnsperf itself sends ~5% fewer queries with `-v`).
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class PerfResult:
    sent: int = 0
    completed: int = 0
    lost: int = 0
    rcodes: dict[str, int] = field(default_factory=dict)
    runtime: float = 0.0
    qps: float = 0.0
    avg_latency: float = 0.0
    min_latency: float = 0.0
    max_latency: float = 0.0
    p50_latency: float | None = None
    p99_latency: float | None = None
    client_cpu: float = 0.0  # dnsperf's own CPU seconds
    error: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


_NUM = {
    "sent": r"Queries sent:\s+(\d+)",
    "completed": r"Queries completed:\s+(\d+)",
    "lost": r"Queries lost:\s+(\d+)",
    "runtime": r"Run time \(s\):\s+([\d.]+)",
    "qps": r"Queries per second:\s+([\d.]+)",
}
_LAT = re.compile(r"Average Latency \(s\):\s+([\d.]+) \(min ([\d.]+), max ([\d.]+)\)")
_RCODES = re.compile(r"Response codes:\s+(.*)")


def parse_summary(text: str) -> PerfResult:
    r = PerfResult()
    for name, pat in _NUM.items():
        m = re.search(pat, text)
        if m:
            setattr(r, name, type(getattr(r, name))(m.group(1)))
    m = _LAT.search(text)
    if m:
        r.avg_latency, r.min_latency, r.max_latency = (float(x) for x in m.groups())
    m = _RCODES.search(text)
    if m:
        for code, count in re.findall(r"([A-Z]+) (\d+)", m.group(1)):
            r.rcodes[code] = int(count)
    return r


def percentiles(path: Path, qs: tuple[float, ...] = (0.5, 0.99)) -> list[float] | None:
    """Latency percentiles from dnsperf -v output (answered queries only)."""
    lat: list[float] = []
    with open(path, "rb") as f:
        for line in f:
            if line.startswith(b"> ") and not line.startswith((b"> T ", b"> I ")):
                try:
                    lat.append(float(line.rsplit(None, 1)[1]))
                except (ValueError, IndexError):
                    pass
    if not lat:
        return None
    lat.sort()
    return [lat[min(len(lat) - 1, int(q * len(lat)))] for q in qs]


@dataclass
class Load:
    """What dnsperf is told to do."""

    seconds: float
    clients: int = 8
    threads: int = 1
    outstanding: int = 200
    max_qps: int = 0
    timeout: float = 2.0


def run(server: str, port: int, datafile: Path, load: Load, out: Path, verbose: bool) -> PerfResult:
    """One dnsperf run against server:port with a binary (-B) query file; blocks until it
    ends. Its stdout (summary, and per-answer lines when verbose) is kept in `out`;
    `add_percentiles` reads the latter."""
    argv = [
        "dnsperf",
        "-B",
        "-d", str(datafile),
        "-s", server,
        "-p", str(port),
        "-l", f"{load.seconds:g}",
        "-c", str(load.clients),
        "-T", str(load.threads),
        "-q", str(load.outstanding),
        "-t", f"{load.timeout:g}",
    ]  # fmt: skip
    if load.max_qps:
        argv += ["-Q", str(load.max_qps)]
    if verbose:
        argv.append("-v")
    with open(out, "wb") as f:
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            _, status, usage = os.wait4(p.pid, 0)
        except BaseException:
            p.kill()  # Ctrl-C: dnsperf is ours; do not leave it running
            p.wait()
            raise
        p.returncode = os.waitstatus_to_exitcode(status)
    text = _summary_text(out)
    r = parse_summary(text)
    r.client_cpu = usage.ru_utime + usage.ru_stime
    if p.returncode != 0 or not r.runtime:
        r.error = f"dnsperf exited {p.returncode}: " + " | ".join(text.strip().splitlines()[-5:])
    return r


def add_percentiles(r: PerfResult, out: Path) -> None:
    """p50/p99 from the per-answer lines of a verbose run (read after the CPU readings)."""
    if r.completed:
        got = percentiles(out)
        if got:
            r.p50_latency, r.p99_latency = got


def _summary_text(path: Path, tail: int = 8192) -> str:
    """The end of dnsperf's output (the statistics), without reading a large -v file whole."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - tail))
        return f.read().decode(errors="replace")
