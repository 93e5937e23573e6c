"""Fixtures for integration tests: a real devnet (every daemon its own process on
loopback), real `dig`, real `curl`, real unbound."""

from __future__ import annotations

import ctypes
import itertools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from akacdn.devnet.network import Tweak, default_layout
from akacdn.devnet.supervisor import Devnet

# A second octet per devnet, so tests never meet a `make run` devnet (127.0.x.y) or each other. The
# octets cycle through 100..249 (a run uses a few dozen; a devnet's octet is free again long before the
# cycle comes back to it); the start depends on the pid so two runs side by side rarely share one.
_NET_FIRST, _NET_COUNT = 100, 150
_nets = (_NET_FIRST + (os.getpid() % 75 * 2 + i) % _NET_COUNT for i in itertools.count())


@dataclass
class Dig:
    status: str
    flags: set[str]
    answer: list[tuple[str, int, str, str]] = field(default_factory=list)
    authority: list[tuple[str, int, str, str]] = field(default_factory=list)
    additional: list[tuple[str, int, str, str]] = field(default_factory=list)
    question: list[tuple[str, str, str]] = field(default_factory=list)  # (name, class, type)
    # the reply's OPT record as dig prints it: None when the reply had none, else
    # {"version": "0", "flags": "do", "udp": "1232"}
    edns: dict[str, str] | None = None
    # EDNS options by dig's name for them: NSID, CLIENT-SUBNET, COOKIE, OPT=65001, ...
    options: dict[str, str] = field(default_factory=dict)
    transport: str = ""  # "UDP" or "TCP": how the reply dig printed came
    size: int = 0  # MSG SIZE rcvd
    output: str = ""  # dig's whole output, for failure messages

    def addresses(self) -> list[str]:
        return [data for _, _, rtype, data in self.answer if rtype == "A"]

    def nsid(self) -> str | None:
        """The NSID option's text (dig prints the bytes, then the text in quotes)."""
        raw = self.options.get("NSID")
        if raw is None:
            return None
        m = re.search(r'\("(.*)"\)\s*$', raw)
        return m.group(1) if m else raw


def dig(server: str, port: int, name: str, qtype: str = "A", *opts: str) -> Dig:
    """Run the real dig and parse its sections (and the OPT pseudosection)."""
    out = subprocess.run(
        ["dig", f"@{server}", "-p", str(port), name, qtype, "+tries=1", "+time=2", *opts],
        capture_output=True,
        text=True,
        timeout=15,
    ).stdout
    return parse_dig(out)


def parse_dig(out: str) -> Dig:
    m = re.search(r"status: (\w+)", out)
    f = re.search(r";; flags: ([^;]*);", out)
    res = Dig(m.group(1) if m else "TIMEOUT", set(f.group(1).split()) if f else set(), output=out)
    if t := re.search(r"^;; SERVER: .*\((UDP|TCP)\)\s*$", out, re.M):
        res.transport = t.group(1)
    if z := re.search(r"^;; MSG SIZE\s+rcvd: (\d+)", out, re.M):
        res.size = int(z.group(1))
    section = None
    mode = ""
    for line in out.splitlines():
        if line.startswith(";; OPT PSEUDOSECTION"):
            mode, section, res.edns = "opt", None, {}
        elif line.startswith(";; QUESTION SECTION"):
            mode, section = "question", None
        elif line.startswith(";; ANSWER SECTION"):
            mode, section = "", res.answer
        elif line.startswith(";; AUTHORITY SECTION"):
            mode, section = "", res.authority
        elif line.startswith(";; ADDITIONAL SECTION"):
            mode, section = "", res.additional
        elif not line.strip() or line.startswith(";;"):
            mode, section = "", None
        elif mode == "opt" and res.edns is not None and line.startswith("; "):
            key, _, value = line[2:].partition(": ")
            if key == "EDNS":
                for k, pat in (("version", r"version: (\d+)"), ("flags", r"flags:([^;]*);"), ("udp", r"udp: (\d+)")):
                    if g := re.search(pat, value):
                        res.edns[k] = g.group(1).strip()
            else:
                res.options[key] = value.strip()
        elif mode == "question" and line.startswith(";"):
            parts = line[1:].split()
            if len(parts) == 3:
                res.question.append((parts[0], parts[1], parts[2]))
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


def poll(check: Callable[[], object], timeout: float, every: float = 0.1) -> object:
    """Like `wait_for`, but at the deadline return the last (falsy) result instead of failing."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(every)


def wait_for_full_referrals(dn: Devnet, timeout: float = 20.0) -> None:
    """Wait until every TLNS refers to LLNSes of every region.

    `Devnet.start` returns when each daemon has *a* map, not the whole network's: the
    mapping center names the LLNSes in its top map as their heartbeats arrive (one region,
    then two, then three, within a second or so of the TLNSes being ready), so a referral
    taken right after start may still change."""
    regions = {m.address: m.region for m in dn.net.by_role("llns")}
    name = f"a123.g.{dn.net.base_domain}"

    def full() -> bool:
        for tlns in dn.layout.tlns:
            glue = {a for *_, a in dig(tlns, dn.layout.dns_port, name, "A", "+norec").additional}
            if {regions.get(a) for a in glue} - {None} != set(regions.values()):
                return False
        return True

    wait_for(full, timeout, "every TLNS to refer to the LLNSes of every region")


def _tools() -> None:
    missing = [t for t in ("dig", "curl") if not shutil.which(t)]
    if missing:
        pytest.fail(f"missing tools {missing}: run `make test`, which installs them")


@contextmanager
def running_devnet(directory: Path) -> Iterator[Devnet]:
    """A devnet (with an unbound resolver) on a fresh 127.<net>.x.y range, always stopped."""
    _tools()
    dn = Devnet(directory, default_layout(next(_nets)))
    if dn.unbound is None:
        pytest.fail("unbound is not installed: run `make test`, which installs it")
    try:
        dn.start(timeout=30)
        wait_for_full_referrals(dn)
        yield dn
    finally:
        dn.stop()


@contextmanager
def supervised_devnet(directory: Path, tweak: Tweak) -> Iterator[Devnet]:
    """A devnet with its config changed by `tweak` (no resolver) whose processes are
    restarted when they end, as systemd would; always stopped."""
    dn = Devnet(directory, default_layout(next(_nets)), resolver=False, tweak=tweak)
    try:
        dn.start(timeout=30)
        wait_for_full_referrals(dn)
        dn.supervise()
        yield dn
    finally:
        dn.stop()


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[Devnet]:
    """A running devnet (with an unbound resolver), stopped after the test."""
    with running_devnet(tmp_path / "devnet") as dn:
        yield dn


@pytest.fixture(scope="module")
def module_devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    """One running devnet shared by the tests of a module: for tests that only look
    (queries, counters compared before/after) and change nothing in it."""
    with running_devnet(tmp_path_factory.mktemp("devnet")) as dn:
        yield dn


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class Proc:
    """A helper process a test started (a resolver, ...): its log and how to stop it."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, grace: float = 5.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@pytest.fixture
def procs() -> Iterator[Callable[..., Proc]]:
    """Start helper processes (`procs(name, argv, log)`); every one is stopped at teardown,
    also when the test failed."""
    started: list[Proc] = []

    def start(name: str, argv: list[str], log: Path) -> Proc:
        with open(log, "ab") as out:
            p = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        proc = Proc(name, p, log)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in reversed(started):
            proc.stop()
