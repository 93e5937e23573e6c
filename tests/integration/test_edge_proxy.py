"""The edge as an HTTP intermediary in front of a real site: request forwarding (RFC 9110
7.6, RFC 7239), customer header rules, CORS, compression (stored variants, decoding,
compression at the edge), framing of 204, Age lists, 304 updates (RFC 9111 3.2, 4.3.4),
the scheme in the cache key, Max-Forwards and TRACE.

One real edge in front of the programmable origin of test_edge_semantics (semantics_origin.py:
its /_stats say what reached it; /echo answers the request fields it got), real curl.
TLS has its own module (test_edge_tls.py).
"""

from __future__ import annotations

import gzip
import json
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import brotli
import pytest

from akacdn.devnet.supervisor import http_get

from .conftest import Proc, curl, poll
from .test_edge_semantics import HOST, Resp, Sem, raw_request, start_sem

PAGE = b"".join(b"<p>line %d of a compressible page</p>\n" % i for i in range(400))  # the origin's
BROWSER_AE = "gzip, deflate, br, zstd"


def rules(network: dict, customers: dict) -> None:
    c = customers["customers"][0]
    c["request_headers"] = [
        {"action": "set", "name": "X-CDN", "value": "akacdn"},
        {"action": "remove", "name": "X-Secret"},
    ]
    c["response_headers"] = [
        {"action": "add", "name": "Strict-Transport-Security", "value": "max-age=300"},
        {"action": "remove", "name": "X-Origin-Response"},
    ]
    c["compress"] = True
    network["edge"]["sndbuf"] = SNDBUF


SNDBUF = 256 * 1024


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Sem:
    """One origin and one edge for the module (each test uses its own paths)."""
    from .conftest import _nets

    started: list[Proc] = []

    def procs(name: str, argv: list[str], log: Path) -> Proc:
        import subprocess

        with open(log, "ab") as out:
            p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        proc = Proc(name, p, log)
        started.append(proc)
        return proc

    try:
        yield start_sem(tmp_path_factory.mktemp("proxy"), next(_nets), procs, tweak=rules)
    finally:
        for p in reversed(started):
            p.stop()


def echo(sem: Sem, *opts: str, path: str = "/echo") -> dict:
    """What the origin got for a request through the edge: {"method", "fields": {lower name: [values]}}."""
    r = sem.get(path, *opts)
    assert r.status == 200, str(r)
    got = json.loads(decoded(r))  # (the edge compresses JSON for a client that accepts it)
    fields: dict[str, list[str]] = {}
    for k, v in got["fields"]:
        fields.setdefault(k.lower(), []).append(v)
    return {"method": got["method"], "fields": fields, "response": r}


# --- forwarding -----------------------------------------------------------------------------------


def test_client_connections_get_the_configured_send_buffer(proxy: Sem) -> None:
    """`[edge] sndbuf` fixes the accepted connections' SO_SNDBUF (the kernel doubles it),
    as `ss` shows for a live connection (tb: the send buffer)."""
    import subprocess

    with socket.create_connection((proxy.edge, proxy.lay.http_port), timeout=5) as s:
        s.sendall(f"GET /echo HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        local = s.getsockname()[1]
        out = subprocess.run(
            ["ss", "-tmnH", "state", "established", f"( dport = :{local} )"], capture_output=True, text=True
        ).stdout
    assert f"tb{2 * SNDBUF}," in out, out


def test_end_to_end_fields_reach_the_origin_and_hop_by_hop_ones_do_not(proxy: Sem) -> None:
    got = echo(
        proxy,
        "-H", "Origin: https://app.example",
        "-H", "X-Requested-With: XMLHttpRequest",
        "-H", "X-App-Version: 7",
        "-H", "Accept-Language: de",
        "-H", "Connection: keep-alive, X-Hop",
        "-H", "X-Hop: dropped",
        "-H", "Keep-Alive: timeout=5",
        "-H", "TE: trailers",
        "-H", "X-Secret: s3cret",
        "-H", "X-Forwarded-Proto: https",
        "-H", "Range: bytes=0-1",
    )  # fmt: skip
    f = got["fields"]
    assert f["origin"] == ["https://app.example"] and f["x-requested-with"] == ["XMLHttpRequest"], f
    assert f["x-app-version"] == ["7"] and f["accept-language"] == ["de"], f
    for gone in ("x-hop", "keep-alive", "te", "x-secret", "range"):
        assert gone not in f, f"{gone} must not reach the origin: {f}"
    assert f["host"] == [HOST], f
    assert f["x-cdn"] == ["akacdn"], f"the customer's rule sets X-CDN: {f}"
    assert f["x-forwarded-proto"] == ["http"], f"the edge says the scheme, not the client: {f}"


def test_via_forwarded_and_x_forwarded_for_are_appended(proxy: Sem) -> None:
    opts = ("-H", "X-Forwarded-For: 203.0.113.7", "-H", "Via: 1.1 corp-proxy", "-H", 'Forwarded: for="_hidden"')
    f = echo(proxy, *opts)["fields"]
    client = f["x-forwarded-for"][0].rpartition(", ")[2]  # curl's loopback address
    assert client.startswith("127.") and f["x-forwarded-for"] == [f"203.0.113.7, {client}"], f
    via = ", ".join(f["via"])
    assert via.startswith("1.1 corp-proxy") and via.endswith("1.1 r1-e1 (akacdn)"), via
    fwd = ", ".join(f["forwarded"])
    assert fwd.startswith('for="_hidden", ') and f"for={client};proto=http;host={HOST}" in fwd, fwd


def test_unsafe_method_body_and_fields_are_forwarded(proxy: Sem) -> None:
    got = echo(proxy, "-X", "PUT", "--data-binary", "payload", "-H", "Content-Type: text/plain", "-H", "X-Idem: 42")
    assert got["method"] == "PUT" and got["fields"]["x-idem"] == ["42"], got["fields"]
    assert got["fields"]["content-length"] == ["7"], got["fields"]


def test_response_rules_apply_to_misses_and_hits(proxy: Sem) -> None:
    for _ in range(2):
        r = proxy.get("/fresh")
        assert r.headers.get("strict-transport-security") == "max-age=300", str(r)
        assert "x-origin-response" not in r.headers, str(r)
    assert r.hit, str(r)


def test_a_reload_that_changes_the_rules_changes_the_next_hit(
    tmp_path: Path, net: int, procs: Callable[..., Proc]
) -> None:
    """A hit's answer is built once per stored object, with the customer's response rules:
    a reload that changes them is in the very next hit, and the object stays stored."""
    sem = start_sem(tmp_path, net, procs, tweak=rules)
    for _ in range(2):
        r = sem.get("/big")  # (not compressible: the plain hit answers it, from its file)
    assert r.hit and r.headers.get("strict-transport-security") == "max-age=300", str(r)
    customers = sem.config.parent / "customers.toml"
    customers.write_text(customers.read_text().replace("max-age=300", "max-age=600"))
    sem.edge_proc.popen.send_signal(signal.SIGHUP)
    assert poll(lambda: reloads(sem) >= 1, 10), sem.logs()
    r = sem.get("/big")
    assert r.hit and r.headers.get("strict-transport-security") == "max-age=600", str(r)
    assert sem.count("/big") == 1


def reloads(sem: Sem) -> float:
    metrics = http_get(f"http://{sem.edge}:9400/metrics", timeout=5)[1].decode()
    applied = 'akacdn_config_reloads_total{result="applied"}'
    return sum(float(x.split()[-1]) for x in metrics.splitlines() if x.startswith(applied))


def test_an_upgrade_for_a_stored_object_is_answered_and_the_connection_closed(proxy: Sem) -> None:
    """Upgrade is ignored (RFC 9110 7.8): the stored answer, then the edge closes, since
    llhttp reads nothing after an upgrade request (a plain hit would keep it open)."""
    from .test_edge_semantics import BIG

    assert proxy.get("/big").status == 200
    ask = f"GET /big HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    with socket.create_connection((proxy.edge, proxy.lay.http_port), timeout=5) as s:
        s.sendall(ask.encode())
        out = b""
        while chunk := s.recv(65536):  # (ends: the edge closes)
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK" and body == BIG, head
    assert b"Connection: close" in lines and b"X-Cache: HIT" in lines, head


# --- CORS -------------------------------------------------------------------------------------------


def test_cors_preflight_and_responses_per_origin(proxy: Sem) -> None:
    pre = proxy.get(
        "/cors", "-X", "OPTIONS", "-H", "Origin: https://a.example",
        "-H", "Access-Control-Request-Method: PUT", "-H", "Access-Control-Request-Headers: x-token",
    )  # fmt: skip
    assert pre.status == 204 and pre.headers.get("access-control-allow-origin") == "https://a.example", str(pre)
    assert pre.headers.get("access-control-allow-headers") == "x-token", str(pre)
    assert "content-length" not in pre.headers and pre.body == b"", f"a 204 has no body, no Content-Length:\n{pre}"
    a = proxy.get("/cors", "-H", "Origin: https://a.example")
    b = proxy.get("/cors", "-H", "Origin: https://b.example")
    assert a.headers.get("access-control-allow-origin") == "https://a.example", str(a)
    assert b.headers.get("access-control-allow-origin") == "https://b.example", str(b)
    again = proxy.get("/cors", "-H", "Origin: https://a.example")
    assert again.hit and again.headers.get("access-control-allow-origin") == "https://a.example", str(again)
    assert proxy.count("/cors", "GET") == 2, "one origin request per Origin (Vary: Origin)"


# --- compression ------------------------------------------------------------------------------------


def decoded(r: Resp) -> bytes:
    coding = r.headers.get("content-encoding")
    if coding == "br":
        return brotli.decompress(r.body)
    if coding == "gzip":
        return gzip.decompress(r.body)
    assert coding is None, str(r)
    return r.body


def test_compressed_variants_are_stored_per_normalised_accept_encoding(proxy: Sem) -> None:
    cases = [(BROWSER_AE, "br"), ("gzip, deflate", "gzip"), ("deflate", None), ("br;q=0, gzip", "gzip")]
    for ae, coding in cases:
        r = proxy.get("/gz", "-H", f"Accept-Encoding: {ae}")
        assert r.status == 200 and r.headers.get("content-encoding") == coding, f"{ae!r}:\n{r}"
        assert decoded(r) == PAGE, f"{ae!r}: the body decodes to the page"
    assert proxy.count("/gz") == 3, "br, gzip, identity: three variants (the last case is the gzip one)"
    for ae, coding in cases:
        r = proxy.get("/gz", "-H", f"Accept-Encoding: {ae}")
        assert r.hit and r.headers.get("content-encoding") == coding, f"{ae!r}:\n{r}"
        assert decoded(r) == PAGE
    origin_saw = proxy.last_headers("/gz").get("accept-encoding")
    assert origin_saw is None, f"'deflate' alone normalises to identity (no field), got {origin_saw!r}"
    got = echo(proxy, "-H", f"Accept-Encoding: {BROWSER_AE}")["fields"]
    assert got["accept-encoding"] == ["br, gzip"], f"the origin sees the normalised value: {got}"


def test_a_client_that_does_not_accept_the_stored_encoding_gets_it_decoded(proxy: Sem) -> None:
    first = proxy.get("/gz-novary", "-H", "Accept-Encoding: gzip")
    assert first.headers.get("content-encoding") == "gzip" and gzip.decompress(first.body) == PAGE, str(first)
    for opts in ((), ("-H", "Accept-Encoding: br")):
        r = proxy.get("/gz-novary", *opts)
        assert r.status == 200 and r.body == PAGE, f"decoded for a client without gzip:\n{r}"
        assert "content-encoding" not in r.headers, str(r)
        assert r.headers.get("etag") == 'W/"nv-1"', f"a transformed body has a weak ETag:\n{r}"
        assert r.hit, f"decoded from the stored copy:\n{r}"
    head = proxy.get("/gz-novary", "-I")
    assert head.status == 200 and "content-encoding" not in head.headers, str(head)
    assert proxy.count("/gz-novary") == 1


def test_the_edge_compresses_what_the_origin_sends_uncompressed(proxy: Sem) -> None:
    br = proxy.get("/page.css", "-H", f"Accept-Encoding: {BROWSER_AE}")
    assert br.headers.get("content-encoding") == "br" and decoded(br) == PAGE, str(br)
    assert "accept-encoding" in br.headers.get("vary", "").lower(), str(br)
    assert len(br.body) < len(PAGE) // 4, f"compressed: {len(br.body)} of {len(PAGE)} bytes"
    gz = proxy.get("/page.css", "-H", "Accept-Encoding: gzip")
    assert gz.headers.get("content-encoding") == "gzip" and decoded(gz) == PAGE, str(gz)
    plain = proxy.get("/page.css")
    assert "content-encoding" not in plain.headers and plain.body == PAGE, str(plain)
    assert "accept-encoding" in plain.headers.get("vary", "").lower(), f"the identity copy varies too:\n{plain}"
    for ae in (BROWSER_AE, "gzip", None):
        r = proxy.get("/page.css", *(("-H", f"Accept-Encoding: {ae}") if ae else ()))
        assert r.hit and decoded(r) == PAGE, str(r)
    assert proxy.count("/page.css") == 3
    for path in ("/no-transform", "/photo.jpg"):
        r = proxy.get(path, "-H", f"Accept-Encoding: {BROWSER_AE}")
        assert "content-encoding" not in r.headers and r.body == PAGE, f"{path} is never compressed:\n{r}"


# --- conformance --------------------------------------------------------------------------------


def test_a_stored_204_is_served_without_body_or_content_length(proxy: Sem) -> None:
    for _ in range(3):
        for method in ("GET", "HEAD"):
            raw = raw_request(proxy, "/empty", method)
            head, _, body = raw.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 204"), raw
            assert b"content-length" not in head.lower() and b"transfer-encoding" not in head.lower(), raw
            assert body == b"", raw
    assert b"X-Cache: HIT" in raw, raw
    assert proxy.count("/empty") == 1


def test_age_from_the_origin_counts_when_it_is_a_list(proxy: Sem) -> None:
    proxy.get("/aged")
    r = proxy.get("/aged")
    assert r.hit and int(r.headers["age"]) >= 7200, f"the origin's Age (first member) counts:\n{r}"
    assert int(r.cs["ttl"]) <= 10000 - 7200, f"freshness left is max-age minus that age:\n{r}"


def test_a_304_updates_the_stored_fields(proxy: Sem) -> None:
    from .test_edge_semantics import stale_probe

    first = proxy.get("/reval-update")
    assert first.headers.get("x-version") == "1", str(first)
    r = stale_probe(proxy, "/reval-update", lambda r: r.headers.get("x-version", "1") != "1", "a revalidation")
    assert r.body == b"reval body\n" and r.headers.get("cache-control") == "max-age=60", str(r)
    again = proxy.get("/reval-update")
    assert again.fresh_hit and again.headers.get("x-version") == r.headers["x-version"], str(again)


def test_a_304_for_another_etag_does_not_freshen_the_stored_one(proxy: Sem) -> None:
    from .test_edge_semantics import stale_probe

    assert proxy.get("/etag-change").body == b"version a\n"
    r = stale_probe(proxy, "/etag-change", lambda r: r.body != b"version a\n", "the changed object")
    assert r.body == b"version b\n" and r.headers.get("etag") == '"b"', str(r)


def test_max_forwards_zero_is_answered_by_the_edge_and_trace_is_refused(proxy: Sem) -> None:
    r = proxy.get("/echo", "-X", "OPTIONS", "-H", "Max-Forwards: 0")
    assert r.status == 200 and "GET" in r.headers.get("allow", ""), str(r)
    assert proxy.count("/echo", "OPTIONS") == 0
    got = echo(proxy, "-X", "OPTIONS", "-H", "Max-Forwards: 3")
    assert got["method"] == "OPTIONS" and got["fields"]["max-forwards"] == ["2"], got["fields"]
    t = proxy.get("/echo", "-X", "TRACE")
    assert t.status == 405 and proxy.count("/echo", "TRACE") == 0, str(t)


def test_the_scheme_is_part_of_the_cache_key(tmp_path: Path, net: int, procs: Callable[..., Proc]) -> None:
    """An origin that redirects http to https: the stored redirect never answers https."""
    sem = start_sem(tmp_path, net, procs)
    ca = tmp_path / "net" / "tls" / "ca.pem"

    def https(path: str) -> tuple[int, dict[str, str], bytes]:
        port, name = sem.lay.https_port, "a321.g.akacdn.test"  # the network's certificate
        return curl(f"https://{name}:{port}{path}", "--cacert", str(ca), "--resolve", f"{name}:{port}:{sem.edge}")

    for _ in range(2):
        r = sem.get("/scheme")
        assert r.status == 301 and r.headers["location"] == f"https://{HOST}/scheme", str(r)
    assert r.hit, str(r)
    for _ in range(2):
        status, headers, body = https("/scheme")
        assert status == 200 and body == b"secure\n", (status, headers, body)
    assert headers.get("x-cache") == "HIT", headers


@pytest.fixture(scope="module")
def net() -> int:
    from .conftest import _nets

    return next(_nets)


def test_a_large_hit_is_sent_from_its_file_whole_and_well_framed(proxy: Sem) -> None:
    """A 100 KiB plain hit goes out as its head, then sendfile(2) of its body from the hit's file."""
    from .test_edge_semantics import BIG

    first = proxy.get("/big")
    assert first.status == 200 and first.body == BIG, str(first)
    for _ in range(3):
        head, body = keepalive_request(proxy, "/big")  # (Connection: close would take the full flow)
        assert body == BIG, f"{len(body)} bytes"
        lines = head.split(b"\r\n")
        assert b"Content-Length: %d" % len(BIG) in lines, head
        age = next(line for line in lines if line.startswith(b"Age:"))
        assert age.split(b":", 1)[1].strip().isdigit(), age
        assert b"X-Cache: HIT" in lines and b"Strict-Transport-Security: max-age=300" in lines, head
    assert proxy.count("/big") == 1


def keepalive_request(sem: Sem, path: str) -> tuple[bytes, bytes]:
    """(head, body) of one keep-alive GET, the body read to its Content-Length."""
    with socket.create_connection((sem.edge, sem.lay.http_port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        out = b""
        while b"\r\n\r\n" not in out and (chunk := s.recv(65536)):
            out += chunk
        head, _, body = out.partition(b"\r\n\r\n")
        length = next(int(x.split(b":")[1]) for x in head.split(b"\r\n") if x.lower().startswith(b"content-length:"))
        while len(body) < length and (chunk := s.recv(65536)):
            body += chunk
    return head, body


def test_pipelined_answers_keep_their_order_behind_a_large_hit(proxy: Sem) -> None:
    """A 1 MiB hit the socket cannot take at once is sent as the client reads; the answers
    pipelined behind it wait for it (a client reading slowly)."""
    mib = bytes((i * 13) % 256 for i in range(2**20))
    assert proxy.get("/mib").body == mib
    assert proxy.get("/mib").hit
    mib_req, fresh_req = (f"GET {p} HTTP/1.1\r\nHost: {HOST}\r\n\r\n" for p in ("/mib", "/fresh"))
    ask = mib_req * 5 + fresh_req + mib_req  # 5 MiB: more than a socket's largest send buffer (4 MiB)
    with socket.create_connection((proxy.edge, proxy.lay.http_port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # a small window, not read yet:
        s.sendall(ask.encode() + f"GET /fresh HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        waited = poll(lambda: file_waits(proxy) >= 1, 10)  # the edge cannot send 1 MiB at once
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert waited, "the large hit waited for the client to read"
    bodies = []
    while out:
        head, _, rest = out.partition(b"\r\n\r\n")
        length = next(int(x.split(b":")[1]) for x in head.split(b"\r\n") if x.lower().startswith(b"content-length"))
        bodies.append(rest[:length])
        out = rest[length:]
    assert bodies == [mib] * 5 + [b"fresh body\n", mib, b"fresh body\n"], [len(b) for b in bodies]


def file_waits(sem: Sem) -> float:
    metrics = http_get(f"http://{sem.edge}:9400/metrics", timeout=5)[1].decode()
    waits = [line for line in metrics.splitlines() if line.startswith("akacdn_edge_hit_file_waits_total")]
    return float(waits[0].split()[-1]) if waits else 0.0
