"""Runtime pieces every daemon shares: logs, atomic files, sd_notify, readiness."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from akacdn.devnet.network import Layout, write_config
from akacdn.runtime import Log, atomic_write, sd_notify


def test_log_is_one_json_object_per_line_naming_the_machine() -> None:
    out = io.StringIO()
    log = Log("edge", "r1-e1", "r1", out=out)
    log.info("started", port=80)
    rec = json.loads(out.getvalue().splitlines()[0])
    assert rec["component"] == "edge" and rec["machine"] == "r1-e1" and rec["region"] == "r1"
    assert rec["event"] == "started" and rec["port"] == 80


def test_rate_limited_log_counts_what_it_suppressed() -> None:
    out = io.StringIO()
    log = Log("llns", "m", "r", out=out)
    for _ in range(50):
        log.limited("bad_packet", every=3600)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and log.suppressed == 49


def test_atomic_write_replaces_whole_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "state" / "lkg.map"
    atomic_write(target, b"old")
    atomic_write(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert sorted(p.name for p in target.parent.iterdir()) == ["lkg.map"]


def test_sd_notify_sends_one_datagram_to_the_abstract_socket(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    name = f"akacdn-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify("READY=1\nSTATUS=serving")
        assert s.recv(100) == b"READY=1\nSTATUS=serving"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sd_notify("READY=1")


def test_daemon_says_ready_to_systemd_only_once_its_socket_is_bound(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, Layout(net=251, dns_port=5353, http_port=8080))
    sock = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(sock))
        s.settimeout(20)
        env = dict(os.environ, NOTIFY_SOCKET=str(sock))
        p = subprocess.Popen(
            [sys.executable, "-m", "akacdn", "relay", "--config", str(cfg), "--machine", "relay1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            assert s.recv(100).startswith(b"READY=1")
            # the messaging port is bound now: binding it again must fail
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind(("127.251.20.1", 7400))
                    bound_by_relay = False
                except OSError:
                    bound_by_relay = True
            assert bound_by_relay
        finally:
            p.terminate()
            assert p.wait(10) == 0
