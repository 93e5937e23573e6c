"""The edge benchmark's pure parts: reading wrk's output, the stampede's response
parser, the configs it writes for akacdn, nginx and Varnish (plain and TLS), the TLS
probe's reading of handshakes, and the ratios and tables."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from pathlib import Path

import pytest

from akacdn.config import load_network
from akacdn.devnet import certs
from akacdn.edge import tls
from bench.edge import network, origin, peers, report, run, stampede, tlsprobe, wrk

WRK_OUT = """Running 2s test @ http://127.78.50.1:8080/obj/nginx1-102400
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    34.70ms   20.79ms  83.22ms   59.91%
    Req/Sec     1.33k   366.69     2.04k    68.42%
  Latency Distribution
     50%  980.00us
     75%   53.33ms
     90%   59.91ms
     99%    1.02s
  2733 requests in 2.04s, 270.62MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:   1336.94
Transfer/sec:    132.38MB
"""


def test_wrk_output_is_read() -> None:
    r = wrk.parse(WRK_OUT)
    assert (r.requests, r.rps, r.non_2xx) == (2733, pytest.approx(1336.94), 7)
    assert r.seconds == pytest.approx(2.04) and r.bytes_read == pytest.approx(270.62 * 2**20)
    assert r.percentiles == pytest.approx({"50": 980e-6, "75": 0.05333, "90": 0.05991, "99": 1.02})
    assert r.p99 == pytest.approx(1.02)
    assert r.socket_errors == {"connect": 0, "read": 3, "write": 0, "timeout": 2}
    assert not r.error


def test_wrk_failure_is_an_error_not_zeros() -> None:
    r = wrk.parse("unable to connect to 127.78.50.1:8080 Connection refused\n")
    assert r.requests == 0 and "Connection refused" in r.error


@pytest.mark.parametrize(("text", "s"), [("12us", 12e-6), ("1.5ms", 0.0015), ("2.00s", 2.0), ("1.00m", 60.0)])
def test_wrk_durations(text: str, s: float) -> None:
    assert wrk.seconds(text) == pytest.approx(s)


def test_wrk_argv_sets_host_and_latency() -> None:
    argv = wrk.argv("http://127.78.1.11:8080/obj/a-1024", network.HOST, 50, 10.0)
    assert argv[:4] == ["wrk", "-t1", "-c50", "-d10s"] and "--latency" in argv
    assert argv[argv.index("-H") + 1] == f"Host: {network.HOST}"


def test_response_parser_content_length_chunked_and_eof() -> None:
    status, headers, body = stampede.parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Cache: HIT\r\n\r\nabc")
    assert (status, headers["x-cache"], body) == (200, "HIT", b"abc")
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
    assert stampede.parse_response(raw)[2] == b"abcde"
    assert stampede.parse_response(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nto the end")[2] == b"to the end"


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",  # cut short
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",  # chunk cut short
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n",  # no end of headers
        b"garbage\r\n\r\n",
    ],
)
def test_response_parser_refuses_partial_responses(raw: bytes) -> None:
    with pytest.raises(stampede.BadResponse):
        stampede.parse_response(raw)


def test_origin_bodies_are_deterministic_and_sized() -> None:
    assert origin.body("/obj/a-1024", 1024) == origin.body("/obj/a-1024", 1024)
    assert len(origin.body("/obj/a-102400", 102400)) == 102400
    assert origin.body("/obj/a-1024", 1024) != origin.body("/obj/b-1024", 1024)


def test_akacdn_config_has_one_edge_and_the_bench_customer(tmp_path: Path) -> None:
    path, workers, notes = network.write_config(tmp_path, "http://127.78.40.1:8080", 1)
    net = load_network(path)
    edges = net.by_role("edge")
    assert [(m.id, m.address, m.region) for m in edges] == [(network.EDGE_ID, network.EDGE_ADDR, "r1")]
    assert [r.id for r in net.regions] == ["r1"] and net.ports.http == network.PORT
    (c,) = net.customers
    assert c.hostnames == [network.HOST] and c.origin == "http://127.78.40.1:8080"
    assert (workers, notes) == (1, [])


def test_akacdn_edge_workers_are_asked_for_or_noted(tmp_path: Path) -> None:
    path, workers, notes = network.write_config(tmp_path, "http://127.78.40.1:8080", 2)
    load_network(path)  # whatever was written, the loader accepts it
    assert workers in (1, 2)
    assert (workers == 2) == (not notes)  # 1 process only with a note saying so


def test_nginx_conf(tmp_path: Path) -> None:
    conf = peers.nginx_conf(tmp_path / "n", "127.78.50.1", 8080, "127.78.40.1:8080", 2).read_text()
    for want in (
        "worker_processes 2;",
        "daemon off;",
        "access_log off;",
        "listen 127.78.50.1:8080 reuseport",
        f"proxy_cache_path {tmp_path}/n/cache",
        "proxy_cache_valid 200 1h;",
        "server 127.78.40.1:8080;",
    ):
        assert want in conf
    assert conf.count("{") == conf.count("}")
    argv = peers.nginx_argv(tmp_path / "n" / "nginx.conf")
    assert argv[0] == "nginx" and argv[argv.index("-c") + 1] == str(tmp_path / "n" / "nginx.conf")


def test_varnish_vcl_and_argv(tmp_path: Path) -> None:
    vcl = peers.varnish_vcl(tmp_path, "127.78.40.1", 8080).read_text()
    assert vcl.startswith("vcl 4.1;") and '.host = "127.78.40.1";' in vcl and '.port = "8080";' in vcl
    argv = peers.varnish_argv(tmp_path, "127.78.51.1", 8080, tmp_path / "bench.vcl", 2)
    opts = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert argv[:2] == ["varnishd", "-F"]
    assert argv[argv.index("-n") + 1] == str(tmp_path / "work")
    assert argv[argv.index("-a") + 1] == "127.78.51.1:8080" and "thread_pools=2" in argv
    assert argv[argv.index("-s") + 1].startswith("malloc") and opts


def _row(kind: str, obj: str, rnd: int, v: float | None, rep: int = 1) -> dict[str, object]:
    return {"kind": kind, "object": obj, "round": rnd, "size": 1024, "processes": rnd, "rps_per_cpu_s": v,
            "notes": [], "repeat": rep}  # fmt: skip


def test_ratio_to_the_best_peer_of_the_same_object_and_round() -> None:
    rows = [
        _row("nginx", "1 KiB", 1, 100.0),
        _row("varnish", "1 KiB", 1, 80.0),
        _row("akacdn", "1 KiB", 1, 50.0),
        _row("akacdn", "1 KiB", 2, 50.0),
        _row("varnish", "1 KiB", 2, 200.0),
        _row("nginx", "100 KiB", 1, None),
    ]
    report.add_ratios(rows)
    assert [r["ratio_to_best_peer"] for r in rows] == [1.0, 0.8, 0.5, 0.25, 1.0, None]


def test_medians_keep_the_middle_run() -> None:
    rows = [_row("nginx", "1 KiB", 1, v, i) for i, v in enumerate((30.0, 10.0, 20.0), 1)]
    (m,) = report.medians(rows)
    assert m["rps_per_cpu_s"] == 20.0 and m["repeat"] == 3 and m["samples"] == [30.0, 10.0, 20.0]


def test_tables_render() -> None:
    rows = [_row("nginx", "1 KiB", 1, 100.0), _row("varnish", "1 KiB", 2, 80.0)]
    report.add_ratios(rows)
    text = report.table(rows)
    assert "nginx proxy_cache" in text and "1 (2 pools)" in text
    st = [{"kind": "akacdn", "round": 1, "clients": 200, "origin_requests": 1, "ok": 200, "distinct_bodies": 1,
           "seconds": 0.4, "statuses": {"200": 200}, "errors": {}}]  # fmt: skip
    assert "200/200" in report.stampede_table(st)


def test_wrk_argv_extra_fields_for_a_handshake_per_request() -> None:
    argv = wrk.argv("https://127.78.1.11:8443/obj/a-tls-1024", network.HOST, 50, 3.0, 1, ("Connection: close",))
    assert argv[-1] == "https://127.78.1.11:8443/obj/a-tls-1024"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "-H"] == [f"Host: {network.HOST}", "Connection: close"]


def test_origin_serves_a_1_mib_object() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    async def go() -> tuple[int, bytes, int]:
        async with TestClient(TestServer(origin.make_app(0))) as client:
            r = await client.get("/obj/akacdn1-1048576")
            body = await r.read()
            stats = await (await client.get("/_origin/stats")).json()
            return r.status, body, stats["requests"]["/obj/akacdn1-1048576"]

    status, body, count = asyncio.run(go())
    assert (status, len(body), count) == (200, 2**20, 1)
    assert body == origin.body("/obj/akacdn1-1048576", 2**20)
    assert run.SIZES["1 MiB"] == 2**20 <= origin.MAX_SIZE


@pytest.fixture(scope="module")
def leaf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    return certs.leaf(d, "bench", [network.HOST, network.EDGE_ADDR, network.NGINX_ADDR])


@pytest.mark.parametrize("workers", [1, 2])
def test_akacdn_config_with_tls_loads(tmp_path: Path, leaf: tuple[Path, Path], workers: int) -> None:
    path, _, _ = network.write_config(tmp_path, "http://127.78.40.1:8080", workers, leaf)
    net = load_network(path)
    assert (net.ports.http, net.ports.https) == (network.PORT, network.TLS_PORT)
    assert Path(net.edge.tls_cert) == leaf[0] and Path(net.edge.tls_key) == leaf[1]
    default, by_name = tls.configured(net)
    assert default == leaf and by_name == {}
    assert tls.Certificates(net).enabled


def test_nginx_tls_conf(tmp_path: Path, leaf: tuple[Path, Path]) -> None:
    conf = peers.nginx_conf(tmp_path / "n", "127.78.50.1", 8080, "127.78.40.1:8080", 1, (*leaf, 8443))
    text = conf.read_text()
    for want in (
        "listen 127.78.50.1:8080 reuseport",
        "listen 127.78.50.1:8443 ssl reuseport",
        f"ssl_certificate {leaf[0]};",
        f"ssl_certificate_key {leaf[1]};",
        "ssl_protocols TLSv1.2 TLSv1.3;",
    ):
        assert want in text
    # one server block: the same proxy_cache location for both listeners; no session settings
    # changed (nginx's defaults, tickets on, as akacdn's edge has OpenSSL's)
    assert text.count("server {") == 1 and "ssl_session" not in text
    assert "ssl" not in peers.nginx_conf(tmp_path / "p", "127.78.50.1", 8080, "127.78.40.1:8080", 1).read_text()


def _contexts(leaf: tuple[Path, Path], client_max: ssl.TLSVersion | None = None) -> tuple[ssl.SSLContext, ...]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*leaf)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    if client_max is not None:
        client.maximum_version = client_max
    return server, client


def _handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, session: ssl.SSLSession | None = None
) -> tuple[bytes, bytes, ssl.SSLSession | None]:
    """An in-memory handshake: (the client's first flight, the server's first flight, the
    session the client ends with, tickets read)."""
    bios = [ssl.MemoryBIO() for _ in range(4)]  # client in/out, server in/out
    c = client_ctx.wrap_bio(bios[0], bios[1], server_side=False, session=session)
    s = server_ctx.wrap_bio(bios[2], bios[3], server_side=True)
    firsts: list[bytes] = []
    for _ in range(10):
        for side, out, peer_in in ((c, bios[1], bios[2]), (s, bios[3], bios[0])):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            data = out.read()
            if data:
                if len(firsts) < 2:
                    firsts.append(data)
                peer_in.write(data)
    s.write(b"x")  # tickets (TLS 1.3: after the handshake) and a byte of data
    bios[0].write(bios[3].read())
    assert c.read(1) == b"x"
    return firsts[0], firsts[1], c.session


@pytest.mark.parametrize("version", [None, ssl.TLSVersion.TLSv1_2])
def test_tls_probe_reads_full_and_resumed_handshakes(leaf: tuple[Path, Path], version: ssl.TLSVersion | None) -> None:
    server, client = _contexts(leaf, version)
    ch, sh, session = _handshake(server, client)
    h1, h2 = tlsprobe.parse_hello(ch), tlsprobe.parse_hello(sh)
    assert (h1.kind, h2.kind) == (tlsprobe.CLIENT_HELLO, tlsprobe.SERVER_HELLO)
    assert not tlsprobe.offered_resumption(h1) and not tlsprobe.resumed(h1, h2)
    assert tlsprobe.VERSIONS[h2.negotiated_version] == ("TLS 1.2" if version else "TLS 1.3")
    assert session is not None
    ch2, sh2, _ = _handshake(server, client, session)
    r1, r2 = tlsprobe.parse_hello(ch2), tlsprobe.parse_hello(sh2)
    assert tlsprobe.offered_resumption(r1) and tlsprobe.resumed(r1, r2)
    t = tlsprobe.Tally()
    t.add(h1, h2)
    t.add(r1, r2)
    assert (t.handshakes, t.offered, t.resumed) == (2, 1, 1)
    d = t.as_dict()
    assert d["versions"] == {"TLS 1.2" if version else "TLS 1.3": 2} and isinstance(d["ciphers"], dict)
    assert "offered a session to resume in 1 of 2 handshakes, the server resumed 1" in t.summary()
    if version is None:
        assert d["groups"] == {"X25519": 2}


@pytest.mark.parametrize(
    "data", [b"", b"\x17\x03\x03\x00\x01x", b"\x16\x03\x01\x00\x05\x01\x00\x00\x30\x03", b"GET / HTTP/1.1\r\n\r\n"]
)
def test_tls_probe_refuses_what_is_not_a_whole_hello(data: bytes) -> None:
    with pytest.raises(tlsprobe.NotHello):
        tlsprobe.parse_hello(data)


def test_tls_probe_relay_counts_resumption(leaf: tuple[Path, Path]) -> None:
    """The relay end to end: a TLS server on loopback, two connections through the relay,
    the second resuming the first's session."""
    server_ctx, client_ctx = _contexts(leaf)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as s:
                s.recv(1)
                s.sendall(b"ok")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with tlsprobe.Relay(("127.0.0.1", 0), ("127.0.0.1", port)) as relay:
            session = None
            for _ in range(2):
                raw = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
                with client_ctx.wrap_socket(raw, session=session) as c:
                    c.sendall(b"x")
                    assert c.recv(2) == b"ok"
                    session = c.session
            t.join(10)
    finally:
        listener.close()
    assert (relay.tally.connections, relay.tally.handshakes, relay.tally.offered, relay.tally.resumed) == (2, 2, 1, 1)


def test_tls_rows_sort_after_the_plain_ones_and_varnish_says_no_tls() -> None:
    rows = [
        _row("akacdn", "TLS handshake", 1, 2000.0),
        _row("nginx", "TLS handshake", 1, 4000.0),
        {**_row("varnish", "TLS 1 KiB", 1, None), "not_measured": run.NO_TLS},
        _row("nginx", "TLS 1 KiB", 1, 90000.0),
        _row("akacdn", "1 MiB", 1, 3000.0),
        _row("nginx", "1 KiB", 1, 50000.0),
        _row("akacdn", "1 KiB", 2, 80000.0),
    ]
    rows[4]["size"] = 2**20
    report.add_ratios(rows)
    assert [(r["round"], r["object"], r["kind"]) for r in report.sorted_rows(rows)] == [
        (1, "1 KiB", "nginx"),
        (1, "1 MiB", "akacdn"),
        (1, "TLS 1 KiB", "nginx"),
        (1, "TLS 1 KiB", "varnish"),
        (1, "TLS handshake", "nginx"),
        (1, "TLS handshake", "akacdn"),
        (2, "1 KiB", "akacdn"),
    ]
    assert rows[0]["ratio_to_best_peer"] == 0.5  # akacdn over nginx: Varnish has no TLS row to compare
    varnish = next(line for line in report.table(rows).splitlines() if "Varnish" in line)
    assert "TLS 1 KiB" in varnish and run.NO_TLS in varnish


def test_inprocess_times_a_plain_hit_of_each_size(tmp_path: Path) -> None:
    """`bench.edge.inprocess`: a real edge stores both objects and answers every timed
    request as a plain hit (1 KiB from memory, 100 KiB by sendfile), and writes its JSON."""
    import json

    from bench.edge import inprocess

    assert inprocess.main(["--requests", "300", "--repeat", "1", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "edge-inprocess.json").read_text())["results"]
    assert [(r["object"], r["answer"]) for r in rows] == [("1 KiB", "writelines"), ("100 KiB", "sendfile")]
    assert all(r["per_request_us"] > 0 and r["edge_python_us"] > 0 for r in rows), rows
    assert rows[1]["bare_sendfile_us"] > 0, rows


def test_objects_are_the_named_rows_or_any_size_the_origin_serves() -> None:
    p = run.parser()
    assert p.parse_args(["--objects", "256 KiB, 2  MiB,TLS 1 KiB"]).objects == ["256 KiB", "2 MiB", "TLS 1 KiB"]
    assert run.object_size("256 KiB") == 256 * 1024 and run.object_size("2 MiB") == 2 * 2**20
    for bad in ("2 GiB", "64 MiB", "0 KiB", "big"):
        with pytest.raises(SystemExit):
            p.parse_args(["--objects", bad])
