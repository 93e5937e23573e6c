"""The benchmark's origin (aiohttp): objects of a given size, cacheable for an hour,
and a count of the requests it served per path.

    python -m bench.edge.origin --listen 127.78.40.1:8080

  /obj/<name>-<bytes>     a body of <bytes> bytes (e.g. /obj/hit-1024), Cache-Control: max-age=3600
  /cold/<name>-<bytes>    the same after a delay (`--cold-delay`, default 0.2 s): an origin
                          that is slow on a miss, so a stampede's requests all arrive
                          while the first fetch is under way
  /_origin/stats          {"requests": {path: count}, "total": N}
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import sys
from collections import Counter

from aiohttp import web

MAX_SIZE = 16 * 2**20
_NAME = re.compile(r"^[A-Za-z0-9_.-]+-(\d+)$")


def body(name: str, size: int) -> bytes:
    """Deterministic bytes for an object: the same name and size give the same body."""
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def make_app(cold_delay: float = 0.2) -> web.Application:
    counts: Counter[str] = Counter()
    cache: dict[str, bytes] = {}

    async def obj(req: web.Request) -> web.Response:
        counts[req.path] += 1
        name = req.match_info["name"]
        m = _NAME.match(name)
        if not m or int(m.group(1)) > MAX_SIZE:
            raise web.HTTPNotFound(text="no such object\n")
        if req.path.startswith("/cold/") and cold_delay > 0:
            await asyncio.sleep(cold_delay)
        data = cache.get(req.path)
        if data is None:
            data = cache[req.path] = body(req.path, int(m.group(1)))
        return web.Response(
            body=data,
            content_type="application/octet-stream",
            headers={"Cache-Control": "max-age=3600", "ETag": f'"{hashlib.sha1(data).hexdigest()[:16]}"'},
        )

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"requests": dict(counts), "total": sum(counts.values())})

    app = web.Application()
    app.router.add_get("/obj/{name}", obj)
    app.router.add_get("/cold/{name}", obj)
    app.router.add_get("/_origin/stats", stats)
    return app


async def serve(host: str, port: int, cold_delay: float) -> None:
    runner = web.AppRunner(make_app(cold_delay), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True, backlog=1024).start()
    print(f'{{"component": "bench-origin", "event": "listening", "address": "{host}", "port": {port}}}', flush=True)
    try:
        await asyncio.Future()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.edge.origin", description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", default="127.78.40.1:8080", help="ADDR:PORT")
    p.add_argument("--cold-delay", type=float, default=0.2, help="seconds before answering /cold/ (default 0.2)")
    a = p.parse_args(argv)
    host, _, port = a.listen.rpartition(":")
    try:
        asyncio.run(serve(host, int(port), a.cold_delay))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
