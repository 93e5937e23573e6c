"""`[dns] workers = 2`: two processes on SO_REUSEPORT, fed maps and reloads by the parent."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from akacdn.config import load_network
from akacdn.devnet.network import Layout, write_config
from akacdn.devnet.supervisor import http_get
from akacdn.mapping.seed import write_seed_maps

from .conftest import _nets, wait_for


def query(addr: str, name: str, sock: socket.socket) -> dns.message.Message:
    sock.sendto(dns.message.make_query(name, "A").to_wire(), (addr, 53))
    return dns.message.from_wire(sock.recv(4096))


@pytest.fixture
def llns(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    net_id = next(_nets)
    cfg = write_config(tmp_path, Layout(net=net_id, dns_port=53, http_port=80))
    cfg.write_text(cfg.read_text().replace("workers = 1", "workers = 2"))
    write_seed_maps(load_network(cfg))
    addr = f"127.{net_id}.1.1"
    p = subprocess.Popen(
        [sys.executable, "-m", "akacdn", "llns", "--config", str(cfg), "--machine", "r1-llns"],
        stdout=open(tmp_path / "llns.log", "wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: http_get(f"http://{addr}:9400/readyz")[0] == 200, 20, "the LLNS to be ready")
        yield p, addr, tmp_path
    finally:
        if p.poll() is None:
            p.terminate()
            p.wait(10)
        subprocess.run(["pkill", "-f", str(cfg)], check=False)


def processes(cfg_dir: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-f", str(cfg_dir / "network.toml")], capture_output=True, text=True)
    return out.stdout.split()


def answered_by_all_sockets(addr: str, name: str, tries: int = 64) -> set[int]:
    """Query from many source ports (SO_REUSEPORT spreads them by 4-tuple); the rcodes seen."""
    rcodes = set()
    for _ in range(tries):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            rcodes.add(query(addr, name, s).rcode())
    return rcodes


def test_two_workers_share_the_port_and_follow_reloads(llns) -> None:  # type: ignore[no-untyped-def]
    p, addr, d = llns
    wait_for(lambda: len(processes(d)) == 2, 10, "two processes")
    assert answered_by_all_sockets(addr, "a123.g.akacdn.test") == {dns.rcode.NOERROR}
    # both processes' counters add up in the parent's /metrics (workers report every second)
    wait_for(
        lambda: b'akacdn_dns_replies_total{kind="answer",transport="udp"} 2.0' in http_get(f"http://{addr}:9400/metrics")[1],
        10, "answers from both processes to be counted",
    )  # fmt: skip

    customers = d / "customers.toml"
    customers.write_text(
        customers.read_text() + '\n[[customers]]\nname = "late"\nserial = 777\norigin = "http://127.0.0.1:9"\n'
    )
    p.send_signal(signal.SIGHUP)
    wait_for(lambda: answered_by_all_sockets(addr, "a777.g.akacdn.test", 16) == {dns.rcode.NOERROR}, 10,
             "every process to take the reload")  # fmt: skip


def test_a_lost_worker_fails_the_daemon_for_a_clean_restart(llns) -> None:  # type: ignore[no-untyped-def]
    p, addr, d = llns
    wait_for(lambda: len(processes(d)) == 2, 10, "two processes")
    worker = max(int(x) for x in processes(d) if int(x) != p.pid)
    subprocess.run(["kill", "-9", str(worker)], check=True)
    assert p.wait(10) != 0
    assert processes(d) == []
