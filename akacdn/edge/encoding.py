"""Content codings at the edge (pure): which one a client takes, when the edge may
compress or must decode, and the streaming codecs that do it.

Theory of operation. Clients send many spellings of Accept-Encoding; keyed on as sent,
one object would have a variant per browser build. As Varnish does, the edge reduces it
to what it serves (`CODINGS`: br, gzip) and keys the cache, and asks the origin, with
that: `"br, gzip"`, `"br"`, `"gzip"` or nothing (identity). Parsing follows RFC 9110
12.5.3 (q-values, `*`, `x-gzip`) and never raises: a member with a malformed weight is
ignored.

A response is compressed by the edge (`may_compress`, `choose`) only when that cannot
change what it means: a whole 200, not already encoded, of a type that compresses, that
the origin did not mark `no-transform`. A stored encoded body is decoded for a client
that does not take its coding (`can_decode`). Either way the representation changed:
`transformed_headers` rewrites its fields (new Content-Encoding, no Content-Length or
digests, a weak ETag, Vary: Accept-Encoding).

The codecs are streaming objects (`feed` per chunk, then `finish`) with one error type,
`CodingError`. Decoders are bounded: they inflate in steps and stop past `max_output`,
so a decompression bomb never allocates much beyond the limit.
"""

from __future__ import annotations

import re
import zlib
from typing import Protocol

import brotli

from .fields import Headers, directives, field, first, pairs, split_list

CODINGS = ("br", "gzip")  # what the edge stores and serves compressed, preferred first
_ALIASES = {"x-gzip": "gzip", "x-compress": "compress"}  # RFC 9110 8.4.1.1, 8.4.1.3
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")  # RFC 9110 12.4.2
_COMPRESSIBLE = frozenset(
    {
        "application/json",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/xml",
        "application/xhtml+xml",
        "application/rss+xml",
        "application/atom+xml",
        "application/ld+json",
        "application/manifest+json",
        "application/vnd.ms-fontobject",
        "image/svg+xml",
        "image/x-icon",
        "image/vnd.microsoft.icon",
        "font/ttf",
        "font/otf",
    }
)
_DIGESTS = ("content-md5", "digest", "repr-digest")
_STEP = 64 * 1024  # bytes of input (and of output) a decoder handles per step


def _coding(name: str) -> str:
    name = name.strip().lower()
    return _ALIASES.get(name, name)


def _weight(params: list[str]) -> float | None:
    """The q-value among a member's parameters (1 when absent); None when it is malformed."""
    q = 1.0
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            value = value.strip()
            if not _QVALUE.fullmatch(value):
                return None
            q = float(value)
    return q


def normalize_accept_encoding(value: str | None) -> str | None:
    """A client's Accept-Encoding (all its lines joined; None when absent) reduced to the
    codings the edge serves: `"br, gzip"`, `"br"`, `"gzip"`, or None (identity only).

    A coding is taken when named with q > 0 (and never with q = 0), or not named while
    `*` is taken. Never raises."""
    if not value:
        return None
    named: dict[str, bool] = {}
    star: bool | None = None
    for member in split_list(value):
        coding, *params = member.split(";")
        q = _weight(params)
        if q is None:
            continue
        coding = _coding(coding)
        if coding == "*":
            star = q > 0 and star is not False
        else:
            named[coding] = q > 0 and named.get(coding, True)
    taken = [c for c in CODINGS if named.get(c, star is True)]
    return ", ".join(taken) or None


def accepts(normalised: str | None, coding: str) -> bool:
    """Whether a client (by its normalised Accept-Encoding) takes `coding`: `identity`
    always; a list of codings when it takes each of them."""
    taken = set(split_list(normalize_accept_encoding(normalised) or ""))
    wanted = [_coding(c) for c in split_list(coding)]
    return all(c == "identity" or c in taken for c in wanted)


def choose(normalised: str | None) -> str | None:
    """The coding the edge compresses with for this client: br, else gzip, else None."""
    for coding in CODINGS:
        if accepts(normalised, coding):
            return coding
    return None


def content_coding(headers: Headers) -> str | None:
    """A response's Content-Encoding, lowercased and trimmed (`x-gzip` read as gzip,
    `identity` members dropped); a list of codings as `"gzip, br"`; None for identity."""
    codings = [_coding(c) for c in split_list(field(headers, "content-encoding"))]
    return ", ".join(c for c in codings if c != "identity") or None


def can_decode(coding: str | None) -> bool:
    """Whether the edge can decode a body in `coding` (one coding: gzip, deflate or br)."""
    return coding is not None and _coding(coding) in ("gzip", "deflate", "br")


def compressible(content_type: str | None) -> bool:
    """Whether a media type gains from compression: text (but not event streams), the
    JSON/XML/JavaScript families, SVG, icons and uncompressed fonts. Parameters ignored."""
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    kind, slash, sub = media.partition("/")
    if not slash or not kind or not sub:
        return False
    if kind == "text":
        return sub != "event-stream"
    return media in _COMPRESSIBLE or sub.endswith(("+json", "+xml"))


def may_compress(status: int, resp_headers: Headers, min_length: int = 256) -> bool:
    """Whether the edge may compress this response: a 200, not encoded, compressible type,
    no `no-transform`, not a part (Content-Range), and not known to be under `min_length`
    (a malformed Content-Length: not touched)."""
    lines = list(pairs(resp_headers))
    if status != 200 or content_coding(lines) is not None or not compressible(first(lines, "content-type")):
        return False
    if "no-transform" in directives(lines) or first(lines, "content-range") is not None:
        return False
    length = first(lines, "content-length")
    if length is None:
        return True
    if not length.isascii() or not length.isdigit():
        return False
    return len(length.lstrip("0")) > 18 or int(length) >= min_length


def with_vary(headers: Headers, name: str) -> list[tuple[str, str]]:
    """The fields with `name` added to Vary, unless Vary already names it or is `*`."""
    lines = list(pairs(headers))
    names = [n.strip().lower() for n in split_list(field(lines, "vary"))]
    if "*" in names or name.lower() in names:
        return lines
    return [*lines, ("Vary", name)]


def transformed_headers(headers: Headers, coding: str | None) -> list[tuple[str, str]]:
    """The fields of a representation the edge re-encoded: compressed to `coding`, or
    decoded when it is None. Content-Encoding replaced (removed), Content-Length and
    digests removed, a strong ETag made weak (RFC 9110 8.8.3: no longer the same bytes;
    a malformed one removed), and Vary: Accept-Encoding."""
    out: list[tuple[str, str]] = []
    for name, value in pairs(headers):
        low = name.lower()
        if low in ("content-encoding", "content-length", *_DIGESTS):
            continue
        if low == "etag":
            tag = value.strip()
            if tag.startswith('"') and tag.endswith('"') and len(tag) >= 2:
                value = "W/" + tag
            elif not (tag.startswith('W/"') and tag.endswith('"') and len(tag) >= 4):
                continue
        out.append((name, value))
    if coding is not None:
        out.append(("Content-Encoding", coding))
    return with_vary(out, "Accept-Encoding")


class CodingError(Exception):
    """A body that cannot be decoded (corrupt, truncated, or over its output limit)."""


class Codec(Protocol):
    """A streaming transformation of a body: `feed` each chunk, then `finish` once."""

    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class _GzipEncoder:
    def __init__(self, level: int) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, 31)

    def feed(self, data: bytes) -> bytes:
        return self._z.compress(data)

    def finish(self) -> bytes:
        return self._z.flush()


class _BrotliEncoder:
    def __init__(self, quality: int) -> None:
        self._b = brotli.Compressor(mode=brotli.MODE_GENERIC, quality=quality)

    def feed(self, data: bytes) -> bytes:
        try:
            return self._b.process(data)
        except brotli.error as e:
            raise CodingError(f"br: {e}") from None

    def finish(self) -> bytes:
        try:
            return self._b.finish()
        except brotli.error as e:
            raise CodingError(f"br: {e}") from None


def encoder(coding: str, level: int | None = None) -> Codec:
    """A streaming compressor: gzip (zlib level, 6 by default) or br (quality, 5 by default).
    ValueError for another coding or level."""
    if coding == "gzip":
        return _GzipEncoder(6 if level is None else level)
    if coding == "br":
        if level is not None and not 0 <= level <= 11:
            raise ValueError(f"brotli quality {level} not in 0..11")
        return _BrotliEncoder(5 if level is None else level)
    raise ValueError(f"cannot encode {coding!r}")


class _Bounded:
    """Output accounting shared by the decoders."""

    def __init__(self, coding: str, max_output: int) -> None:
        self.coding, self.max_output, self.produced = coding, max_output, 0

    def _count(self, out: bytes) -> bytes:
        self.produced += len(out)
        if self.produced > self.max_output:
            raise CodingError(f"{self.coding}: decoded body over {self.max_output} bytes")
        return out


class _ZlibDecoder(_Bounded):
    """gzip (any number of members, zero padding after them ignored) or deflate (zlib-
    wrapped, or raw when the first bytes are not a zlib header, as browsers accept)."""

    def __init__(self, coding: str, max_output: int) -> None:
        super().__init__(coding, max_output)
        self._z: zlib._Decompress | None = None  # the member being decoded
        self._pending = b""  # bytes before a member starts
        self._members = 0
        self._padding = False

    def _start(self, final: bool) -> bool:
        """Begin a member with the pending bytes if they start one (False: wait for more,
        or they were padding); raises on what cannot start one."""
        data = self._pending
        if not data:
            return False
        if self._members:  # after a whole stream: zero padding, or (gzip) another member
            if self._padding or data[0] == 0:
                self._padding, self._pending = True, b""
                if data.strip(b"\0"):
                    raise CodingError(f"{self.coding}: data after the end of the stream")
                return False
            if len(data) < 2 and not final and self.coding == "gzip":
                return False
            if self.coding == "deflate" or data[:2] != b"\x1f\x8b":
                raise CodingError(f"{self.coding}: data after the end of the stream")
        if self.coding == "gzip":
            self._z = zlib.decompressobj(31)
            return True
        if len(data) < 2 and not final:
            return False
        # RFC 1950 header: CM 8 (deflate), and CMF*256+FLG a multiple of 31
        zlib_wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
        self._z = zlib.decompressobj(15 if zlib_wrapped else -15)
        return True

    def _inflate(self, data: bytes) -> list[bytes]:
        assert self._z is not None
        out: list[bytes] = []
        for at in range(0, max(len(data), 1), _STEP):
            tail = data[at : at + _STEP]
            while True:
                limit = min(_STEP, self.max_output - self.produced + 1)
                try:
                    chunk = self._z.decompress(tail, limit)
                except zlib.error as e:
                    raise CodingError(f"{self.coding}: {e}") from None
                out.append(self._count(chunk))
                tail = self._z.unconsumed_tail
                if self._z.eof or (not tail and len(chunk) < limit):
                    break
            if self._z.eof:
                self._pending = self._z.unused_data + data[at + _STEP :]
                self._z, self._members = None, self._members + 1
                break
        return out

    def _run(self, data: bytes, final: bool) -> bytes:
        self._pending += data
        out: list[bytes] = []
        while self._z is not None or self._start(final):
            data, self._pending = self._pending, b""
            out += self._inflate(data)  # a member that ends leaves what follows it pending
            if self._z is not None or not self._pending:
                break
        return b"".join(out)

    def feed(self, data: bytes) -> bytes:
        return self._run(data, False) if data else b""

    def finish(self) -> bytes:
        out = self._run(b"", True)
        if self._z is not None:
            raise CodingError(f"{self.coding}: truncated")
        return out


class _BrotliDecoder(_Bounded):
    def __init__(self, max_output: int) -> None:
        super().__init__("br", max_output)
        self._b = brotli.Decompressor()
        self._fed = False

    def _run(self, data: bytes) -> bytes:
        out: list[bytes] = []
        try:
            chunk = self._b.process(data, output_buffer_limit=_STEP)
            out.append(self._count(chunk))
            # drain what the decoder holds, a bounded piece at a time
            while not self._b.is_finished() and (chunk or not self._b.can_accept_more_data()):
                chunk = self._b.process(b"", output_buffer_limit=_STEP)
                out.append(self._count(chunk))
        except brotli.error as e:
            raise CodingError(f"br: {e}") from None
        return b"".join(out)

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        self._fed = True
        return self._run(data)

    def finish(self) -> bytes:
        if not self._fed:
            return b""
        out = b"" if self._b.is_finished() else self._run(b"")
        if not self._b.is_finished():
            raise CodingError("br: truncated")
        return out


def decoder(coding: str, max_output: int) -> Codec:
    """A streaming, bounded decompressor for gzip, deflate or br (`CodingError` on corrupt
    or truncated input, or past `max_output` bytes out). An empty body decodes to nothing.
    ValueError for a coding it cannot decode (see `can_decode`)."""
    coding = _coding(coding)
    if coding in ("gzip", "deflate"):
        return _ZlibDecoder(coding, max_output)
    if coding == "br":
        return _BrotliDecoder(max_output)
    raise ValueError(f"cannot decode {coding!r}")
