"""UDP and TCP DNS listeners (asyncio shell): bytes in, `wire.respond`, bytes out.

TCP follows RFC 7766: 2-byte length prefix, several queries per connection answered in
order, an idle timeout, and a cap on concurrent connections (beyond it new ones are
closed at once and counted).
"""

from __future__ import annotations

import asyncio
import struct

from ..runtime import Runtime
from .wire import AnswerFn, respond

TCP_IDLE = 10.0
TCP_MAX_CONNECTIONS = 256


class DnsServer:
    def __init__(self, rt: Runtime, answer: AnswerFn) -> None:
        self.rt = rt
        self.answer = answer
        self.identity = rt.machine.id
        self.replies = rt.counter("akacdn_dns_replies", "DNS replies by kind and transport", ("kind", "transport"))
        self.tcp_refused = rt.counter("akacdn_dns_tcp_refused", "TCP connections over the limit")
        self._tcp_open = 0
        rt.not_ready("sockets", "DNS sockets not bound yet")

    def handle(self, data: bytes, client: str, transport: str, max_udp: int | None) -> bytes | None:
        r = respond(data, client, self.answer, self.identity, max_udp)
        self.replies.labels(r.kind, transport).inc()
        if r.kind == "bug":
            self.rt.log.limited("answer_bug", client=client)
        return r.data

    async def serve(self) -> None:
        """Listen on UDP and TCP at the machine's address until cancelled."""
        loop = asyncio.get_running_loop()
        addr, port = self.rt.machine.address, self.rt.net.ports.dns
        udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(addr, port))
        tcp = await asyncio.start_server(self._tcp, addr, port, reuse_address=True)
        self.rt.log.info("listening", address=addr, port=port)
        self.rt.ready("sockets")
        try:
            async with tcp:
                await asyncio.Future()
        finally:
            udp.close()

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._tcp_open >= TCP_MAX_CONNECTIONS:
            self.tcp_refused.inc()
            writer.close()
            return
        self._tcp_open += 1
        client = writer.get_extra_info("peername")[0]
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE):
                    (n,) = struct.unpack("!H", await reader.readexactly(2))
                    data = await reader.readexactly(n)
                out = self.handle(data, client, "tcp", None)
                if out is None:
                    break
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tcp_open -= 1
            writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        out = self.server.handle(data, addr[0], "udp", 512)
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)
