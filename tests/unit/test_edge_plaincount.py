"""What the edge counts of plain hits: the hit itself adds one to its answer
(`Prepared.hits`); `Handler.flush` adds those into the serial's row (the mapping center's
report), `served` (the heartbeat's load) and the hit counter, and the connections' requests
into the requests per client address. A real edge and a real origin in one event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import uvloop
from aiohttp import web

from akacdn.config import load_network
from akacdn.edge.http1 import Http1Server
from akacdn.edge.message import Request
from akacdn.edge.server import Edge
from akacdn.runtime import Runtime
from bench.edge import network

BODY = {"/small": b"s" * 1024, "/large": b"L" * (100 * 1024)}  # (from memory; by sendfile)


@asynccontextmanager
async def _edge(tmp_path: Path) -> AsyncIterator[Edge]:
    async def obj(req: web.Request) -> web.Response:
        return web.Response(body=BODY[req.path], headers={"Cache-Control": "max-age=3600"})

    app = web.Application()
    for path in BODY:
        app.router.add_get(path, obj)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    path, _, _ = network.write_config(tmp_path, f"http://127.0.0.1:{port}")
    net = load_network(path)
    edge = Edge(Runtime(net, net.machine(network.EDGE_ID), "edge"))
    await edge.fetcher.start()
    try:
        for target in BODY:  # the misses that store them
            resp = await edge.handler.handle(Request("GET", target, [("Host", network.HOST)], "127.0.0.1"))
            if not isinstance(resp.body, bytes):
                async for _ in resp.body.chunks():
                    pass
        yield edge
    finally:
        await edge.fetcher.close()
        await edge.handler.close()
        await runner.cleanup()


def _run(test: Callable[[Path], object], tmp_path: Path) -> None:
    uvloop.run(test(tmp_path))  # type: ignore[arg-type]


async def _hit(edge: Edge, target: str, now: float, head: bool = False) -> None:
    deadline = time.monotonic() + 10
    while edge.handler.plain_hit(head, network.HOST.encode(), target.encode(), now) is None:
        assert time.monotonic() < deadline, f"{target}: never a plain hit"  # (stored as the body ended)
        await asyncio.sleep(0.01)


def test_every_plain_hit_is_counted_once_whenever_the_counts_are_flushed(tmp_path: Path) -> None:
    """Hits over many seconds of Age (answers rebuilt, dropped from the flush's list once
    idle, taken again), GET and HEAD, from memory and by sendfile, with flushes between
    them at every phase of a second: each hit is in the report, `served` and the metric
    exactly once."""

    async def test(tmp_path: Path) -> None:
        async with _edge(tmp_path) as edge:
            h = edge.handler
            h.flush()
            served, hits_before, metric = h.served, h.plain_hits, h.requests.labels("hit")
            metric_before = metric._value.get()
            report = h.counts.drain("e", "r", 1.0)  # (the misses)
            assert report is not None and [s.misses for s in report.serials] == [2]
            start, hits, sizes = time.time(), 0, 0
            for i in range(400):
                now = start + 0.137 * i + (5.0 if i > 300 else 0.0)  # (an idle gap: answers dropped)
                target = "/large" if i % 3 else "/small"
                await _hit(edge, target, now, head=i % 7 == 0)
                hits, sizes = hits + 1, sizes + len(BODY[target])
                if i % 5 == 0 or i % 11 == 0:
                    h.flush(now + 0.05 * (i % 4))
            h.flush(start + 100)
            report = h.counts.drain("e", "r", 1.0)
            assert report is not None and len(report.serials) == 1
            s = report.serials[0]
            assert (s.requests, s.hits, s.misses, s.errors, s.bytes) == (hits, hits, 0, 0, sizes)
            assert (h.served - served, h.plain_hits - hits_before) == (hits, hits)
            assert metric._value.get() - metric_before == hits
            h.flush(start + 200)
            assert h.counts.drain("e", "r", 1.0) is None, "nothing counted twice"
            assert not h._answered, "answers idle past their span are no longer looked at"

    _run(test, tmp_path)


def test_hits_a_stepped_back_clock_hides_are_counted_at_the_next_whole_second(tmp_path: Path) -> None:
    """An answer dropped from the flush's list, then hit within its old span (the clock
    stepped back): the hits wait on the answer and are counted once its next span begins."""

    async def test(tmp_path: Path) -> None:
        async with _edge(tmp_path) as edge:
            h = edge.handler
            h.flush()
            h.counts.drain("e", "r", 1.0)
            start = time.time() + 10.5
            await _hit(edge, "/small", start)
            (p,) = h._answered
            h.flush(start + 3)  # one hit counted
            h.flush(start + 3)  # none since, and past its span: the answer is dropped
            assert not h._answered
            inside = (p.since + p.until) / 2
            await _hit(edge, "/small", inside)  # back inside the old span
            await _hit(edge, "/small", inside)
            h.flush(start + 3)
            first = h.counts.drain("e", "r", 1.0)
            assert first is not None and first.serials[0].hits == 1
            await _hit(edge, "/small", start + 4)  # a new span: the answer is looked at again
            h.flush(start + 4.1)
            second = h.counts.drain("e", "r", 1.0)
            assert second is not None and second.serials[0].hits == 3

    _run(test, tmp_path)


def test_requests_per_client_address_count_each_request_once_also_after_the_connection_ends(
    tmp_path: Path,
) -> None:
    """Requests over real keep-alive connections (plain hits and the full flow) are added
    per client address at each flush, and a closed connection's at its end."""

    async def ask(port: int, n: int, close: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(n):
            target = "/small" if i % 2 else "/small?full=1"
            writer.write(f"GET {target} HTTP/1.1\r\nHost: {network.HOST}\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200 "), head
            await asyncio.wait_for(reader.readexactly(len(BODY["/small"])), 10)
        if close:
            writer.close()
            await writer.wait_closed()
        return reader, writer

    async def test(tmp_path: Path) -> None:
        async with _edge(tmp_path) as edge:
            server = Http1Server(edge.handler)
            await server.listen("127.0.0.1", 0)
            port = server._servers[0].sockets[0].getsockname()[1]
            h = edge.handler
            h.flush()
            h.counts.remotes.clear()
            try:
                _, kept = await ask(port, 5, close=False)
                await ask(port, 3, close=True)
                deadline = time.monotonic() + 10
                while len(server.connections) > 1:  # (the closed one's end seen by the edge)
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.01)
                assert h.counts.remotes == {"127.0.0.1": 3}, "the closed connection's, at its end"
                h.flush()
                assert h.counts.remotes == {"127.0.0.1": 8}
                h.flush()
                assert h.counts.remotes == {"127.0.0.1": 8}, "nothing counted twice"
                kept.close()
                await kept.wait_closed()
            finally:
                await server.close()

    _run(test, tmp_path)


def test_a_plain_hit_marks_its_object_used_so_eviction_takes_another(tmp_path: Path) -> None:
    """The plain hit looks its object up without the LRU's bookkeeping and marks it used
    once a second: the object stored first but hit since outlives the one stored after."""

    async def test(tmp_path: Path) -> None:
        async with _edge(tmp_path) as edge:
            memory = edge.store.memory
            keys = list(memory._objects)  # (stored in order: /small, then /large)
            assert len(keys) == 2 and keys[0][1].endswith("/small")
            await _hit(edge, "/small", time.time() + 1)
            memory.budget = memory.used  # the next object pushes one out
            assert memory.put(("other", "/x"), list(memory.peek(keys[0]) or []))
            assert memory.peek(keys[0]) is not None, "the object just hit is kept"
            assert memory.peek(keys[1]) is None, "the one not hit since is evicted"

    _run(test, tmp_path)
