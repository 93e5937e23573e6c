"""The edge's own Python per plain hit, measured in one process: no sockets, no wrk.

    python -m bench.edge.inprocess [--requests 200000] [--repeat 5]

A real edge (`Edge`, the bench network's config) stores one object per size from the
benchmark's origin (run in the same event loop), then one client `Connection` is fed the
same keep-alive request over and over. Its transport is a stand-in: a 1 KiB hit's
`writelines` only counts, a 100 KiB hit's head `write` only counts and the `sendfile(2)`
of its body goes to /dev/null. For the 100 KiB hit that bare `sendfile` to /dev/null is
timed alone and taken off, so what is
left is the edge's Python: parse callbacks, the key memo, the store, the tail, counters.

What this leaves out, and `bench.edge.run` has: uvloop's read dispatch, the syscalls, the
TCP stack. Best of `--repeat` timings; prints a table, writes
bench/results/edge-inprocess.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web

from akacdn.config import load_network
from akacdn.edge.http1 import Connection, Http1Server
from akacdn.edge.message import Request
from akacdn.edge.server import Edge
from akacdn.runtime import Runtime
from bench.common import RESULTS
from bench.edge import network, origin, system

SIZES = (1024, 100 * 1024)


class _Socket:
    def __init__(self) -> None:
        self.fd = os.open(os.devnull, os.O_WRONLY)

    def fileno(self) -> int:
        return self.fd


class _Transport:
    """What `Connection` asks of a transport; answers written from memory are counted."""

    def __init__(self) -> None:
        self.socket = _Socket()
        self.writes = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"socket": self.socket, "peername": ("127.0.0.1", 40000)}.get(name, default)

    def get_write_buffer_size(self) -> int:
        return 0

    def writelines(self, data: list[bytes]) -> None:
        self.writes += 1

    def write(self, data: bytes) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _best(fn: Any, n: int, repeat: int) -> float:
    """Seconds per call, best of `repeat` rounds of `n` calls."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


async def _one(edge: Edge, size: int, n: int, repeat: int) -> dict[str, object]:
    """Store one object of `size` (a miss), then time its plain hits."""
    target = f"/obj/inprocess-{size}"
    resp = await edge.handler.handle(Request("GET", target, [("Host", network.HOST)], "127.0.0.1"))
    if not isinstance(resp.body, bytes):
        async for _ in resp.body.chunks():  # (the miss is stored as it streams)
            pass
    conn, transport = Connection(Http1Server(edge.handler)), _Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    ask = f"GET {target} HTTP/1.1\r\nHost: {network.HOST}\r\n\r\n".encode()
    deadline = time.monotonic() + 5

    def plain_hits() -> int:
        edge.handler.flush()  # (the plain hit counts on its answer: `Handler.flush` adds up)
        return edge.handler.plain_hits

    before = plain_hits()
    while plain_hits() == before:  # (stored a moment after the body streamed)
        conn.data_received(ask)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{target}: no plain hit ({len(edge.store.memory)} objects stored)")
        await asyncio.sleep(0.01)
    before = plain_hits()
    per = _best(lambda: conn.data_received(ask), n, repeat)
    if plain_hits() - before < n * repeat:
        raise RuntimeError(f"{target}: {plain_hits() - before} plain hits for {n * repeat} requests")
    hit = edge.handler.plain_hit(False, network.HOST.encode(), target.encode(), time.time())
    bare = 0.0
    if hit is not None and not isinstance(hit, list):  # sendfile: its own cost, alone
        fd, file = transport.socket.fd, hit[1]
        at = file.body_at if file.head_first else file.start
        bare = _best(lambda: os.sendfile(fd, file.fd, at, file.size - at), n, repeat)
    return {
        "object": f"{size // 1024} KiB",
        "answer": "sendfile" if bare else "writelines",
        "per_request_us": round(per * 1e6, 3),
        "bare_sendfile_us": round(bare * 1e6, 3) if bare else None,
        "edge_python_us": round((per - bare) * 1e6, 3),
    }


async def measure(n: int, repeat: int, tmp: Path) -> list[dict[str, object]]:
    runner = web.AppRunner(origin.make_app(cold_delay=0.0))
    await runner.setup()
    site = web.TCPSite(runner, network.ORIGIN_ADDR, network.PORT)
    await site.start()
    edge = None
    try:
        path, _, _ = network.write_config(tmp, f"http://{network.ORIGIN_ADDR}:{network.PORT}")
        net = load_network(path)
        edge = Edge(Runtime(net, net.machine(network.EDGE_ID), "edge"))
        await edge.fetcher.start()
        return [await _one(edge, size, n, repeat) for size in SIZES]
    finally:
        if edge is not None:
            await edge.fetcher.close()
        await runner.cleanup()


def table(rows: list[dict[str, object]]) -> str:
    out = [
        "| object  | answer     | per request µs | bare sendfile µs | edge's Python µs |",
        "|---------|------------|---------------:|-----------------:|-----------------:|",
    ]
    for r in rows:
        bare = "-" if r["bare_sendfile_us"] is None else f"{r['bare_sendfile_us']:.2f}"
        out.append(
            f"| {r['object']:<7} | {r['answer']:<10} | {r['per_request_us']:>14.2f} | {bare:>16} "
            f"| {r['edge_python_us']:>16.2f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.edge.inprocess", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=200_000, help="requests per timing round (default 200000)")
    p.add_argument("--repeat", type=int, default=5, help="timing rounds; the best is kept (default 5)")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"where edge-inprocess.json goes (default {RESULTS})")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="akacdn-bench-inprocess-") as tmp:
        rows = uvloop.run(measure(args.requests, args.repeat, Path(tmp)))
    print(table(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "machine": system.machine_info(),
        "versions": system.versions(sys.executable),
        "settings": {"requests": args.requests, "repeat": args.repeat},
        "results": rows,
    }
    (args.out / "edge-inprocess.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"bench-edge-inprocess: wrote {args.out / 'edge-inprocess.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
