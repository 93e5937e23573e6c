"""How a connection sends a large plain hit (`Connection._send_hit_file`): its file by
sendfile(2), whole or after the head written through the transport (`head_first`); over
a real socket pair on uvloop, with the peer reading nothing until the end."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import uvloop
from prometheus_client import CollectorRegistry, Counter

from akacdn.edge.hitfile import HEAD_FIRST_MAX, TAIL, HitFile
from akacdn.edge.http1 import Connection, Http1Server

# a body answered head first, and one answered as one sendfile of the whole file
SIZES = pytest.mark.parametrize("size", [HEAD_FIRST_MAX // 2, HEAD_FIRST_MAX + 1], ids=["head_first", "whole"])


def _hit(directory: Path, size: int) -> tuple[bytes, HitFile, bytes]:
    """(the head as the hit's memory has it, the file, the answer the client must get)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % size
    body = bytes((i * 7) % 256 for i in range(size))
    hit = HitFile(directory, head, body)
    assert hit.head_first == (size <= HEAD_FIRST_MAX)
    whole = head + TAIL % (0, 0)  # (the file's own tail, as the head in memory says it here)
    return whole, hit, whole + body


def _pair() -> tuple[socket.socket, socket.socket]:
    edge, client = socket.socketpair()
    edge.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)  # (fills after some 64 KiB)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    return edge, client


async def _connection(edge: socket.socket) -> tuple[Connection, Counter]:
    waits = Counter("waits", "large hits sent as the client took them", registry=CollectorRegistry())
    conn = Connection(Http1Server(SimpleNamespace(file_waits=waits, before_flush=[])))  # type: ignore[arg-type]
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


@SIZES
def test_the_whole_hit_goes_out_as_the_client_reads_and_the_connection_waits_meanwhile(
    size: int, tmp_path: Path
) -> None:
    """The socket takes part of the body: the rest is sent as it drains, the connection
    holds its pipeline (`_can_write`) until then, and the wait is counted."""

    async def test() -> None:
        edge, client = _pair()
        conn, waits = await _connection(edge)
        head, hit, expected = _hit(tmp_path, size)
        conn._send_hit_file(head, hit)
        held = conn._can_write
        assert held is not None and waits._value.get() == 1  # (the socket could not take it all)
        assert await _read_all(client, len(expected)) == expected
        await asyncio.wait_for(held, 10)  # released once all is sent
        assert conn._sending is None and conn._can_write is None
        conn.transport.close()  # type: ignore[union-attr]
        client.close()

    _run(test)


@SIZES
def test_a_hit_behind_bytes_still_buffered_is_copied_behind_them(size: int, tmp_path: Path) -> None:
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
        head, hit, expected = _hit(tmp_path, size)
        conn._send_hit_file(head, hit)
        assert conn._sending is None and waits._value.get() == 0  # copied, not sent from the file
        assert await _read_all(client, len(earlier) + len(expected)) == earlier + expected
        t.close()
        client.close()

    _run(test)
