"""Fixtures for integration tests: a real devnet (every daemon its own process on
loopback), real `dig`, real `curl`, real unbound."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from akacdn.devnet.network import default_layout
from akacdn.devnet.supervisor import Devnet

# a second octet per devnet, so tests never meet a `make run` devnet (127.0.x.y) or each other
_nets = itertools.count(100 + os.getpid() % 60 * 2)


@dataclass
class Dig:
    status: str
    flags: set[str]
    answer: list[tuple[str, int, str, str]] = field(default_factory=list)
    authority: list[tuple[str, int, str, str]] = field(default_factory=list)
    additional: list[tuple[str, int, str, str]] = field(default_factory=list)

    def addresses(self) -> list[str]:
        return [data for _, _, rtype, data in self.answer if rtype == "A"]


def dig(server: str, port: int, name: str, qtype: str = "A", *opts: str) -> Dig:
    """Run the real dig and parse its sections."""
    out = subprocess.run(
        ["dig", f"@{server}", "-p", str(port), name, qtype, "+tries=1", "+time=2", *opts],
        capture_output=True,
        text=True,
        timeout=15,
    ).stdout
    m = re.search(r"status: (\w+)", out)
    f = re.search(r";; flags: ([^;]*);", out)
    res = Dig(m.group(1) if m else "TIMEOUT", set(f.group(1).split()) if f else set())
    section = None
    for line in out.splitlines():
        if line.startswith(";; ANSWER SECTION"):
            section = res.answer
        elif line.startswith(";; AUTHORITY SECTION"):
            section = res.authority
        elif line.startswith(";; ADDITIONAL SECTION"):
            section = res.additional
        elif not line.strip():
            section = None
        elif section is not None and not line.startswith(";"):
            parts = line.split(None, 4)
            if len(parts) == 5:
                section.append((parts[0], int(parts[1]), parts[3], parts[4]))
    return res


def curl(url: str, *opts: str) -> tuple[int, dict[str, str], bytes]:
    """Run the real curl; returns (status, headers lower-cased, body)."""
    p = subprocess.run(["curl", "-s", "-D", "-", "--max-time", "10", *opts, url], capture_output=True, timeout=20)
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def wait_for(check: Callable[[], object], timeout: float, what: str, every: float = 0.1) -> object:
    """Poll `check` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def _tools() -> None:
    missing = [t for t in ("dig", "curl") if not shutil.which(t)]
    if missing:
        pytest.fail(f"missing tools {missing}: run `make test`, which installs them")


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[Devnet]:
    """A running devnet (with an unbound resolver), stopped after the test."""
    _tools()
    dn = Devnet(tmp_path / "devnet", default_layout(next(_nets)))
    if dn.unbound is None:
        pytest.fail("unbound is not installed: run `make test`, which installs it")
    try:
        dn.start(timeout=30)
        yield dn
    finally:
        dn.stop()
