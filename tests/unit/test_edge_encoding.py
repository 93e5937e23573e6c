"""Content codings: Accept-Encoding normalised as Varnish does, when the edge may compress
or must decode, the header rewrite of a transformed representation, the bounded streaming
codecs, and the pump that runs one body through a codec into a BodyStream."""

from __future__ import annotations

import asyncio
import gzip
import os
import random
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import brotli
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from akacdn.edge.encoding import (
    CODINGS,
    Codec,
    CodingError,
    accepts,
    can_decode,
    choose,
    compressible,
    content_coding,
    decoder,
    encoder,
    may_compress,
    normalize_accept_encoding,
    transformed_headers,
    with_vary,
)
from akacdn.edge.fields import split_list
from akacdn.edge.message import BodyStream, BodyStreamError, FileBody
from akacdn.edge.transcode import pump, transcoded

NORMAL = {None, "br, gzip", "br", "gzip"}


# -- Accept-Encoding ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        (None, None),
        ("", None),
        ("identity", None),
        ("gzip", "gzip"),
        ("gzip, deflate, br, zstd", "br, gzip"),
        ("br", "br"),
        ("GZIP, Br", "br, gzip"),
        ("x-gzip", "gzip"),
        ("deflate", None),
        ("gzip;q=0, br", "br"),
        ("gzip; q=0.0, br;q=0.000", None),
        ("gzip;Q=0.5", "gzip"),
        ("gzip;q=1.000", "gzip"),
        ("gzip;q=1.5", None),  # malformed weight: the member is ignored
        ("gzip;q=0.0001, br", "br"),  # four decimals: malformed
        ("gzip;q=, br;q=abc", None),
        ("*", "br, gzip"),
        ("*;q=0", None),
        ("br;q=0, *", "gzip"),
        ("*;q=0, gzip", "gzip"),
        ("gzip, gzip;q=0", None),  # named both ways: not acceptable
        ("x-gzip;q=0, gzip", None),
        (" , ,gzip ,", "gzip"),
        ('gzip;foo="a,b", br', "br, gzip"),  # other parameters ignored, quoted commas kept
    ],
)
def test_normalize_accept_encoding(given_: str | None, expected: str | None) -> None:
    assert normalize_accept_encoding(given_) == expected


@given(st.none() | st.text(max_size=60))
def test_normalize_never_raises_and_is_idempotent(value: str | None) -> None:
    got = normalize_accept_encoding(value)
    assert got in NORMAL
    assert normalize_accept_encoding(got) == got


_members = st.lists(
    st.tuples(
        st.sampled_from(["gzip", "x-gzip", "br", "BR", "deflate", "*", "identity", "zstd"]),
        st.sampled_from(["", ";q=0", ";q=0.5", ";q=1", ";q=0.000", ";q=bad", ";level=1"]),
    ),
    max_size=6,
)


@given(_members, st.randoms())
def test_member_order_does_not_matter(members: list[tuple[str, str]], rnd: random.Random) -> None:
    text = ", ".join(c + w for c, w in members)
    shuffled = list(members)
    rnd.shuffle(shuffled)
    assert normalize_accept_encoding(", ".join(c + w for c, w in shuffled)) == normalize_accept_encoding(text)


@given(_members)
def test_a_coding_named_acceptable_and_never_refused_is_taken(members: list[tuple[str, str]]) -> None:
    got = split_list(normalize_accept_encoding(", ".join(c + w for c, w in members)) or "")
    for coding in CODINGS:
        weights = [w for c, w in members if c.lower().removeprefix("x-") == coding]
        if weights and all(w in ("", ";q=0.5", ";q=1", ";level=1") for w in weights):
            assert coding in got
        if ";q=0" in weights or ";q=0.000" in weights:
            assert coding not in got


def test_accepts_and_choose() -> None:
    assert accepts(None, "identity") and accepts("gzip", "identity")
    assert accepts("br, gzip", "gzip") and accepts("br, gzip", "br")
    assert not accepts("gzip", "br") and not accepts(None, "gzip")
    assert accepts("gzip", "x-gzip")
    assert accepts("br, gzip", "gzip, br") and not accepts("gzip", "gzip, br")
    assert accepts("gzip, deflate;q=1", "gzip")  # a raw header reads as normalised
    assert choose("br, gzip") == "br" and choose("gzip") == "gzip" and choose(None) is None
    assert choose("br;q=0, *") == "gzip"


# -- response side --------------------------------------------------------------------------


def test_content_coding() -> None:
    assert content_coding([]) is None
    assert content_coding([("Content-Encoding", " identity ")]) is None
    assert content_coding([("content-encoding", "GZIP ")]) == "gzip"
    assert content_coding([("Content-Encoding", "x-gzip")]) == "gzip"
    assert content_coding([("Content-Encoding", "gzip,br"), ("Content-Encoding", "identity")]) == "gzip, br"
    assert content_coding({"Content-Encoding": "br"}) == "br"


def test_can_decode() -> None:
    assert all(can_decode(c) for c in ("gzip", "deflate", "br", "x-gzip", " GZIP"))
    assert not any(can_decode(c) for c in (None, "gzip, br", "compress", "zstd", "identity", ""))


@pytest.mark.parametrize(
    "ctype",
    [
        "text/html",
        "text/css; charset=utf-8",
        "TEXT/PLAIN",
        "application/json",
        "application/javascript",
        "application/xml",
        "application/xhtml+xml",
        "application/rss+xml",
        "application/atom+xml",
        "application/ld+json",
        "application/manifest+json",
        "application/problem+json",
        "application/vnd.api+json",
        "application/soap+xml",
        "image/svg+xml",
        "image/x-icon",
        "font/ttf",
        "font/otf",
        "application/vnd.ms-fontobject",
    ],  # fmt: skip
)
def test_compressible(ctype: str) -> None:
    assert compressible(ctype)


@pytest.mark.parametrize(
    "ctype",
    [
        None,
        "",
        "text/event-stream",
        "text/event-stream; charset=utf-8",
        "image/png",
        "image/jpeg",
        "video/mp4",
        "application/octet-stream",
        "application/wasm",
        "application/zip",
        "font/woff2",
        "font/woff",
        "text",
        "/json",
        "application/",
    ],  # fmt: skip
)
def test_not_compressible(ctype: str | None) -> None:
    assert not compressible(ctype)


@given(st.none() | st.text(max_size=40))
def test_compressible_never_raises(ctype: str | None) -> None:
    assert compressible(ctype) in (True, False)


HTML = [("Content-Type", "text/html"), ("Content-Length", "1000")]


def test_may_compress() -> None:
    assert may_compress(200, HTML)
    assert may_compress(200, [("Content-Type", "text/html")])  # length unknown (chunked)
    assert may_compress(200, [("Content-Type", "text/html"), ("Content-Encoding", "identity")])
    assert not may_compress(206, HTML)
    assert not may_compress(404, HTML)
    assert not may_compress(200, [*HTML, ("Content-Encoding", "gzip")])
    assert not may_compress(200, [("Content-Type", "image/png"), ("Content-Length", "1000")])
    assert not may_compress(200, [("Content-Length", "1000")])
    assert not may_compress(200, [*HTML, ("Cache-Control", "public, No-Transform")])
    assert not may_compress(200, [*HTML, ("Content-Range", "bytes 0-999/5000")])
    assert not may_compress(200, [("Content-Type", "text/html"), ("Content-Length", "255")])
    assert may_compress(200, [("Content-Type", "text/html"), ("Content-Length", "256")])
    assert may_compress(200, [("Content-Type", "text/html"), ("Content-Length", "10")], min_length=10)
    assert not may_compress(200, [("Content-Type", "text/html"), ("Content-Length", "12x")])
    assert may_compress(200, [("Content-Type", "text/html"), ("Content-Length", "9" * 5000)])


def test_transformed_headers_for_compression() -> None:
    origin = [
        ("Content-Type", "text/html"),
        ("content-length", "1000"),
        ("ETag", '"v1"'),
        ("Content-MD5", "x"),
        ("Digest", "sha-256=x"),
        ("Repr-Digest", "sha-256=:x:"),
        ("Vary", "Cookie"),
        ("Cache-Control", "max-age=60"),
    ]
    assert transformed_headers(origin, "br") == [
        ("Content-Type", "text/html"),
        ("ETag", 'W/"v1"'),
        ("Vary", "Cookie"),
        ("Cache-Control", "max-age=60"),
        ("Content-Encoding", "br"),
        ("Vary", "Accept-Encoding"),
    ]


def test_transformed_headers_for_decoding() -> None:
    stored = [("Content-Encoding", "gzip"), ("ETag", 'W/"v1"'), ("Vary", "accept-encoding"), ("Content-Length", "9")]
    assert transformed_headers(stored, None) == [("ETag", 'W/"v1"'), ("Vary", "accept-encoding")]
    assert transformed_headers([("ETag", "unquoted"), ("Vary", "*")], None) == [("Vary", "*")]
    assert transformed_headers([("ETag", '""')], "gzip") == [
        ("ETag", 'W/""'),
        ("Content-Encoding", "gzip"),
        ("Vary", "Accept-Encoding"),
    ]


def test_with_vary() -> None:
    assert with_vary([], "Accept-Encoding") == [("Vary", "Accept-Encoding")]
    assert with_vary([("Vary", "Cookie, Accept-Encoding")], "accept-encoding") == [("Vary", "Cookie, Accept-Encoding")]
    assert with_vary([("Vary", "*")], "Accept-Encoding") == [("Vary", "*")]
    assert with_vary([("vary", "Cookie")], "Accept-Encoding") == [("vary", "Cookie"), ("Vary", "Accept-Encoding")]


@given(st.lists(st.tuples(st.text(max_size=15), st.text(max_size=20)), max_size=8), st.sampled_from([None, *CODINGS]))
def test_transformed_headers_never_raise_and_keep_their_promises(
    headers: list[tuple[str, str]], coding: str | None
) -> None:
    got = transformed_headers(headers, coding)
    assert content_coding(got) == coding
    assert not [k for k, _ in got if k.lower() in ("content-length", "content-md5", "digest", "repr-digest")]
    assert all(v.strip().startswith('W/"') for k, v in got if k.lower() == "etag")
    vary = [n.strip().lower() for k, v in got if k.lower() == "vary" for n in split_list(v)]
    assert "accept-encoding" in vary or "*" in vary


# -- codecs ---------------------------------------------------------------------------------


def run(codec: Codec, data: bytes, step: int) -> bytes:
    out = [codec.feed(data[i : i + step]) for i in range(0, len(data), step)]
    return b"".join(out) + codec.finish()


@settings(max_examples=60)
@given(st.binary(max_size=5000) | st.text(max_size=3000).map(str.encode), st.integers(1, 700),
       st.sampled_from(CODINGS))  # fmt: skip
def test_encode_then_decode_round_trips(data: bytes, step: int, coding: str) -> None:
    encoded = run(encoder(coding), data, step)
    assert run(decoder(coding, len(data)), encoded, step) == data
    assert (gzip.decompress(encoded) if coding == "gzip" else brotli.decompress(encoded)) == data


def test_encoder_levels_and_bad_arguments() -> None:
    text = b"the quick brown fox jumps over the lazy dog " * 200
    assert len(run(encoder("gzip", 9), text, 1000)) < len(text) // 10
    assert brotli.decompress(run(encoder("br", 0), text, 1000)) == text
    for bad in (lambda: encoder("deflate"), lambda: encoder("br", 12), lambda: decoder("zstd", 10)):
        with pytest.raises(ValueError):
            bad()


def test_deflate_zlib_wrapped_and_raw() -> None:
    data = os.urandom(3000) * 3
    wrapped = zlib.compress(data)
    raw = wrapped[2:-4]
    for body in (wrapped, raw):
        for step in (1, 2, 100, len(body)):
            assert run(decoder("deflate", len(data)), body, step) == data


def test_gzip_members_and_padding() -> None:
    body = gzip.compress(b"one ") + gzip.compress(b"two") + b"\0" * 5
    for step in (1, 3, len(body)):
        assert run(decoder("gzip", 100), body, step) == b"one two"
        assert run(decoder("x-gzip", 100), body, step) == b"one two"


@pytest.mark.parametrize(
    ("coding", "body", "why"),
    [
        ("gzip", gzip.compress(b"x" * 1000)[:-3], "truncated"),
        ("gzip", gzip.compress(b"x") + b"garbage", "after the end"),
        ("gzip", gzip.compress(b"x") + b"\0\0\x1f\x8b", "after the end"),
        ("gzip", gzip.compress(b"x") + b"\x1f", "after the end"),  # half a member header at the end
        ("gzip", b"not gzip at all", "gzip"),
        ("deflate", zlib.compress(b"x") + b"\x01", "after the end"),
        ("deflate", zlib.compress(b"x" * 1000)[:-6], "truncated"),
        ("deflate", b"\x78", "truncated"),
        ("br", brotli.compress(b"x" * 1000)[:-2], "truncated"),
        ("br", brotli.compress(b"x") + b"more", "br"),
        ("br", b"\xff\xff\xff\xff not brotli", "br"),
    ],
)
def test_corrupt_or_truncated_input_raises_coding_error(coding: str, body: bytes, why: str) -> None:
    for step in (1, len(body)):
        with pytest.raises(CodingError, match=why):
            run(decoder(coding, 10**6), body, step)


def test_an_empty_body_decodes_to_nothing() -> None:
    for coding in ("gzip", "deflate", "br"):
        assert run(decoder(coding, 0), b"", 1) == b""


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
def test_a_decompression_bomb_stops_near_its_limit(coding: str) -> None:
    plain = b"\0" * (64 * 2**20)
    bomb = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress}[coding](plain)
    assert len(bomb) < 100_000
    d = decoder(coding, 2**20)
    with pytest.raises(CodingError, match="over 1048576 bytes"):
        d.feed(bomb)
    assert d.produced <= 2**20 + 256 * 1024  # stopped within a few steps of the limit, not at 64 MiB  # type: ignore[attr-defined]


def test_output_exactly_at_the_limit_is_fine() -> None:
    for coding in CODINGS:
        body = run(encoder(coding), b"a" * 1000, 1000)
        assert run(decoder(coding, 1000), body, 7) == b"a" * 1000
        with pytest.raises(CodingError):
            run(decoder(coding, 999), body, 7)


@settings(max_examples=150)
@given(st.binary(max_size=300), st.sampled_from(["gzip", "deflate", "br"]))
def test_decoders_raise_nothing_but_coding_error(data: bytes, coding: str) -> None:
    try:
        run(decoder(coding, 10_000), data, 17)
    except CodingError:
        pass


@given(st.binary(min_size=1, max_size=2000), st.integers(0, 1999), st.integers(0, 255))
def test_a_flipped_byte_never_passes_for_the_original_gzip(data: bytes, at: int, xor: int) -> None:
    body = bytearray(gzip.compress(data))
    at %= len(body)
    body[at] ^= xor or 1
    try:
        out = run(decoder("gzip", 10**6), bytes(body), 64)
    except CodingError:
        return
    assert out == data or at < 10  # only header bytes (mtime, flags, OS) may change harmlessly


# -- pump -----------------------------------------------------------------------------------


async def _feeder(stream: BodyStream, data: bytes, step: int) -> None:
    for i in range(0, len(data), step):
        stream.feed(data[i : i + step])
        await asyncio.sleep(0)
    stream.finish()


async def test_pump_a_stream_still_arriving() -> None:
    data = b"".join(b"line %d of a page\n" % i for i in range(20000))
    for coding in CODINGS:
        source, into = BodyStream(None), transcoded()
        feeding = asyncio.create_task(_feeder(source, data, 4096))
        await pump(source.chunks(), encoder(coding), into)
        await feeding
        assert into.done and into.error is None and into.length is None
        body = await into.read_all()
        assert len(body) < len(data) // 5
        back = transcoded()
        await pump([body[:100], body[100:]], decoder(coding, len(data)), back)
        assert await back.read_all() == data


async def test_pump_a_file_body(tmp_path: Path) -> None:
    data = os.urandom(100_000) * 12  # several pread pieces
    path = tmp_path / "obj"
    path.write_bytes(gzip.compress(data))
    with path.open("rb") as f:
        body = FileBody(f, 0, path.stat().st_size, None)
        into = transcoded(tmp_path)
        await pump(body.pieces(), decoder("gzip", len(data)), into)
    assert await into.read_all() == data


async def test_pump_yields_to_the_loop_on_a_body_that_is_all_there() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    t = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    into = transcoded()
    await pump([b"x" * 1000] * 100, encoder("gzip"), into)
    t.cancel()
    assert ticks - before >= 100 // 4 - 1
    assert gzip.decompress(await into.read_all()) == b"x" * 100_000


async def test_a_broken_source_fails_the_output() -> None:
    source, into = BodyStream(None), transcoded()
    task = asyncio.create_task(pump(source.chunks(), encoder("br"), into))
    source.feed(b"partial body " * 100)
    await asyncio.sleep(0)
    source.fail("origin closed early")
    await task  # returns normally
    with pytest.raises(BodyStreamError, match="origin closed early"):
        await into.ended()


async def test_a_broken_file_fails_the_output(tmp_path: Path) -> None:
    path = tmp_path / "obj"
    path.write_bytes(b"short")
    with path.open("rb") as f:
        into = transcoded()
        await pump(FileBody(f, 0, 100, None).pieces(), encoder("gzip"), into)
    with pytest.raises(BodyStreamError, match="shorter"):
        await into.ended()


async def test_a_corrupt_body_fails_the_output_with_a_reason() -> None:
    into = transcoded()
    await pump([gzip.compress(b"hello")[:8], b"\xff" * 50], decoder("gzip", 1000), into)
    with pytest.raises(BodyStreamError, match="body coding: gzip"):
        await into.ended()
    into = transcoded()
    await pump([gzip.compress(b"hello")[:-4]], decoder("gzip", 1000), into)  # truncated: seen at finish
    with pytest.raises(BodyStreamError, match="truncated"):
        await into.ended()


async def test_an_oversized_body_fails_the_output() -> None:
    into = transcoded()
    await pump([gzip.compress(b"\0" * 10**6)], decoder("gzip", 10**5), into)
    with pytest.raises(BodyStreamError, match="over 100000 bytes"):
        await into.ended()


async def test_cancellation_fails_the_output_and_propagates() -> None:
    source, into = BodyStream(None), transcoded()
    task = asyncio.create_task(pump(source.chunks(), encoder("gzip"), into))
    source.feed(b"some")
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(BodyStreamError, match="edge shutting down"):
        await into.ended()


async def test_an_async_iterator_source() -> None:
    async def gen() -> AsyncIterator[bytes]:
        for part in (b"a" * 300, b"", b"b" * 300):
            yield part

    into = transcoded()
    await pump(gen(), encoder("br", 1), into)
    assert brotli.decompress(await into.read_all()) == b"a" * 300 + b"b" * 300


async def test_an_unexpected_error_fails_the_output_and_surfaces() -> None:
    def pieces() -> Iterator[bytes]:
        yield b"x"
        raise RuntimeError("bug")

    into = transcoded()
    with pytest.raises(RuntimeError):
        await pump(pieces(), encoder("gzip"), into)
    with pytest.raises(BodyStreamError, match="transcoding failed"):
        await into.ended()
