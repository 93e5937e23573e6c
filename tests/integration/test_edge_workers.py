"""`[edge] workers = 2`: two processes share the edge's HTTP port (SO_REUSEPORT); misses
meet across them (one origin request for a stampede), the disk tier is shared, a purge
reaches both, and /metrics adds both up."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import tomllib
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from .conftest import Proc, poll
from .semantics_origin import BIG
from .test_edge_semantics import HOST, Sem, _read_until, start_sem


@pytest.fixture
def sem2(tmp_path: Path, procs: Callable[..., Proc]) -> Sem:
    from .conftest import _nets

    return start_sem(tmp_path, next(_nets), procs, workers=2)


def fresh_connection_gets(sem: Sem, path: str, n: int) -> list[tuple[int, dict[str, str], bytes]]:
    """n concurrent GETs, each on its own connection (so the kernel spreads them over the workers)."""

    async def run() -> list[tuple[int, dict[str, str], bytes]]:
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as s:

            async def one() -> tuple[int, dict[str, str], bytes]:
                url = f"http://{sem.edge}:{sem.lay.http_port}{path}"
                async with s.get(url, headers={"Host": HOST}) as r:
                    return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()

            return await asyncio.gather(*(one() for _ in range(n)))

    return asyncio.run(run())


def metric(sem: Sem, name: str, **labels: str) -> float:
    with socket.create_connection((sem.edge, 9400), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    total = 0.0
    for line in data.decode().splitlines():
        head, _, value = line.rpartition(" ")
        metric_name, _, labelpart = head.partition("{")
        if metric_name == name and all(f'{k}="{v}"' in labelpart for k, v in labels.items()):
            total += float(value)
    return total


def served_by_workers(sem: Sem) -> set[int]:
    """PIDs of the edge's processes: the parent and its forked workers."""
    parent = sem.edge_proc.popen.pid
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return {parent, *map(int, children)}


def test_a_stampede_over_two_workers_makes_one_origin_request(sem2: Sem) -> None:
    assert len(served_by_workers(sem2)) == 2, "the edge runs as a parent and one worker"
    results = fresh_connection_gets(sem2, "/big", 200)
    assert [s for s, _, _ in results] == [200] * 200
    assert all(body == BIG for _, _, body in results), "every client gets the full, identical body"
    assert sem2.count("/big") == 1, "one origin request for 200 misses spread over 2 processes"
    # /metrics on the parent adds up both processes (workers report once a second)
    ok = poll(lambda: metric(sem2, "akacdn_edge_requests_total") >= 200, 10, every=0.2)
    assert ok, f"requests counted over both processes: {metric(sem2, 'akacdn_edge_requests_total')}"


def test_misses_that_join_a_streaming_fetch_do_not_let_the_other_worker_fetch_again(sem2: Sem) -> None:
    """A miss holds the key's lock across processes until the object is stored, not until its
    answer starts: misses arriving in the fetching process while the body streams join it and
    leave the lock alone, so the other process keeps waiting and finds the stored object."""
    from .semantics_origin import GATED

    request = f"GET /gated HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    enough = lambda b: b"\r\n\r\n" in b and len(b.split(b"\r\n\r\n", 1)[1]) >= 64 * 1024  # noqa: E731
    first = socket.create_connection((sem2.edge, sem2.lay.http_port), timeout=10)
    wave: list[socket.socket] = []
    try:
        first.sendall(request)
        streamed = _read_until(first, b"", enough)
        assert streamed.startswith(b"HTTP/1.1 200"), streamed[:200]
        # 20 more misses on fresh connections: the kernel spreads them over both processes
        wave = [socket.create_connection((sem2.edge, sem2.lay.http_port), timeout=10) for _ in range(20)]
        for s in wave:
            s.sendall(request)
        # some joined the stream in the fetching process; the other process is waiting for the lock
        joined = poll(lambda: bool(select.select(wave, [], [], 0)[0]), 10, every=0.02)
        assert joined, "a miss in the fetching process joined its stream"
        ok = poll(lambda: metric(sem2, "akacdn_edge_miss_lock_waits_total") >= 1, 10, every=0.1)
        assert ok, "a miss in the other process waits for the fetching one"
        assert sem2.count("/gated") == 1, "the other process did not fetch while the body streamed"
        sem2.control("release")
        for s in [first, *wave]:
            got = _read_until(
                s,
                b"" if s is not first else streamed,
                lambda b: enough(b) and len(b.split(b"\r\n\r\n", 1)[1]) >= len(GATED),
            )
            assert got.split(b"\r\n\r\n", 1)[1] == GATED
    finally:
        for s in [first, *wave]:
            s.close()
    assert sem2.count("/gated") == 1, "one origin request over both processes"


def test_a_purge_reaches_every_worker(sem2: Sem) -> None:
    first = fresh_connection_gets(sem2, "/fresh", 40)
    assert {h["x-origin-response"] for _, h, _ in first} == {"1"}
    assert sem2.count("/fresh") == 1
    config = tomllib.loads((sem2.edge_proc.log.parent / "net" / "network.toml").read_text())
    token = config["keys"]["purge_token"]

    async def purge() -> dict[str, object]:
        async with aiohttp.ClientSession() as s:
            body = {"kind": "url", "values": [f"http://{HOST}/fresh"]}
            headers = {"Authorization": f"Bearer {token}"}
            async with s.post(f"http://{sem2.edge}:9400/purge", json=body, headers=headers) as r:
                assert r.status == 200, await r.text()
                return json.loads(await r.text())

    assert asyncio.run(purge())["removed_here"] == 1
    # the parent passes the purge to its worker over their link: poll until both forgot it
    ok = poll(lambda: metric(sem2, "akacdn_edge_purges_total", source="parent") >= 1, 10, every=0.1)
    assert ok, "the worker applied the parent's purge"
    after = fresh_connection_gets(sem2, "/fresh", 40)
    assert {h["x-origin-response"] for _, h, _ in after} == {"2"}, "no process serves the purged copy"
    assert sem2.count("/fresh") == 2


def test_the_workers_keep_one_disk_budget_between_them(tmp_path: Path, procs: Callable[..., Proc]) -> None:
    """40 different 100 KiB objects over both processes, a disk budget of 1 MiB: the shared
    directory stays within it (one count for both processes, not a budget each)."""
    from .conftest import _nets

    sem = start_sem(tmp_path, next(_nets), procs, workers=2, disk_bytes=2**20)
    assert len(served_by_workers(sem)) == 2
    for i in range(40):
        results = fresh_connection_gets(sem, f"/big?n={i}", 4)
        assert [s for s, _, _ in results] == [200] * 4 and all(b == BIG for _, _, b in results)
    cache = sem.edge_proc.log.parent / "net" / "state" / "r1-e1" / "cache"

    def on_disk() -> int:
        return sum(p.stat().st_size for p in cache.glob("*/*") if not p.name.startswith("."))

    # the last objects are stored just after their answers went out: poll until /metrics
    # (refreshed with each heartbeat) and the directory agree, then check the budget
    ok = poll(lambda: metric(sem, "akacdn_edge_disk_bytes") == on_disk(), 10, every=0.2)
    assert ok, f"/metrics: {metric(sem, 'akacdn_edge_disk_bytes')} disk bytes, {on_disk()} on disk"
    assert 2**20 // 2 < on_disk() <= 2**20, f"{on_disk()} bytes on disk for a 1 MiB budget"
