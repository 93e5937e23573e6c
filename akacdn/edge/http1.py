"""The edge's HTTP/1.1 server: an asyncio protocol on httptools (llhttp), the shell
around `handler`.

Parsing is llhttp's, strict: a request with both `Content-Length` and
`Transfer-Encoding`, malformed chunking, obs-fold or bad field syntax is answered 400
and the connection closed. On top of it this module enforces what llhttp leaves to its
user: request line and field lengths, the number of fields, exactly one `Host` in
HTTP/1.1, a body size limit, and idle/slow-header timeouts (swept once a second, so a
request costs no timer). Each refusal is counted by reason.

Requests on one connection are answered in order (pipelining). A plain hit (see
`hit`) is written straight from the parser callback; anything else runs the full
flow in a task the connection owns, while further pipelined requests queue.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import os
import socket
import ssl
import time
from collections.abc import Iterable

import httptools

from ..sockets import bound
from .handler import Handler
from .hit import NOT_PLAIN, has_content, has_content_length, status_line
from .hitfile import HitFile
from .message import BodyStream, BodyStreamError, FileBody, Request, Response

MAX_LINE = 8190  # request target, and each field line
MAX_FIELDS = 100
MAX_HEAD = 64 * 1024  # a whole request head
MAX_BODY = 16 * 2**20
MAX_PIPELINE = 16  # queued requests before the connection stops reading
IDLE_TICKS = 75  # seconds a keep-alive connection may sit idle
HEAD_TICKS = 15  # seconds to send a whole request head
WRITE_STALL = 60.0  # seconds a client may take nothing of an answer before it is dropped


class Refused(Exception):
    def __init__(self, status: int, reason: str, text: str) -> None:
        super().__init__(text)
        self.status, self.reason, self.text = status, reason, text


_date_cache: tuple[int, bytes] = (0, b"")


def date_line() -> bytes:
    """`Date: ...` for answers the edge makes itself, rebuilt once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, b"Date: " + email.utils.formatdate(now, usegmt=True).encode() + b"\r\n")
    return _date_cache[1]


def serialize_head(resp: Response, head_request: bool, close: bool) -> bytes:
    """Status line and fields of a response, with the framing this server owns."""
    lines = [status_line(resp.status)]
    has_date = False
    for k, v in resp.headers:
        if not has_date and k.lower() == "date":
            has_date = True
        lines.append(f"{k}: {v}\r\n".encode("latin-1", "replace"))
    if not has_date:
        lines.append(date_line())
    if has_content_length(resp.status):
        if not has_content(resp.status):  # a 205: no content, said explicitly
            lines.append(b"Content-Length: 0\r\n")
        elif resp.length is not None:
            lines.append(b"Content-Length: %d\r\n" % resp.length)
        elif not head_request:
            lines.append(b"Transfer-Encoding: chunked\r\n")
    if close:
        lines.append(b"Connection: close\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


class Connection(asyncio.Protocol):
    """One client connection."""

    __slots__ = (
        "server",
        "scheme",
        "handler",
        "transport",
        "parser",
        "remote",
        "requests",
        "fd",
        "_sending",
        "_writer_fd",
        "queue",
        "task",
        "ticks",
        "closing",
        "_can_write",
        "_refusal",
        "url",
        "fields",
        "host",
        "plain",
        "head_bytes",
        "in_head",
        "body",
        "body_size",
    )

    def __init__(self, server: Http1Server, scheme: str = "http") -> None:
        self.server = server
        self.scheme = scheme
        self.handler = server.handler
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.remote = ""
        self.requests = 0  # since the edge last counted them per client address (`count_requests`)
        self.fd = -1  # the socket's, for sendfile
        self._sending: tuple[HitFile, int] | None = None  # a large hit's file, sent up to here
        self._writer_fd = -1
        self.queue: collections.deque[tuple[Request, bool]] = collections.deque()
        self.task: asyncio.Task[None] | None = None
        self.ticks = 0
        self.closing = False
        self._can_write: asyncio.Future[None] | None = None
        self._refusal: Response | None = None
        self.on_message_begin()
        self.in_head = False  # (no request begun yet: the idle timeout holds)

    def on_message_begin(self) -> None:
        """A request begins (llhttp's first callback of each): its state starts afresh."""
        self.url = b""
        self.fields: list[tuple[bytes, bytes]] = []  # decoded only for the full flow's Request
        self.host: bytes | None = None
        self.plain = True
        self.head_bytes = 0
        self.in_head = True
        self.body: list[bytes] = []
        self.body_size = 0

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) else ""
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.server.count_requests((self,))
        self.closing = True
        if self._sending is not None:
            self._sent()
        if self.task is not None:
            self.task.cancel()
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)

    def pause_writing(self) -> None:
        self._can_write = asyncio.get_running_loop().create_future()
        if self.transport is not None:  # a client not reading its answers sends no more requests
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)
        self._can_write = None
        if self.transport is not None and not self.closing and len(self.queue) < MAX_PIPELINE:
            self.transport.resume_reading()

    async def _drained(self) -> bool:
        """Wait until the client takes what we sent; False (and the connection closed) when
        it takes nothing for WRITE_STALL seconds."""
        assert self._can_write is not None
        try:
            await asyncio.wait_for(self._can_write, WRITE_STALL)
            return True
        except TimeoutError:
            self.handler.refused.labels("write_timeout").inc()
            self._close()
            return False

    def data_received(self, data: bytes) -> None:
        self.ticks = 0
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except Refused as e:
            self._refuse(e)
        except httptools.HttpParserCallbackError as e:
            err = e.__context__
            self._refuse(err if isinstance(err, Refused) else Refused(400, "malformed_request", "bad request"))
        except httptools.HttpParserUpgrade:
            pass  # the upgrade request is answered and the connection closed; what follows is dropped
        except httptools.HttpParserError as e:
            self._refuse(Refused(400, "malformed_request", f"malformed request: {e}"))
        else:
            if self.in_head:
                self.head_bytes += len(data)
                if self.head_bytes > MAX_HEAD:
                    self._refuse(Refused(431, "head_too_large", "request head too large"))

    # -- httptools callbacks (and `on_message_begin` above) ---------------------------------
    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_LINE:
            raise Refused(414, "target_too_long", "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > MAX_LINE:
            raise Refused(431, "field_too_large", "request header field too large")
        if len(self.fields) >= MAX_FIELDS:
            raise Refused(431, "too_many_fields", "too many request header fields")
        lower = name.lower()
        if lower == b"host":
            if self.host is not None:
                raise Refused(400, "bad_host", "exactly one Host field is required")
            self.host = value
        elif lower in NOT_PLAIN:
            self.plain = False
        self.fields.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self.host is None and self.parser.get_http_version() == "1.1":
            raise Refused(400, "bad_host", "exactly one Host field is required")
        if not self.plain:
            for k, v in self.fields:
                if k.lower() == b"expect" and v.lower() == b"100-continue" and self.transport is not None:
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > MAX_BODY:
            raise Refused(413, "body_too_large", "request body too large")
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.requests += 1  # demand per client network (`report`)
        method = self.parser.get_method()
        if (
            self.plain  # (so no Upgrade: see `NOT_PLAIN`)
            and self.task is None
            and not self.queue
            and self._can_write is None  # the client is taking its answers
            and (method == b"GET" or method == b"HEAD")
            and self.host is not None
            and self.parser.should_keep_alive()
        ):
            out = self.handler.plain_hit(method == b"HEAD", self.host, self.url, time.time(), self.scheme)
            if out is not None:
                assert self.transport is not None
                if out.__class__ is list:
                    self.transport.writelines(out)  # type: ignore[arg-type]
                else:
                    self._send_hit_file(*out)  # type: ignore[misc]
                return
        # Upgrade is ignored (RFC 9110 7.8), but llhttp reads no more after it: close
        keep = self.parser.should_keep_alive() and not self.parser.should_upgrade()
        url, body = self.url.decode("latin-1"), b"".join(self.body)
        fields = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.fields]
        req = Request(method.decode("ascii"), url, fields, self.remote, body, self.scheme)
        self.queue.append((req, keep))
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._answer_queue())
        elif len(self.queue) >= MAX_PIPELINE and self.transport is not None:
            self.transport.pause_reading()

    def _send_hit_file(self, head: bytes, hit: HitFile) -> None:
        """A large plain hit: the kernel sends its file (sendfile, no copy through Python),
        the whole answer, or (`head_first`) the body after its head written from memory
        (why: `hitfile`). What the socket cannot take at once is sent as it drains
        (`_send_more`), with the connection held as if its buffer were full: no other
        answer is written meanwhile. When something waits in the transport's buffer
        (an earlier answer, or the head itself), the rest is copied behind it."""
        t = self.transport
        assert t is not None
        at = hit.start
        if hit.head_first:
            t.write(head)  # (uvloop writes at once when nothing waits)
            at = hit.body_at
        if t.get_write_buffer_size() != 0:
            t.write(os.pread(hit.fd, hit.size - at, at))
            return
        if self.fd < 0:
            self.fd = t.get_extra_info("socket").fileno()
        try:  # the common case: the socket takes it all at once
            at += os.sendfile(self.fd, hit.fd, at, hit.size - at)
        except BlockingIOError:
            pass
        except OSError:  # the client went away
            self._close()
            return
        if at == hit.size:
            return
        self._sending = (hit, at)
        if not self._send_more():
            self.handler.file_waits.inc()
            loop = asyncio.get_running_loop()
            self._can_write = loop.create_future()  # the pipeline waits (see `_drained`)
            t.pause_reading()
            self._writer_fd = os.dup(self.fd)  # the transport owns `fd` in the loop: watch a twin
            loop.add_writer(self._writer_fd, self._send_more)

    def _send_more(self) -> bool:
        """Send what the socket takes of the file being sent; True once it is all sent (or
        the connection failed and was closed)."""
        assert self._sending is not None
        hit, at = self._sending
        try:
            while at < hit.size:
                n = os.sendfile(self.fd, hit.fd, at, hit.size - at)
                if n == 0:  # (the file ended early: never so for our own file)
                    raise OSError("hit file ended early")
                at += n
        except BlockingIOError:
            self._sending = (hit, at)
            return False
        except OSError:  # the client went away
            self._sent()
            self._close()
            return True
        self._sent()
        return True

    def _sent(self) -> None:
        self._sending = None
        if self._writer_fd >= 0:
            asyncio.get_running_loop().remove_writer(self._writer_fd)
            os.close(self._writer_fd)
            self._writer_fd = -1
            self.resume_writing()  # what `pause_writing` stopped goes on

    # -- answering -------------------------------------------------------------------------
    def _refuse(self, e: Refused) -> None:
        """Answer a refused request (after any answers queued before it) and close."""
        self.handler.refused.labels(e.reason).inc()
        self.closing = True
        resp = self.handler.refusal(e.status, e.text + "\n")
        if self.task is None:
            self._write_head(resp, False, True)
            self._write_body(resp.body)  # type: ignore[arg-type]
            self._close()
        else:  # pipelined requests before the bad one are answered first
            self.queue.append((Request("GET", "", [], self.remote), False))
            self._refusal = resp

    def _write_head(self, resp: Response, head_request: bool, close: bool) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(serialize_head(resp, head_request, close))

    def _write_body(self, body: bytes) -> None:
        if body and self.transport is not None and not self.transport.is_closing():
            self.transport.write(body)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def _answer_queue(self) -> None:
        req: Request | None = None
        try:
            while self.queue:
                if self._can_write is not None and not await self._drained():
                    return  # one answer at a time beyond what the client has taken
                req, keep = self.queue.popleft()
                if self._refusal is not None and not req.target:  # queued behind pipelined requests
                    self._write_head(self._refusal, False, True)
                    self._write_body(self._refusal.body)  # type: ignore[arg-type]
                    self._close()
                    return
                resp = await self.handler.handle(req)
                close = not keep
                self._write_head(resp, req.method == "HEAD", close)
                if req.method == "HEAD" or not has_content(resp.status):
                    pass  # no content, whatever the flow had (RFC 9110 6.4.1, 9.3.2)
                elif isinstance(resp.body, BodyStream):
                    if not await self._stream(resp):
                        return
                elif isinstance(resp.body, FileBody):
                    if not await self._send_file(resp.body):
                        return
                else:
                    self._write_body(resp.body)
                if close:
                    self._close()
                    return
                if self.transport is not None and len(self.queue) < MAX_PIPELINE // 2 and self._can_write is None:
                    self.transport.resume_reading()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug: the daemon rolls (in the in-place mode: this connection only)
            self.handler.failed(e, req)
            self._close()
        finally:
            self.task = None

    async def _stream(self, resp: Response) -> bool:
        """Copy a body arriving from the origin to the client as it arrives; False when the
        connection had to close (the origin broke off: the client sees a short message)."""
        assert isinstance(resp.body, BodyStream)
        chunked = resp.length is None
        try:
            async for chunk in resp.body.chunks():
                if self.transport is None or self.transport.is_closing():
                    return False
                if chunked:
                    self.transport.writelines([b"%x\r\n" % len(chunk), chunk, b"\r\n"])
                else:
                    self.transport.write(chunk)
                if self._can_write is not None and not await self._drained():
                    return False
            if chunked and self.transport is not None:
                self.transport.write(b"0\r\n\r\n")
            return True
        except BodyStreamError:
            self._close()
            return False

    async def _send_file(self, body: FileBody) -> bool:
        """A stored large body, piece by piece as the client takes it; False when the
        connection had to close (the file was damaged: the client sees a short message)."""
        try:
            for piece in body.pieces():
                if self.transport is None or self.transport.is_closing():
                    return False
                self.transport.write(piece)
                if self._can_write is not None and not await self._drained():
                    return False
            return True
        except (BodyStreamError, OSError) as e:  # a damaged file: addressable, not a roll
            self.handler.refused.labels("damaged_file").inc()
            self.handler.rt.log.limited("file_body_failed", error=repr(e))
            self._close()
            return False

    def tick(self) -> None:
        """Once a second: close connections idle (or slow to send a head) too long."""
        self.ticks += 1
        if self.task is None and self.ticks > (HEAD_TICKS if self.in_head else IDLE_TICKS):
            if self.in_head:
                self.handler.refused.labels("head_timeout").inc()
            self._close()


class Http1Server:
    """The listening socket(s) and their connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections: set[Connection] = set()
        self._servers: list[asyncio.Server] = []
        handler.before_flush.append(lambda: self.count_requests(self.connections))

    def count_requests(self, connections: Iterable[Connection]) -> None:
        """Add the connections' requests since they were last counted to the requests per
        client address (`report.SerialCounts.remotes`)."""
        remotes = self.handler.counts.remotes
        for c in connections:
            if c.requests:
                remotes[c.remote] = remotes.get(c.remote, 0) + c.requests
                c.requests = 0

    def protocol(self) -> Connection:
        return Connection(self)

    def tls_protocol(self) -> Connection:
        return Connection(self, "https")

    async def listen(
        self,
        host: str,
        port: int,
        reuse_port: bool = False,
        freebind: bool = False,
        tls: ssl.SSLContext | None = None,
        sndbuf: int = 0,
    ) -> None:
        """Listen on host:port (HTTPS with `tls`); `freebind` binds before the address is on
        an interface (a service address the region agent adds, or a peer's it may take over);
        `sndbuf` fixes the connections' send buffer (0: the kernel sizes it)."""
        sock = bound(host, port, socket.SOCK_STREAM, reuse_port=reuse_port, freebind=freebind, sndbuf=sndbuf)
        loop = asyncio.get_running_loop()
        if tls is None:
            server = await loop.create_server(self.protocol, sock=sock)
        else:
            server = await loop.create_server(self.tls_protocol, sock=sock, ssl=tls, ssl_handshake_timeout=HEAD_TICKS)
        self._servers.append(server)

    async def sweep(self) -> None:
        """Tick every connection once a second (timeouts), forever."""
        while True:
            await asyncio.sleep(1)
            for c in list(self.connections):
                c.tick()

    async def close(self) -> None:
        for s in self._servers:
            s.close()
        for c in list(self.connections):
            c._close()
        for s in self._servers:
            await s.wait_closed()
