"""The edge's HTTP caching semantics (RFC 9110/9111, RFC 5861, RFC 9211), end to end.

One real edge process (r1-e1, alone: no relay, no mapper) in front of one real origin
process (semantics_origin.py, whose counters say what reached it), real sockets, real
curl. Each test gets fresh processes and a fresh store on this module's own 127.<net>.x.y
block; everything is stopped at teardown, also when a test fails.

Nothing here sleeps to synchronise: where an object must go stale (max-age=1), the test
polls the edge until the observable change (a revalidation at the origin, a stale answer),
with a deadline.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from akacdn.devnet.network import Layout, Tweak, write_config
from akacdn.devnet.supervisor import http_get

from .conftest import Proc, _nets, curl, poll, wait_for

HOST = "www.sem.example"
SERIAL = 321
HERE = Path(__file__).parent
BIG = bytes(i % 251 for i in range(100 * 1024))  # what the origin's /big serves
STALE_DEADLINE = 8.0  # seconds to wait for a max-age=1 object to be seen stale/revalidated


# --- responses and their headers ------------------------------------------------------------


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float = 0.0

    def __str__(self) -> str:
        lines = "\n".join(f"    {k}: {v}" for k, v in self.headers.items())
        body = self.body[:80] + (b"..." if len(self.body) > 80 else b"")
        return f"HTTP {self.status} in {self.elapsed:.2f}s\n{lines}\n    body ({len(self.body)} bytes): {body!r}"

    @property
    def cs(self) -> dict[str, str]:
        return cache_status(self.headers)

    @property
    def hit(self) -> bool:
        return "hit" in self.cs

    @property
    def fresh_hit(self) -> bool:
        """A hit on a fresh object (ttl >= 0): neither stale nor forwarded."""
        cs = self.cs
        return "hit" in cs and "fwd" not in cs and _int(cs.get("ttl"), 0) >= 0

    @property
    def says_stale(self) -> bool:
        """Served stale, by Cache-Status (fwd=stale without a 304, negative ttl, a stale
        detail) or by X-Cache."""
        cs = self.cs
        return (
            self.headers.get("x-cache", "").upper() == "STALE"
            or (cs.get("fwd") == "stale" and cs.get("fwd-status") != "304")
            or _int(cs.get("ttl"), 0) < 0
            or "stale" in cs.get("detail", "")
        )


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def cache_status(headers: dict[str, str]) -> dict[str, str]:
    """Our member of Cache-Status (RFC 9211) as {param: value}; bare params map to "".

    `akacdn; fwd=uri-miss; fwd-status=200; stored` -> {"fwd": "uri-miss", "fwd-status": "200",
    "stored": ""}. The last member is the one nearest to the client (ours)."""
    raw = headers.get("cache-status", "")
    if not raw:
        return {}
    member = raw.split(",")[-1]
    out: dict[str, str] = {}
    for i, part in enumerate(member.split(";")):
        part = part.strip()
        if i == 0 or not part:
            continue
        k, eq, v = part.partition("=")
        out[k.strip().lower()] = v.strip().strip('"') if eq else ""
    return out


# --- the edge and its origin -------------------------------------------------------------------


@dataclass
class Sem:
    lay: Layout
    edge: str
    origin: str
    origin_proc: Proc
    edge_proc: Proc
    config: Path = Path()  # the network file

    @property
    def origin_url(self) -> str:
        return f"http://{self.origin}:{self.lay.http_port}"

    def get(self, path: str, *opts: str, host: str = HOST) -> Resp:
        """A request through the edge with the real curl (GET unless opts say otherwise)."""
        t0 = time.monotonic()
        status, headers, body = curl(f"http://{self.edge}:{self.lay.http_port}{path}", "-H", f"Host: {host}", *opts)
        return Resp(status, headers, body, time.monotonic() - t0)

    def stats(self) -> dict[str, dict]:
        status, body = http_get(f"{self.origin_url}/_stats", timeout=5)
        assert status == 200, f"origin /_stats answered {status}: {body!r}"
        return json.loads(body)

    def count(self, path: str, method: str | None = None) -> int:
        """Requests the origin got for path (any method, or one method)."""
        s = self.stats()
        return int(s["methods"].get(f"{method} {path}", 0) if method else s["requests"].get(path, 0))

    def statuses(self, path: str) -> dict[str, int]:
        return {k: int(v) for k, v in self.stats()["statuses"].get(path, {}).items()}

    def last_headers(self, path: str) -> dict[str, str]:
        return self.stats()["last_headers"].get(path, {})

    def control(self, what: str) -> None:
        status, _, body = curl(f"{self.origin_url}/_{what}", "-X", "POST")
        assert status == 200, f"origin /_{what} answered {status}: {body!r}"

    def kill_origin(self) -> None:
        self.control("kill")
        wait_for(lambda: self.origin_proc.popen.poll() is not None, 5, "the origin process to exit")

    def logs(self) -> str:
        return f"--- edge log (tail) ---\n{self.edge_proc.text()[-3000:]}"


def stale_probe(sem: Sem, path: str, until: Callable[[Resp], bool], what: str, *opts: str) -> Resp:
    """GET path through the edge until `until(response)`; the response it stopped at.

    Fails at the deadline with the last response, for a max-age=1 object that never went
    stale or was never revalidated."""
    last: list[Resp] = []

    def once() -> Resp | None:
        r = sem.get(path, *opts)
        last[:] = [r]
        return r if until(r) else None

    got = poll(once, STALE_DEADLINE, every=0.1)
    if not got:
        pytest.fail(
            f"timed out after {STALE_DEADLINE}s waiting for {what}; last response:\n{last[0] if last else None}"
        )
    return got  # type: ignore[return-value]


@pytest.fixture(scope="module")
def net() -> int:
    """One 127.<net>.x.y block for the module: each test's processes are gone before the next starts."""
    return next(_nets)


def _wait_ready(url: str, proc: Proc, what: str, timeout: float = 20.0) -> None:
    ok = poll(lambda: proc.popen.poll() is not None or http_get(url)[0] == 200, timeout, every=0.1)
    if not ok or proc.popen.poll() is not None:
        pytest.fail(f"{what} not ready at {url} (exit code {proc.popen.poll()}):\n{proc.text()[-3000:]}")


def start_sem(
    tmp_path: Path,
    net: int,
    procs: Callable[..., Proc],
    workers: int = 1,
    disk_bytes: int = 0,
    tweak: Tweak | None = None,
    origin_tls: tuple[Path, Path] | None = None,
) -> Sem:
    """A semantics origin and one edge (with `workers` processes) in front of it, on fresh
    state; the procs fixture stops both, also when the test failed. `tweak` changes the
    network and customers documents last; `origin_tls` (certificate, key): an https origin."""
    lay = Layout(net=net, dns_port=53, http_port=8080)
    scheme = "https" if origin_tls else "http"

    def base(network: dict, customers: dict) -> None:
        network["edge"]["workers"] = workers
        if disk_bytes:
            network["edge"]["disk_bytes"] = disk_bytes
        customers["customers"] = [
            {
                "name": "sem",
                "serial": SERIAL,
                "hostnames": [HOST],
                "origin": f"{scheme}://{lay.origin}:{lay.http_port}",
                "default_ttl": 300,
            }
        ]
        if tweak is not None:
            tweak(network, customers)

    config = write_config(tmp_path / "net", lay, base)
    tls_args = [str(p) for p in origin_tls] if origin_tls else []
    origin = procs(
        "origin",
        [sys.executable, str(HERE / "semantics_origin.py"), lay.origin, str(lay.http_port), *tls_args],
        tmp_path / "origin.log",
    )
    if origin_tls:

        def accepting() -> bool:
            try:
                socket.create_connection((lay.origin, lay.http_port), timeout=1).close()
                return True
            except OSError:
                return origin.popen.poll() is not None

        ok = poll(accepting, 20, every=0.1)
        assert ok and origin.popen.poll() is None, f"the https origin did not start:\n{origin.text()[-3000:]}"
    else:
        _wait_ready(f"http://{lay.origin}:{lay.http_port}/_stats", origin, "the origin")
    edge = procs(
        "edge",
        [sys.executable, "-m", "akacdn", "edge", "--config", str(config), "--machine", "r1-e1"],
        tmp_path / "edge.log",
    )
    _wait_ready(f"http://{lay.edge(1, 1)}:9400/readyz", edge, "the edge")
    return Sem(lay, lay.edge(1, 1), lay.origin, origin, edge, config)


@pytest.fixture
def sem(tmp_path: Path, net: int, procs: Callable[..., Proc]) -> Sem:
    """A semantics origin and one edge in front of it, on fresh state; both stopped after."""
    return start_sem(tmp_path, net, procs)


# --- 1. fresh objects ---------------------------------------------------------------------------


def test_fresh_object_is_a_miss_then_a_hit_with_age(sem: Sem) -> None:
    first = sem.get("/fresh")
    assert first.status == 200 and first.body == b"fresh body\n", str(first)
    assert "hit" not in first.cs and first.cs.get("fwd") == "uri-miss", f"first request is a miss:\n{first}"
    assert "stored" in first.cs, f"a max-age=60 response is stored:\n{first}"

    second = sem.get("/fresh")
    assert second.status == 200 and second.body == first.body, str(second)
    assert second.hit, f"second request is a hit:\n{second}"
    assert 0 <= _int(second.cs.get("ttl"), -1) <= 60, f"hit ttl within max-age=60:\n{second}"
    assert "age" in second.headers and int(second.headers["age"]) >= 0, f"a hit carries Age:\n{second}"
    assert sem.count("/fresh") == 1, "the origin was asked once"


def test_freshness_from_expires_and_heuristic(sem: Sem) -> None:
    for path in ("/expires", "/heuristic"):
        sem.get(path)
        again = sem.get(path)
        assert again.hit, f"{path} is cacheable without Cache-Control:\n{again}"
        assert sem.count(path) == 1
    # Expires: now + 60 s, not the customer's default_ttl (300)
    ttl = _int(sem.get("/expires").cs.get("ttl"), -1)
    assert 0 <= ttl <= 60, f"Expires gives the freshness (<= 60 s), got ttl={ttl}"
    # Last-Modified a day ago: 10% of that (8640 s) beats the customer's default TTL (RFC 9111 4.2.2)
    r = sem.get("/heuristic")
    assert _int(r.cs.get("ttl"), -1) > 300, f"heuristic freshness (~8640 s), not default_ttl:\n{r}"


def test_cacheable_by_status_code(sem: Sem) -> None:
    sem.get("/status/404")
    r = sem.get("/status/404")
    assert r.status == 404 and r.hit and r.body == b"not here\n", f"a 404 with max-age=60 is cached:\n{r}"
    assert sem.count("/status/404") == 1
    for _ in range(3):
        r = sem.get("/teapot")
        assert r.status == 418 and not r.hit, f"a 418 without explicit freshness is not cached:\n{r}"
    assert sem.count("/teapot") == 3


# --- 2. no-store, private -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nostore", "/private"])
def test_no_store_and_private_are_never_hits(sem: Sem, path: str) -> None:
    for i in range(1, 4):
        r = sem.get(path)
        assert r.status == 200 and r.body.endswith(f"#{i}\n".encode()), f"each answer is the origin's own:\n{r}"
        assert not r.hit, f"{path} must never be a hit:\n{r}"
        assert r.cs.get("fwd") == "uri-miss" and "stored" not in r.cs, f"Cache-Status says not stored:\n{r}"
    assert sem.count(path) == 3


# --- 3. Vary ------------------------------------------------------------------------------------


def test_vary_keeps_a_variant_per_request_value(sem: Sem) -> None:
    en = sem.get("/vary", "-H", "Accept-Language: en")
    fr = sem.get("/vary", "-H", "Accept-Language: fr")
    assert en.body == b"lang=en\n", str(en)
    assert fr.body == b"lang=fr\n" and not fr.hit, f"another Accept-Language is not the stored variant:\n{fr}"
    for lang in ("en", "fr", "en", "fr"):
        r = sem.get("/vary", "-H", f"Accept-Language: {lang}")
        assert r.body == f"lang={lang}\n".encode() and r.hit, f"{lang} repeats as a hit of its own variant:\n{r}"
    assert sem.count("/vary") == 2, "one origin request per variant"


def test_vary_star_never_hits(sem: Sem) -> None:
    for i in range(1, 4):
        r = sem.get("/vary-star")
        assert r.status == 200 and r.body == f"vary-star #{i}\n".encode() and not r.hit, f"Vary: * never hits:\n{r}"
    assert sem.count("/vary-star") == 3


# --- 4. revalidation with the origin ------------------------------------------------------------


def test_stale_etag_object_is_revalidated_with_if_none_match(sem: Sem) -> None:
    first = sem.get("/etag")
    assert first.status == 200 and first.body == b"etag body v1\n", str(first)
    assert first.headers.get("x-origin-response") == "1", str(first)

    r = stale_probe(sem, "/etag", lambda _: sem.count("/etag") >= 2, "the edge to revalidate /etag")
    assert sem.last_headers("/etag").get("if-none-match") == '"v1"', (
        f"the revalidation carries the stored ETag; origin saw {sem.last_headers('/etag')}"
    )
    assert sem.statuses("/etag").get("304") == 1, f"the origin answered 304: {sem.statuses('/etag')}"
    assert r.status == 200 and r.body == b"etag body v1\n", f"the stored body, with 200:\n{r}"
    assert r.headers.get("x-origin-response") == "2", f"headers refreshed from the 304:\n{r}"
    assert r.cs.get("fwd") == "stale" and r.cs.get("fwd-status") == "304", f"Cache-Status of a revalidation:\n{r}"
    assert sem.statuses("/etag").get("200") == 1, "the body was fetched once"


def test_stale_last_modified_object_is_revalidated_with_if_modified_since(sem: Sem) -> None:
    first = sem.get("/lastmod")
    assert first.status == 200 and first.body == b"lastmod body\n", str(first)

    r = stale_probe(sem, "/lastmod", lambda _: sem.count("/lastmod") >= 2, "the edge to revalidate /lastmod")
    seen = sem.last_headers("/lastmod")
    assert seen.get("if-modified-since") == "Mon, 01 Jan 2024 00:00:00 GMT", f"revalidation with IMS; origin saw {seen}"
    assert sem.statuses("/lastmod").get("304") == 1, f"the origin answered 304: {sem.statuses('/lastmod')}"
    assert r.status == 200 and r.body == b"lastmod body\n", f"the stored body, with 200:\n{r}"
    assert r.headers.get("x-origin-response") == "2", f"headers refreshed from the 304:\n{r}"
    assert r.cs.get("fwd") == "stale" and r.cs.get("fwd-status") == "304", f"Cache-Status of a revalidation:\n{r}"


def test_no_cache_is_revalidated_on_every_request(sem: Sem) -> None:
    first = sem.get("/nocache")
    assert first.status == 200 and first.body == b"nocache body\n" and "stored" in first.cs, str(first)
    for i in range(2, 5):
        r = sem.get("/nocache")
        assert r.status == 200 and r.body == b"nocache body\n", f"the stored body:\n{r}"
        assert not r.fresh_hit, f"no-cache: never served without the origin:\n{r}"
        assert r.cs.get("fwd-status") == "304", f"revalidated (304 from the origin):\n{r}"
        assert sem.count("/nocache") == i
    assert sem.statuses("/nocache") == {"200": 1, "304": 3}, "one full fetch, then 304s"
    assert sem.last_headers("/nocache").get("if-none-match") == '"nc-1"'


# --- 5. client conditionals ----------------------------------------------------------------------


def test_client_conditionals_are_answered_from_cache(sem: Sem) -> None:
    full = sem.get("/fresh")
    assert full.status == 200 and full.headers.get("etag") == '"fresh-1"', str(full)

    cases = [
        ("If-None-Match", '"fresh-1"', 304),
        ("If-None-Match", 'W/"fresh-1"', 304),  # weak comparison
        ("If-None-Match", '"other", "fresh-1"', 304),
        ("If-None-Match", "*", 304),
        ("If-Modified-Since", "Mon, 01 Jan 2024 00:00:00 GMT", 304),  # equal to Last-Modified
        ("If-Modified-Since", "Tue, 02 Jan 2024 00:00:00 GMT", 304),  # after it
        ("If-None-Match", '"other"', 200),
        ("If-Modified-Since", "Sun, 31 Dec 2023 00:00:00 GMT", 200),  # before it
    ]
    for name, value, want in cases:
        r = sem.get("/fresh", "-H", f"{name}: {value}")
        assert r.status == want, f"{name}: {value} -> {want}, got:\n{r}"
        if want == 304:
            assert r.body == b"", f"a 304 has no body:\n{r}"
            assert r.headers.get("etag") == '"fresh-1"', f"a 304 carries the ETag:\n{r}"
        else:
            assert r.body == b"fresh body\n", f"a failed condition gets the full body:\n{r}"
    # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2)
    r = sem.get("/fresh", "-H", 'If-None-Match: "other"', "-H", "If-Modified-Since: Tue, 02 Jan 2024 00:00:00 GMT")
    assert r.status == 200, f"If-Modified-Since is ignored when If-None-Match is present:\n{r}"
    assert sem.count("/fresh") == 1, "conditionals were answered from the cache"


# --- 6. HEAD ------------------------------------------------------------------------------------


def raw_request(sem: Sem, path: str, method: str = "GET") -> bytes:
    """Every byte the edge sends for one request (Connection: close): curl forgives framing
    errors, strict clients do not."""
    with socket.create_connection((sem.edge, sem.lay.http_port), timeout=5) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def _raw_head(sem: Sem, path: str) -> bytes:
    """Everything the edge sends for one HEAD: headers and anything after them."""
    return raw_request(sem, path, "HEAD")


def test_head_has_the_get_headers_and_no_body_from_cache(sem: Sem) -> None:
    get = sem.get("/big")
    assert get.status == 200 and get.body == BIG, str(get)

    head = sem.get("/big", "-I", "-o", "/dev/null")  # curl's HEAD; -D - still prints the headers
    assert head.status == 200, str(head)
    assert head.headers.get("content-length") == str(len(BIG)), f"Content-Length of the full body:\n{head}"
    for name in ("content-type", "etag", "cache-control", "via"):
        assert head.headers.get(name) == get.headers.get(name), f"{name} as on GET:\n{head}\nGET:\n{get}"
    assert head.hit, f"HEAD is served from the cache:\n{head}"

    raw = _raw_head(sem, "/big")
    _, sep, after = raw.partition(b"\r\n\r\n")
    assert sep and after == b"", f"nothing after a HEAD's headers, got {len(after)} bytes: {raw[:400]!r}"
    assert sem.count("/big") == 1, f"HEADs reached the origin: {sem.stats()['methods']}"


def test_a_body_arriving_in_pieces_is_stored_and_served_whole(sem: Sem) -> None:
    """The origin writes 100 KiB in four pieces 50 ms apart: the edge must not cut it at the
    first read (a short read is not the end of the body)."""
    for what in ("miss", "hit"):
        r = sem.get("/big-slow")
        assert r.status == 200 and r.headers.get("content-length") == str(len(BIG)), f"{what}: whole length:\n{r}"
        assert r.body == BIG, f"{what}: the whole body ({len(r.body)} of {len(BIG)} bytes):\n{r}"
    assert sem.count("/big-slow") == 1


# --- 7. Range -----------------------------------------------------------------------------------


def test_single_ranges_are_served_from_cache(sem: Sem) -> None:
    full = sem.get("/big")
    assert full.status == 200 and full.body == BIG, str(full)

    r = sem.get("/big", "-H", "Range: bytes=0-99")
    assert r.status == 206 and r.headers.get("content-range") == "bytes 0-99/102400", str(r)
    assert r.body == BIG[:100] and r.headers.get("content-length") == "100", str(r)

    r = sem.get("/big", "-H", "Range: bytes=1000-1999")
    assert r.status == 206 and r.headers.get("content-range") == "bytes 1000-1999/102400", str(r)
    assert r.body == BIG[1000:2000], str(r)

    r = sem.get("/big", "-H", "Range: bytes=-100")
    assert r.status == 206 and r.headers.get("content-range") == "bytes 102300-102399/102400", str(r)
    assert r.body == BIG[-100:], str(r)

    r = sem.get("/big", "-H", "Range: bytes=102300-")
    assert r.status == 206 and r.body == BIG[102300:], str(r)

    r = sem.get("/big", "-H", "Range: bytes=200000-")
    assert r.status == 416 and r.headers.get("content-range") == "bytes */102400", f"unsatisfiable:\n{r}"

    r = sem.get("/big", "-H", "Range: bytes=0-9,20-29")
    assert r.status == 200 and r.body == BIG, f"several ranges: the whole body with 200:\n{r}"

    assert sem.count("/big") == 1, f"ranges were cut from the stored body: {sem.stats()['methods']}"


def test_range_on_a_cold_object(sem: Sem) -> None:
    """The first request for an object is a Range request: still the right bytes (206)."""
    r = sem.get("/big", "-H", "Range: bytes=100-199")
    assert r.status == 206 and r.headers.get("content-range") == "bytes 100-199/102400", str(r)
    assert r.body == BIG[100:200], str(r)


# --- 8. stale-if-error --------------------------------------------------------------------------


def test_stale_if_error_serves_stale_when_origin_fails_or_is_gone(sem: Sem) -> None:
    first = sem.get("/sie")
    assert first.status == 200 and first.body == b"sie #1\n", str(first)

    sem.control("down")  # the origin answers 503 from now on
    r = stale_probe(sem, "/sie", lambda _: sem.count("/sie") >= 2, "the edge to ask the origin again")
    assert sem.statuses("/sie").get("503") == 1, f"the origin answered 503: {sem.statuses('/sie')}"
    assert r.status == 200 and r.body == b"sie #1\n", f"origin 503: the stale body (stale-if-error=60):\n{r}"
    assert r.says_stale, f"Cache-Status/X-Cache say it is stale:\n{r}"
    assert "via" in r.headers and "cache-status" in r.headers, str(r)

    never = sem.get("/expires")  # never cached: the origin's error is the answer
    assert never.status in (502, 503, 504), f"an object never cached, origin down:\n{never}"

    sem.kill_origin()
    r = sem.get("/sie")
    assert r.status == 200 and r.body == b"sie #1\n", f"origin unreachable: still the stale body:\n{r}\n{sem.logs()}"
    assert r.says_stale, f"Cache-Status/X-Cache say it is stale:\n{r}"

    never = sem.get("/heuristic")
    assert never.status in (502, 504), f"an object never cached, origin unreachable: 502/504:\n{never}"
    assert "via" in never.headers and "cache-status" in never.headers, f"errors carry Via, Cache-Status:\n{never}"


def test_must_revalidate_is_never_served_stale_on_error(sem: Sem) -> None:
    first = sem.get("/mustreval")
    assert first.status == 200, str(first)
    sem.control("down")
    r = stale_probe(sem, "/mustreval", lambda _: sem.count("/mustreval") >= 2, "the edge to ask the origin again")
    assert r.status in (502, 503, 504) and r.body != first.body, f"must-revalidate: an error, not stale:\n{r}"
    sem.kill_origin()
    r = sem.get("/mustreval")
    # RFC 9111 5.2.2.2: an error, "SHOULD be 504 unless another error status code is more applicable"
    assert r.status in (502, 504) and r.body != first.body, f"must-revalidate, origin unreachable: an error:\n{r}"


# --- 9. stale-while-revalidate ------------------------------------------------------------------


def test_stale_while_revalidate_answers_at_once_and_refreshes_in_background(sem: Sem) -> None:
    first = sem.get("/swr")
    assert first.status == 200 and first.body == b"swr #1\n", str(first)

    # GET until the answer is no longer a fresh hit: that is the first one after max-age
    r = stale_probe(sem, "/swr", lambda r: not r.fresh_hit, "/swr to go stale")
    assert r.status == 200 and r.body == b"swr #1\n", f"the stale body, at once:\n{r}"
    assert r.hit and r.says_stale, f"Cache-Status: a stale hit (stale-while-revalidate):\n{r}"
    wait_for(lambda: sem.count("/swr") >= 2, 5, "the background revalidation to reach the origin")
    assert sem.statuses("/swr") == {"200": 1}, "the origin holds the revalidation: the stale answer did not wait"
    sem.control("release-swr")
    # once it is done, the refreshed object is served
    wait_for(lambda: sem.get("/swr").body == b"swr #2\n", 8, "the revalidated body to be served")
    assert sem.count("/swr") <= 3, f"revalidations were coalesced: {sem.count('/swr')} origin requests"


# --- 10. unsafe methods -------------------------------------------------------------------------


def test_post_is_forwarded_and_invalidates_the_stored_object(sem: Sem) -> None:
    sem.get("/fresh")
    assert sem.get("/fresh").hit

    posted = sem.get("/fresh", "-X", "POST", "--data-binary", "hello")
    assert posted.status == 200 and posted.body == b"posted\n", f"POST goes to the origin:\n{posted}"
    assert not posted.hit, str(posted)
    assert sem.count("/fresh", "POST") == 1, f"origin saw: {sem.stats()['methods']}"

    after = sem.get("/fresh")
    assert after.status == 200 and not after.hit and after.cs.get("fwd") == "uri-miss", f"invalidated:\n{after}"
    assert sem.count("/fresh", "GET") == 2


# --- 11. unknown hosts --------------------------------------------------------------------------


def test_unknown_host_is_refused_with_421(sem: Sem) -> None:
    for host in ("www.other.example", sem.origin, "sem.example"):
        r = sem.get("/fresh", host=host)
        assert r.status == 421, f"Host {host}: 421:\n{r}"
    assert sum(sem.stats()["requests"].values()) == 0, f"the origin was asked: {sem.stats()['methods']}"


# --- 12. Via and Cache-Status everywhere --------------------------------------------------------


def test_via_and_cache_status_on_every_response(sem: Sem) -> None:
    seen = {
        "miss": sem.get("/fresh"),
        "hit": sem.get("/fresh"),
        "not stored": sem.get("/nostore"),
        "cached 404": sem.get("/status/404"),
        "uncacheable 418": sem.get("/teapot"),
        "conditional 304": sem.get("/fresh", "-H", 'If-None-Match: "fresh-1"'),
        "range 206": sem.get("/fresh", "-H", "Range: bytes=0-3"),
    }
    sem.control("down")
    seen["origin 503"] = sem.get("/expires")
    sem.kill_origin()
    seen["origin unreachable"] = sem.get("/heuristic")
    seen["unknown host"] = sem.get("/fresh", host="www.other.example")
    bad = {
        what: str(r)
        for what, r in seen.items()
        if "via" not in r.headers or "(akacdn)" not in r.headers["via"] or not r.headers.get("cache-status")
    }
    assert not bad, "responses without Via/Cache-Status:\n" + "\n".join(f"[{k}]\n{v}" for k, v in bad.items())
    assert "age" in seen["hit"].headers, str(seen["hit"])


def _concurrent(sem: Sem, path: str, header_sets: list[dict[str, str]]) -> list[tuple[int, bytes]]:
    import asyncio

    import aiohttp

    async def run() -> list[tuple[int, bytes]]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:

            async def one(h: dict[str, str]) -> tuple[int, bytes]:
                url = f"http://{sem.edge}:{sem.lay.http_port}{path}"
                async with s.get(url, headers={"Host": HOST, **h}) as r:
                    return r.status, await r.read()

            return await asyncio.gather(*(one(h) for h in header_sets))

    return asyncio.run(run())


def test_misses_from_different_browsers_share_one_origin_request(sem: Sem) -> None:
    got = _concurrent(sem, "/big-slow", [{"User-Agent": f"browser/{i}"} for i in range(20)])
    assert {s for s, _ in got} == {200} and {len(b) for _, b in got} == {100 * 1024}
    assert sem.count("/big-slow") == 1


def test_concurrent_misses_for_different_variants_get_their_own_answers(sem: Sem) -> None:
    langs = ["en", "fr"] * 10
    got = _concurrent(sem, "/vary-slow", [{"Accept-Language": lang} for lang in langs])
    assert [b.decode() for _, b in got] == [f"lang={lang}\n" for lang in langs]
    assert sem.count("/vary-slow") == 2  # one per variant, however many asked


# --- streaming ------------------------------------------------------------------------------------


def _read_until(s: socket.socket, got: bytes, enough: Callable[[bytes], bool]) -> bytes:
    while not enough(got):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_a_body_streams_to_every_coalesced_client_as_it_arrives(sem: Sem) -> None:
    """5 clients ask for /gated at once: one origin request; each client has the head and the
    first 64 KiB while the origin still holds back the rest; after the release all 5 get the
    whole, identical body, and it was stored (the next request is a hit)."""
    from .semantics_origin import GATED

    request = f"GET /gated HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    clients = [socket.create_connection((sem.edge, sem.lay.http_port), timeout=10) for _ in range(5)]
    try:
        for s in clients:
            s.sendall(request)
        firsts = []
        for s in clients:
            got = _read_until(s, b"", lambda b: b"\r\n\r\n" in b and len(b.split(b"\r\n\r\n", 1)[1]) >= 64 * 1024)
            head, _, body = got.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and body[: 64 * 1024] == GATED[: 64 * 1024], head
            assert b"content-length: %d" % len(GATED) in head.lower(), head
            firsts.append(body)
        assert sem.count("/gated") == 1, "the 5 misses shared one origin request"
        assert sem.statuses("/gated") == {}, "and the origin has not finished it yet"
        sem.control("release")
        for s, first in zip(clients, firsts, strict=True):
            body = _read_until(s, first, lambda b: len(b) >= len(GATED))
            assert body == GATED
    finally:
        for s in clients:
            s.close()
    after = sem.get("/gated")
    assert after.hit and after.body == GATED and sem.count("/gated") == 1, str(after)


def wait_stored(sem: Sem, path: str) -> None:
    """Poll (never reaching the origin: only-if-cached) until the edge has stored `path`:
    a large body is written to the disk tier in the background once it is whole."""
    ok = poll(lambda: sem.get(path, "-I", "-H", "Cache-Control: only-if-cached").status == 200, 10, every=0.05)
    assert ok, f"{path} was never stored"


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_large_object_streams_through_a_spool_and_is_served_from_disk_never_whole_in_memory(sem: Sem) -> None:
    """64 MiB: fetched (streamed, spooled past 16 MiB), then a hit and a range from the disk
    tier read in pieces. The edge's memory grows by far less than the object."""
    from .semantics_origin import HUGE

    pid = sem.edge_proc.popen.pid
    before = _rss(pid)
    first = sem.get("/huge")
    assert first.status == 200 and first.body == HUGE and not first.hit, str(first)[:300]
    wait_stored(sem, "/huge")
    second = sem.get("/huge")
    assert second.status == 200 and second.hit and second.body == HUGE, str(second)[:300]
    start = 40 * 2**20 + 7
    ranged = sem.get("/huge", "-H", f"Range: bytes={start}-{start + 99}")
    assert ranged.status == 206 and ranged.body == HUGE[start : start + 100], str(ranged)[:300]
    assert ranged.headers["content-range"] == f"bytes {start}-{start + 99}/{len(HUGE)}"
    assert sem.count("/huge") == 1, "one origin request"
    grew = _rss(pid) - before
    assert grew < len(HUGE) // 2, f"the edge grew by {grew >> 20} MiB serving a {len(HUGE) >> 20} MiB object"


def test_a_damaged_large_object_is_cut_off_dropped_and_fetched_again(sem: Sem) -> None:
    """A stored large body is checked (CRC) as it is served: a flipped byte cuts the answer
    short (never a whole wrong body), the file is deleted, and the next request refetches."""
    from .semantics_origin import HUGE

    assert sem.get("/huge").body == HUGE
    wait_stored(sem, "/huge")
    stored = max(sem.edge_proc.log.parent.glob("**/cache/*/*"), key=lambda p: p.stat().st_size)
    assert stored.stat().st_size > len(HUGE)
    with open(stored, "r+b") as f:
        f.seek(stored.stat().st_size - len(HUGE) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    cut = sem.get("/huge")
    assert cut.status == 200 and len(cut.body) < len(HUGE), "the damaged answer is cut short"
    assert not stored.exists(), "the damaged file is deleted"
    again = sem.get("/huge")
    assert again.status == 200 and again.body == HUGE and not again.hit, str(again)[:300]
    assert sem.count("/huge") == 2
