"""Hostile HTTP at the edge: smuggling and malformed requests get 400, are counted, and
the edge keeps serving; the edge is never an open proxy."""

from __future__ import annotations

import re
import socket

import pytest

from akacdn.devnet.network import DEMO_HOST
from akacdn.devnet.supervisor import Devnet

from .conftest import curl

H = f"Host: {DEMO_HOST}\r\n".encode()

HOSTILE = {
    "content-length-and-transfer-encoding": b"POST / HTTP/1.1\r\n" + H
    + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two-content-lengths": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    "malformed-chunk": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "unknown-transfer-coding": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n",
    "header-line-too-long": b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n",
    "too-many-headers": b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: 1\r\n" % i for i in range(300)) + b"\r\n",
    "bad-method": b"G@T / HTTP/1.1\r\n" + H + b"\r\n",
    "space-in-field-name": b"GET / HTTP/1.1\r\n" + H + b"X A: 1\r\n\r\n",
    "bare-lf": b"GET / HTTP/1.1\n" + H.replace(b"\r\n", b"\n") + b"\n",
    "nul-in-value": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n",
    "no-host": b"GET / HTTP/1.1\r\n\r\n",
    "two-hosts": b"GET / HTTP/1.1\r\n" + H + H + b"\r\n",
    "target-too-long": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n",
    "body-too-large": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 17000000\r\n\r\n" + b"a" * 17_000_000,
}  # fmt: skip

# (status, refusal reason) where not (400, malformed_request)
REFUSAL = {
    "header-line-too-long": (431, "field_too_large"),
    "too-many-headers": (431, "too_many_fields"),
    "no-host": (400, "bad_host"),
    "two-hosts": (400, "bad_host"),
    "target-too-long": (414, "target_too_long"),
    "body-too-large": (413, "body_too_large"),
}


def status_of(addr: str, port: int, data: bytes) -> int:
    with socket.create_connection((addr, port), timeout=5) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before all of it was sent: the answer is waiting
        line = s.recv(200).split(b"\r\n", 1)[0]
    return int(line.split()[1])


def answers_of(addr: str, port: int, data: bytes) -> list[bytes]:
    """Every status line the edge sends before it closes the connection."""
    got = b""
    with socket.create_connection((addr, port), timeout=5) as s:
        s.sendall(data)
        while chunk := s.recv(65536):
            got += chunk
    return re.findall(rb"HTTP/1\.1 \d{3} [A-Za-z ]+(?=\r\n)", got)  # bodies may end without a line break


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_requests_get_400_are_counted_and_the_edge_keeps_serving(module_devnet: Devnet, name: str) -> None:
    devnet = module_devnet
    edge, port = devnet.layout.edge(1, 1), devnet.layout.http_port
    status, reason = REFUSAL.get(name, (400, "malformed_request"))
    before = devnet.metric("r1-e1", "akacdn_edge_refused_total", reason=reason)
    assert status_of(edge, port, HOSTILE[name]) == status
    assert devnet.metric("r1-e1", "akacdn_edge_refused_total", reason=reason) == before + 1
    assert curl(f"http://{edge}:{port}/", "-H", f"Host: {DEMO_HOST}")[0] == 200


def test_pipelined_requests_are_answered_in_order_and_a_bad_one_ends_the_connection(module_devnet: Devnet) -> None:
    devnet = module_devnet
    edge, port = devnet.layout.edge(1, 1), devnet.layout.http_port
    get = b"GET /img/logo.png HTTP/1.1\r\n" + H + b"\r\n"
    miss = b"GET /no/such/page HTTP/1.1\r\n" + H + b"\r\n"
    assert status_of(edge, port, get) == 200  # stored: the next ones may be plain hits
    lines = answers_of(edge, port, get + miss + get + HOSTILE["obs-fold"] + get)
    assert lines == [b"HTTP/1.1 200 OK", b"HTTP/1.1 404 Not Found", b"HTTP/1.1 200 OK", b"HTTP/1.1 400 Bad Request"]


def test_a_slow_head_is_timed_out_and_counted(module_devnet: Devnet) -> None:
    devnet = module_devnet
    edge, port = devnet.layout.edge(1, 1), devnet.layout.http_port
    before = devnet.metric("r1-e1", "akacdn_edge_refused_total", reason="head_timeout")
    with socket.create_connection((edge, port), timeout=60) as s:
        s.sendall(b"GET / HTTP/1.1\r\n" + H)  # and never the blank line
        assert s.recv(100) == b""  # the edge closed it
    assert devnet.metric("r1-e1", "akacdn_edge_refused_total", reason="head_timeout") == before + 1


def test_absolute_form_names_the_host_and_is_never_proxied(module_devnet: Devnet) -> None:
    devnet = module_devnet
    edge, port = devnet.layout.edge(1, 1), devnet.layout.http_port
    # the request-target's host wins over the Host field (RFC 9112 3.2.2): not a customer -> 421
    assert status_of(edge, port, b"GET http://evil.example/ HTTP/1.1\r\n" + H + b"\r\n") == 421
    ok = b"GET http://" + DEMO_HOST.encode() + b"/img/logo.png HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    assert status_of(edge, port, ok) == 200


def test_equivalent_targets_share_one_cached_object(module_devnet: Devnet) -> None:
    devnet = module_devnet
    edge, port = devnet.layout.edge(2, 3), devnet.layout.http_port
    first = curl(f"http://{edge}:{port}/img/photo-1.png", "-H", f"Host: {DEMO_HOST}")
    for variant in ("/img/./photo-1.png", "/css/../img/photo-1.png", "/%69mg/photo-1.png"):
        status, headers, body = curl(f"http://{edge}:{port}{variant}", "--path-as-is", "-H", f"Host: {DEMO_HOST}")
        assert status == 200 and headers["x-cache"] == "HIT" and body == first[2], variant
