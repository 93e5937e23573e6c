"""The edge benchmark's pure parts: reading wrk's output, the stampede's response
parser, the configs it writes for akacdn, nginx and Varnish, and the ratios."""

from __future__ import annotations

from pathlib import Path

import pytest

from akacdn.config import load_network
from bench.edge import network, origin, peers, report, stampede, wrk

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
