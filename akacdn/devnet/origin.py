"""A demo origin: a small site (an HTML page and images) for the devnet customer.

It counts the requests it serves per path at `/_origin/stats`, so tests (and curious
operators) can see which requests the edges forwarded and which they served from cache.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections import Counter

from aiohttp import web


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack("!IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


COLOURS = {"logo": (200, 30, 40), "photo-1": (30, 120, 200), "photo-2": (40, 160, 60), "photo-3": (230, 180, 20)}

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>demo.example, delivered by akacdn</title>
<link rel="stylesheet" href="/css/site.css"></head>
<body><img src="/img/logo.png" alt="logo">
<h1>Hello from the demo origin</h1>
<p>This page came from the origin through an akacdn edge. The images below are static
objects the edge caches.</p>
{images}
</body></html>
"""

CSS = "body { font-family: sans-serif; margin: 2em; } img { margin: 4px; }\n"


def make_app() -> web.Application:
    counts: Counter[str] = Counter()
    images = {f"/img/{name}.png": png(64, 64, rgb) for name, rgb in COLOURS.items()}
    page = PAGE.format(images="\n".join(f'<img src="{p}" alt="">' for p in images if "photo" in p))

    @web.middleware
    async def count(req: web.Request, handler):  # type: ignore[no-untyped-def]
        if not req.path.startswith("/_origin/"):
            counts[req.path_qs] += 1
        return await handler(req)

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "max-age=30"})

    async def image(req: web.Request) -> web.Response:
        body = images.get(req.path)
        if body is None:
            raise web.HTTPNotFound(text="no such image\n")
        return web.Response(body=body, content_type="image/png", headers={"Cache-Control": "max-age=300"})

    async def css(_: web.Request) -> web.Response:
        return web.Response(text=CSS, content_type="text/css", headers={"Cache-Control": "max-age=300"})

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"requests": dict(counts), "total": sum(counts.values())})

    app = web.Application(middlewares=[count])
    app.router.add_get("/", index)
    app.router.add_get("/index.html", index)
    app.router.add_get("/img/{name}", image)
    app.router.add_get("/css/site.css", css)
    app.router.add_get("/_origin/stats", stats)
    return app


async def serve(host: str, port: int) -> None:
    runner = web.AppRunner(make_app(), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    print(f'{{"component": "origin", "event": "listening", "address": "{host}", "port": {port}}}', flush=True)
    try:
        await asyncio.Future()
    finally:
        await runner.cleanup()
