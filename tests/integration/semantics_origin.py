"""A programmable origin for the edge's HTTP caching tests (test_edge_semantics.py).

Run: `python tests/integration/semantics_origin.py ADDR PORT [CERT KEY]` (HTTPS with CERT
and KEY). Each route answers fixed headers (below) and every request is counted, so a
test can tell what reached the origin:

    GET  /_stats  {"requests": {path: n}, "methods": {"GET /p": n}, "statuses": {path: {"200": n}},
                   "last_headers": {path: {name: value}}}   (lower-cased request headers)
    POST /_reset  clear the counters (and leave "down" mode)
    POST /_down   every other route answers 503 (still counted), until POST /_up
    POST /_kill   the process exits right after answering: the origin becomes unreachable
    GET  /huge    64 MiB, cacheable: more than the edge may hold in memory
    POST /_release  /gated sends the rest of its body (it sent the first 64 KiB and waits)
    POST /_release-swr  /swr answers its revalidations (held until then)

Routes: see `route()`; /big-slow is /big written in four pieces 50 ms apart (a body that
arrives over time, as from any real origin).

Every answer of a route carries `X-Origin-Response: <n>`, the route's request count at
that moment (a 304 too), so a test sees whether headers were refreshed by a revalidation.
Standalone on purpose (aiohttp only): it stands for a customer's server, not our code.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import json
import os
import ssl
import sys
import time
from collections import Counter, defaultdict

import brotli
from aiohttp import web

START = time.time()
LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"  # /fresh, /lastmod
LAST_MODIFIED_TS = 1704067200.0
BIG = bytes(i % 251 for i in range(100 * 1024))  # /big: known bytes, for Range
HUGE = bytes(range(256)) * (256 * 1024)  # /huge: 64 MiB, more than the edge keeps in memory
GATED = bytes((i * 7) % 256 for i in range(1024 * 1024))  # /gated
MIB = bytes((i * 13) % 256 for i in range(2**20))  # /mib
PAGE = b"".join(b"<p>line %d of a compressible page</p>\n" % i for i in range(400))  # /gz, /page.css


def http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def parse_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


class Origin:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.down = False
        self.requests: Counter[str] = Counter()
        self.methods: Counter[str] = Counter()
        self.statuses: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.last_headers: dict[str, dict[str, str]] = {}
        self.gate = asyncio.Event()
        self.swr_gate = asyncio.Event()  # /swr answers its revalidations only once this is set

    # control ---------------------------------------------------------------------
    async def stats(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": self.requests,
                "methods": self.methods,
                "statuses": self.statuses,
                "last_headers": self.last_headers,
                "down": self.down,
            }
        )

    async def control(self, req: web.Request) -> web.Response:
        what = req.match_info["what"]
        if what == "reset":
            self.reset()
        elif what == "down":
            self.down = True
        elif what == "up":
            self.down = False
        elif what == "release":
            self.gate.set()
        elif what == "release-swr":
            self.swr_gate.set()
        elif what == "kill":
            asyncio.get_running_loop().call_later(0.05, os._exit, 0)
        else:
            return web.Response(status=404, text=f"no control {what!r}\n")
        return web.Response(text=f"{what}: ok\n")

    # routes ----------------------------------------------------------------------
    async def handle(self, req: web.Request) -> web.StreamResponse:
        path = req.path
        self.requests[path] += 1
        self.methods[f"{req.method} {path}"] += 1
        self.last_headers[path] = {k.lower(): v for k, v in req.headers.items()}
        n = self.requests[path]
        if self.down:
            status, headers, body = 503, {"Content-Type": "text/plain"}, b"origin down\n"
        elif path == "/big-slow":
            return await self.slow(req, n)
        elif path == "/gated":
            return await self.gated(req, n)
        elif path == "/huge":
            return await self.huge(req, n)
        else:
            status, headers, body = await self.route(req, n)
        headers["X-Origin-Response"] = str(n)
        self.statuses[path][str(status)] += 1
        return web.Response(status=status, headers=headers, body=None if status == 304 else body)

    async def slow(self, req: web.Request, n: int) -> web.StreamResponse:
        """/big-slow: /big's bytes with a Content-Length, written in 4 pieces 50 ms apart."""
        resp = web.StreamResponse(
            headers={
                "Cache-Control": "max-age=60",
                "Content-Type": "application/octet-stream",
                "X-Origin-Response": str(n),
            }
        )
        resp.content_length = len(BIG)
        await resp.prepare(req)
        if req.method != "HEAD":
            step = len(BIG) // 4
            for i in range(0, len(BIG), step):
                await resp.write(BIG[i : i + step])
                await asyncio.sleep(0.05)
        await resp.write_eof()
        self.statuses[req.path]["200"] += 1
        return resp

    async def gated(self, req: web.Request, n: int) -> web.StreamResponse:
        """/gated: GATED's first 64 KiB at once, the rest only after POST /_release."""
        resp = web.StreamResponse(headers={"Cache-Control": "max-age=60", "X-Origin-Response": str(n)})
        resp.content_length = len(GATED)
        await resp.prepare(req)
        await resp.write(GATED[: 64 * 1024])
        await self.gate.wait()
        await resp.write(GATED[64 * 1024 :])
        await resp.write_eof()
        self.statuses[req.path]["200"] += 1
        return resp

    async def huge(self, req: web.Request, n: int) -> web.StreamResponse:
        """/huge: 64 MiB in 1 MiB writes, cacheable, with a validator."""
        resp = web.StreamResponse(
            headers={"Cache-Control": "max-age=60", "ETag": '"huge-1"', "X-Origin-Response": str(n)}
        )
        resp.content_length = len(HUGE)
        await resp.prepare(req)
        if req.method != "HEAD":
            step = 2**20
            for i in range(0, len(HUGE), step):
                await resp.write(HUGE[i : i + step])
        await resp.write_eof()
        self.statuses[req.path]["200"] += 1
        return resp

    async def route(self, req: web.Request, n: int) -> tuple[int, dict[str, str], bytes]:
        path, method = req.path, req.method
        text = {"Content-Type": "text/plain"}
        inm = req.headers.get("If-None-Match")
        ims = parse_date(req.headers.get("If-Modified-Since"))

        def etag_304(etag: str) -> bool:
            return inm is not None and etag in [t.strip().removeprefix("W/") for t in inm.split(",")]

        if path == "/fresh":
            if method == "POST":
                await req.read()
                return 200, {**text, "Cache-Control": "no-store"}, b"posted\n"
            cc = {"Cache-Control": "max-age=60", "ETag": '"fresh-1"', "Last-Modified": LAST_MODIFIED}
            return 200, {**text, **cc}, b"fresh body\n"
        if path == "/nostore":
            return 200, {**text, "Cache-Control": "no-store"}, f"nostore #{n}\n".encode()
        if path == "/private":
            return 200, {**text, "Cache-Control": "private, max-age=60"}, f"private #{n}\n".encode()
        if path == "/nocache":
            cc = {"Cache-Control": "no-cache", "ETag": '"nc-1"'}
            if etag_304('"nc-1"'):
                return 304, cc, b""
            return 200, {**text, **cc}, b"nocache body\n"
        if path == "/etag":
            cc = {"Cache-Control": "max-age=1", "ETag": '"v1"'}
            if etag_304('"v1"'):
                return 304, cc, b""
            return 200, {**text, **cc}, b"etag body v1\n"
        if path == "/lastmod":
            cc = {"Cache-Control": "max-age=1", "Last-Modified": LAST_MODIFIED}
            if ims is not None and ims >= LAST_MODIFIED_TS:
                return 304, cc, b""
            return 200, {**text, **cc}, b"lastmod body\n"
        if path == "/vary-slow":  # like /vary, answered after 300 ms: concurrent misses overlap
            await asyncio.sleep(0.3)
            lang = req.headers.get("Accept-Language", "-")
            return 200, {**text, "Cache-Control": "max-age=60", "Vary": "Accept-Language"}, f"lang={lang}\n".encode()
        if path == "/vary":
            lang = req.headers.get("Accept-Language", "-")
            return 200, {**text, "Cache-Control": "max-age=60", "Vary": "Accept-Language"}, f"lang={lang}\n".encode()
        if path == "/vary-star":
            return 200, {**text, "Cache-Control": "max-age=60", "Vary": "*"}, f"vary-star #{n}\n".encode()
        if path == "/expires":
            return 200, {**text, "Expires": http_date(time.time() + 60)}, b"expires body\n"
        if path == "/heuristic":
            return 200, {**text, "Last-Modified": http_date(START - 86400)}, b"heuristic body\n"
        if path == "/swr":
            if n > 1:  # a stale answer must not wait for this
                await self.swr_gate.wait()
            cc = {"Cache-Control": "max-age=1, stale-while-revalidate=30"}
            return 200, {**text, **cc}, f"swr #{n}\n".encode()
        if path == "/sie":
            return 200, {**text, "Cache-Control": "max-age=1, stale-if-error=60"}, f"sie #{n}\n".encode()
        if path == "/mustreval":
            return 200, {**text, "Cache-Control": "max-age=1, must-revalidate"}, f"mustreval #{n}\n".encode()
        if path == "/big":
            cc = {"Cache-Control": "max-age=60", "ETag": '"big-1"', "Content-Type": "application/octet-stream"}
            return 200, cc, BIG
        if path == "/status/404":
            return 404, {**text, "Cache-Control": "max-age=60"}, b"not here\n"
        return await self.proxy_route(req, n)

    async def proxy_route(self, req: web.Request, n: int) -> tuple[int, dict[str, str], bytes]:
        """Routes for the edge as an HTTP intermediary (test_edge_proxy.py)."""
        path, method = req.path, req.method
        text = {"Content-Type": "text/plain"}
        ae = req.headers.get("Accept-Encoding", "")
        inm = req.headers.get("If-None-Match")
        if path == "/echo":  # what reached the origin: the request fields, as JSON
            await req.read()
            fields = [[k, v] for k, v in req.headers.items()]
            return (
                200,
                {"Content-Type": "application/json", "Cache-Control": "no-store"},
                json.dumps({"method": method, "fields": fields}).encode(),
            )
        if path == "/cors":  # answers CORS only to a request that says its Origin
            origin = req.headers.get("Origin")
            if method == "OPTIONS":
                allow = {"Access-Control-Allow-Methods": "GET, PUT", "Access-Control-Max-Age": "600"}
                if origin:
                    allow["Access-Control-Allow-Origin"] = origin
                    allow["Access-Control-Allow-Headers"] = req.headers.get("Access-Control-Request-Headers", "")
                return 204, allow, b""
            out = {**text, "Cache-Control": "max-age=60", "Vary": "Origin"}
            if origin:
                out["Access-Control-Allow-Origin"] = origin
            return 200, out, f"cors #{n}\n".encode()
        if path == "/gz":  # compresses as the client accepts, and says it varies
            cc = {"Content-Type": "text/html", "Cache-Control": "max-age=60", "Vary": "Accept-Encoding"}
            if "br" in ae:
                return 200, {**cc, "Content-Encoding": "br", "ETag": '"gz-br"'}, brotli.compress(PAGE)
            if "gzip" in ae:
                return 200, {**cc, "Content-Encoding": "gzip", "ETag": '"gz-gzip"'}, gzip.compress(PAGE)
            return 200, {**cc, "ETag": '"gz-id"'}, PAGE
        if path == "/gz-novary":  # gzip whatever the client accepts, without Vary (a careless origin)
            cc = {"Content-Type": "text/html", "Cache-Control": "max-age=60", "ETag": '"nv-1"'}
            return 200, {**cc, "Content-Encoding": "gzip"}, gzip.compress(PAGE)
        if path in ("/page.css", "/no-transform", "/photo.jpg"):  # uncompressed: the edge may compress
            cc = "max-age=60, no-transform" if path == "/no-transform" else "max-age=60"
            kind = "image/jpeg" if path == "/photo.jpg" else "text/css; charset=utf-8"
            return 200, {"Content-Type": kind, "Cache-Control": cc, "ETag": '"css-1"'}, PAGE
        if path == "/mib":  # 1 MiB: more than a socket takes at once
            return 200, {"Content-Type": "application/octet-stream", "Cache-Control": "max-age=60"}, MIB
        if path == "/empty":
            return 204, {"Cache-Control": "max-age=60"}, b""
        if path == "/aged":  # the origin (a cache itself) says it is already 2 hours old, as a list
            return 200, {**text, "Cache-Control": "max-age=10000", "Age": "7200, 10"}, b"aged\n"
        if path == "/etag-change":  # a 304 whose ETag is not the stored one must not freshen it
            cc = {**text, "Cache-Control": "max-age=1"}
            if n == 1:
                return 200, {**cc, "ETag": '"a"'}, b"version a\n"
            if inm:
                return 304, {**cc, "ETag": '"b"'}, b""
            return 200, {**cc, "ETag": '"b"'}, b"version b\n"
        if path == "/reval-update":  # a 304 brings new fields (RFC 9111 3.2)
            if inm == '"r1"':
                return 304, {"Cache-Control": "max-age=60", "ETag": '"r1"', "X-Version": str(n)}, b""
            return 200, {**text, "Cache-Control": "max-age=1", "ETag": '"r1"', "X-Version": "1"}, b"reval body\n"
        if path == "/scheme":  # redirects http to https, as so many sites do
            if req.headers.get("X-Forwarded-Proto") != "https":
                return 301, {**text, "Location": f"https://{req.host}/scheme"}, b"use https\n"
            return 200, {**text, "Cache-Control": "max-age=60"}, b"secure\n"
        if path == "/teapot":
            return 418, text, f"teapot #{n}\n".encode()
        return 404, text, b"no such route\n"


def main() -> None:
    addr, port = sys.argv[1], int(sys.argv[2])
    tls = None
    if len(sys.argv) == 5:  # CERT KEY: serve HTTPS (an https origin)
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(sys.argv[3], sys.argv[4])
    origin = Origin()
    app = web.Application()
    app.router.add_get("/_stats", origin.stats)
    app.router.add_post("/_{what}", origin.control)
    app.router.add_route("*", "/{tail:.*}", origin.handle)
    print(json.dumps({"event": "listening", "address": addr, "port": port}), flush=True)
    web.run_app(app, host=addr, port=port, access_log=None, print=None, handle_signals=True, ssl_context=tls)


if __name__ == "__main__":
    main()
