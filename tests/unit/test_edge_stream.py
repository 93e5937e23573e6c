"""BodyStream (one origin body, many readers as it arrives), the plain-hit bytes, and the
parent's sum of its workers' metrics."""

from __future__ import annotations

import asyncio
import math
import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from akacdn.edge.hit import Prepared
from akacdn.edge.hitfile import MIN_BODY, TAIL, HitFile
from akacdn.edge.message import BodyStream, BodyStreamError
from akacdn.edge.rfc9111 import Entry
from akacdn.workers import MergedMetrics, registry_snapshot


async def _collect(stream: BodyStream, got: list[bytes]) -> None:
    async for chunk in stream.chunks():
        got.append(chunk)


def test_readers_get_every_chunk_from_the_start_also_when_they_join_late() -> None:
    async def run() -> tuple[list[bytes], list[bytes], bytes]:
        s = BodyStream(6)
        early: list[bytes] = []
        late: list[bytes] = []
        t1 = asyncio.create_task(_collect(s, early))
        s.feed(b"ab")
        await asyncio.sleep(0)  # let the early reader take the first chunk
        assert early == [b"ab"]
        t2 = asyncio.create_task(_collect(s, late))
        s.feed(b"cd")
        s.feed(b"ef")
        s.finish()
        await asyncio.gather(t1, t2)
        return early, late, await s.read_all()

    early, late, whole = asyncio.run(run())
    assert b"".join(early) == b"".join(late) == whole == b"abcdef"


def test_a_broken_body_fails_every_reader_and_is_never_whole() -> None:
    async def run() -> None:
        s = BodyStream(10)
        got: list[bytes] = []
        reader = asyncio.create_task(_collect(s, got))
        s.feed(b"abc")
        s.fail("cut short")
        with pytest.raises(BodyStreamError):
            await reader
        with pytest.raises(BodyStreamError):
            await s.read_all()
        assert got == [b"abc"]

    asyncio.run(run())


def test_when_done_runs_once_at_the_end_or_at_once_if_ended() -> None:
    async def run() -> list[str]:
        calls: list[str] = []
        s = BodyStream(None)
        s.when_done(lambda: calls.append("first"))
        s.feed(b"x")
        assert calls == []
        s.finish()
        s.when_done(lambda: calls.append("after"))
        return calls

    assert asyncio.run(run()) == ["first", "after"]


def _entry(lifetime: float, headers: tuple[tuple[str, str], ...] = ()) -> Entry:
    return Entry(200, (("Date", "Mon, 01 Jan 2024 00:00:00 GMT"), *headers), 1000.0, 1000.0, 0.0, lifetime, "max-age")


def test_plain_hit_bytes_carry_age_and_ttl_and_stop_when_stale() -> None:
    p = Prepared(_entry(60, (("Content-Length", "999"),)), b"body", "1.1 e1 (akacdn)", "e1")
    assert p.head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 4\r\n" in p.head
    assert b"999" not in p.head, "the stored framing is not repeated"
    assert p.current(1010.5) and p.tail == b"Age: 10\r\nCache-Status: akacdn; hit; ttl=49\r\n\r\n"
    assert p.current(1059.9) and not p.current(1060.0)


def _said(tail: bytes) -> tuple[int, int]:
    age, ttl = tail.split(b"\r\n")[0], tail.split(b"ttl=")[1].split(b"\r")[0]
    return int(age.split(b":")[1]), int(ttl)


@pytest.mark.parametrize("initial_age", [0.0, 0.25, 7.6])
def test_the_tail_says_the_whole_seconds_at_every_instant_also_between_recomputations(
    initial_age: float, tmp_path: Path
) -> None:
    """The tail's Age and ttl are recomputed only when a whole second turns (a hit within
    the span is two comparisons): at any instant they are what RFC 9111 4.2.3 computes,
    in the tail, the large hit's head and its file, up to the instant it goes stale."""
    lifetime = 30.4
    entry = Entry(200, (), 1000.0, 1000.0, initial_age, lifetime, "max-age")
    p = Prepared(entry, b"x" * MIN_BODY, "v", "e1")
    file = HitFile(tmp_path, p.head, p.body)
    p.attach(file)
    # forward, then back (a clock stepped back), each step crossing the seconds at another fraction;
    # from before the response (age: the initial age) to past the end of freshness
    forward = [999.5 + 0.037 * i for i in range(1100)]
    for now in forward + forward[::-1]:
        age = initial_age + max(0.0, now - 1000.0)
        fresh = lifetime - age > 0
        # (as `Handler.plain_hit` asks: the span first, then `current`)
        assert (p.since < now < p.until or p.current(now)) == fresh, now
        if fresh:
            assert _said(p.tail) == (int(age), math.floor(lifetime - age)), now
            assert p.large == (p.head + p.tail, file), now
            in_file = os.pread(file.fd, len(TAIL % (0, 0)), file.body_at - len(TAIL % (0, 0)))
            assert in_file.replace(b" ", b"") == p.tail.replace(b" ", b""), now


def test_a_no_cache_response_is_never_a_plain_hit() -> None:
    assert not Prepared(_entry(60, (("Cache-Control", "no-cache"),)), b"", "v", "e1").plain


def test_the_parent_shows_the_sum_of_its_own_and_its_workers_counters() -> None:
    def registry(n: int, objects: int) -> tuple[CollectorRegistry, bytes]:
        reg = CollectorRegistry()
        c = Counter("akacdn_edge_requests", "Requests", ["outcome"], registry=reg)
        c.labels("hit").inc(n)
        Gauge("akacdn_edge_cache_objects", "Objects", registry=reg).set(objects)
        return reg, registry_snapshot(reg)

    own, _ = registry(5, 2)
    _, worker1 = registry(7, 3)
    merged = MergedMetrics(own)
    merged.take(1, worker1)
    merged.take(2, b"\xc1 not msgpack")  # a bad frame is ignored
    text = generate_latest(merged).decode()  # type: ignore[arg-type]
    assert 'akacdn_edge_requests_total{outcome="hit"} 12.0' in text
    assert "akacdn_edge_cache_objects 5.0" in text
