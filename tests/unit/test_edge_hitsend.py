"""How a connection sends a large plain hit (`Connection._send_hit_file`): its head through
the transport, then its body's file by sendfile(2); over a real socket pair on uvloop,
with the peer reading nothing until the end."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import uvloop
from prometheus_client import CollectorRegistry, Counter

from akacdn.edge.hitfile import HitFile
from akacdn.edge.http1 import Connection, Http1Server

HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\nAge: 3\r\n\r\n"
BODY = bytes((i * 7) % 256 for i in range(300_000))


def _pair() -> tuple[socket.socket, socket.socket]:
    edge, client = socket.socketpair()
    edge.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)  # (fills after some 64 KiB)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    return edge, client


async def _connection(edge: socket.socket) -> tuple[Connection, Counter]:
    waits = Counter("waits", "large hits sent as the client took them", registry=CollectorRegistry())
    conn = Connection(Http1Server(SimpleNamespace(file_waits=waits)))  # type: ignore[arg-type]
    await asyncio.get_running_loop().connect_accepted_socket(lambda: conn, edge)
    return conn, waits


async def _read_all(client: socket.socket, size: int) -> bytes:
    loop, got = asyncio.get_running_loop(), b""
    client.setblocking(False)
    while len(got) < size:
        chunk = await asyncio.wait_for(loop.sock_recv(client, 1 << 20), 10)
        assert chunk, f"the edge closed after {len(got)} of {size} bytes"
        got += chunk
    return got


def _run(test: Callable[[], object]) -> None:
    uvloop.run(test())  # type: ignore[arg-type]


def test_the_whole_hit_goes_out_as_the_client_reads_and_the_connection_waits_meanwhile(tmp_path: Path) -> None:
    """The socket takes part of the body: the rest is sent as it drains, the connection
    holds its pipeline (`_can_write`) until then, and the wait is counted."""

    async def test() -> None:
        edge, client = _pair()
        conn, waits = await _connection(edge)
        conn._send_hit_file(HEAD, HitFile(tmp_path, BODY))
        held = conn._can_write
        assert held is not None and waits._value.get() == 1  # (the socket could not take it all)
        assert await _read_all(client, len(HEAD) + len(BODY)) == HEAD + BODY
        await asyncio.wait_for(held, 10)  # released once all is sent
        assert conn._sending is None and conn._can_write is None
        conn.transport.close()  # type: ignore[union-attr]
        client.close()

    _run(test)


def test_a_hit_behind_bytes_still_buffered_is_copied_behind_them(tmp_path: Path) -> None:
    """When an earlier answer still waits in the transport's buffer (the socket full), the
    hit's head and body go behind it, in order: never the file sent past it."""

    async def test() -> None:
        edge, client = _pair()
        conn, waits = await _connection(edge)
        t = conn.transport
        assert t is not None
        t.set_write_buffer_limits(high=1 << 22)  # (no pause: this is a buffer below the high mark)
        earlier = bytes(range(256)) * 800
        t.write(earlier)  # more than the socket takes: the rest waits in the buffer
        assert t.get_write_buffer_size() > 0
        conn._send_hit_file(HEAD, HitFile(tmp_path, BODY))
        assert conn._sending is None and waits._value.get() == 0  # copied, not sent from the file
        assert await _read_all(client, len(earlier) + len(HEAD) + len(BODY)) == earlier + HEAD + BODY
        t.close()
        client.close()

    _run(test)
