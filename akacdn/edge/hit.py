"""The common cache hit as pre-built wire bytes (pure).

Most requests an edge sees are a plain `GET` (or `HEAD`) with no conditional, no
`Range`, no `Cache-Control`/`Pragma` of its own, for a stored response that does not
vary and is fresh. For those, RFC 9111 reduces to "fresh -> serve it", and the answer
differs from the last one for the same stored response only in `Age` and the ttl in
`Cache-Status`. So each stored variant gets, at its first hit, its response head built
once (status line, stored fields, `Via`, `X-Served-By`, `X-Cache`, `Content-Length`),
and per request only the two changing lines are added (rebuilt when their whole
seconds change). Anything else takes the full flow in `handler`.

Framing (RFC 9110 6.4.1, 8.6): a 1xx, 204 or 304 has no content and never a
Content-Length (a server MUST NOT send one in a 1xx or 204; a 304's would have to be
the 200's); `body` is then empty whatever was stored. A 205 has no content either
(15.3.6): `Content-Length: 0`.
"""

from __future__ import annotations

import math
from http import HTTPStatus

from .fields import DELTA_MAX, directives
from .hitfile import HitFile
from .rfc9111 import Entry

# request fields after which the answer is not the plain hit: the full flow decides
NOT_PLAIN = frozenset(
    {
        b"cache-control",
        b"pragma",
        b"range",
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
        b"if-range",
        b"expect",
        b"content-length",
        b"transfer-encoding",
        b"x-akacdn-tunnel",  # another edge's request: its grant is checked, its scheme taken
        b"upgrade",  # (llhttp then stops reading: the full flow answers and closes)
    }
)
FRAMING = frozenset({"content-length", "transfer-encoding", "content-range", "connection", "keep-alive"})
REASONS = {s.value: s.phrase for s in HTTPStatus}
_BREAKS = frozenset("\r\n\0")
_EDGE = 1e-6  # seconds kept clear of the instant Age or ttl turns


def has_content(status: int) -> bool:
    """May a response with this status carry content (RFC 9110 6.4.1: never a 1xx, 204 or
    304; 15.3.6: never a 205)."""
    return status >= 200 and status not in (204, 205, 304)


def has_content_length(status: int) -> bool:
    """Does the plain-hit head carry Content-Length: not for a 1xx or 204 (RFC 9110 8.6 MUST
    NOT) nor a 304 (8.6: it could only repeat the 200's, which a stored 304 does not know)."""
    return status >= 200 and status not in (204, 304)


def status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n".encode("latin-1")


class Prepared:
    """A stored variant's plain-hit answer: the head without `Age` and `Cache-Status`."""

    __slots__ = (
        "head",
        "body",
        "entry",
        "plain",
        "_age",
        "_ttl",
        "tail",
        "since",
        "until",
        "file",
        "large",
        "counted",
        "error",
        "hits",
    )

    def __init__(self, entry: Entry, body: bytes, via: str, machine: str) -> None:
        self.entry = entry
        self.body = body if has_content(entry.status) else b""
        # a stored `no-cache` response is revalidated on every use: never the plain hit
        self.plain = "no-cache" not in directives(entry.headers)
        lines = [status_line(entry.status)]
        for k, v in entry.headers:
            if k.lower() not in FRAMING and not _BREAKS.intersection(k + v):  # never split the head
                lines.append(f"{k}: {v}\r\n".encode("latin-1", "replace"))
        lines.append(f"Via: {via}\r\nX-Served-By: {machine}\r\nX-Cache: HIT\r\n".encode("latin-1"))
        if has_content_length(entry.status):
            lines.append(b"Content-Length: %d\r\n" % len(self.body))
        self.head = b"".join(lines)
        self._age = -1
        self._ttl = 0
        # `Age`, `Cache-Status` and the end of the head, as of the last `current`; the span
        # of time (`since` < now < `until`) in which they hold
        self.tail = b""
        self.since = self.until = 0.0
        self.file: HitFile | None = None  # the whole answer in a file, for sendfile (large bodies)
        self.large: tuple[bytes, HitFile] | None = None  # with a file: the whole head (at `tail`), the file
        self.counted: list[int] = [0] * 7  # where its hits count (`report.SerialCounts.row`)
        self.error = entry.status >= 500  # (a stored 5xx counts as an error)
        self.hits = 0  # plain hits answered since the edge last counted them (`report`)

    def attach(self, file: HitFile) -> None:
        """Send large hits from this file (the whole answer: `hitfile`); the next hit
        rebuilds the head and the file's tail."""
        self.file = file
        self._age = -1
        self.since = self.until = 0.0

    def current(self, now: float) -> bool:
        """Make `tail` (and `large`) say the Age and ttl at `now`; False once not fresh, and
        always when this answer is not the plain hit (`plain`). Within `since` < now <
        `until` nothing changes: the hot path checks that span itself (two comparisons)
        and calls this only when a whole second turns (a span is only ever set when
        `plain`)."""
        return self.since < now < self.until or (self.plain and self._show(now))

    def _show(self, now: float) -> bool:
        """Rebuild the tail (and the large hit's head) for `now`, and the span of time its
        whole seconds of Age and ttl hold for; False once not fresh."""
        e = self.entry
        since = now - e.response_time
        age = e.initial_age + (since if since > 0 else 0.0)
        left = e.lifetime - age
        if left <= 0:
            self.since = self.until = 0.0
            return False
        a, t = int(age), math.floor(left)
        if a != self._age or t != self._ttl:
            self._age, self._ttl = a, t
            self.tail = b"Age: %d\r\nCache-Status: akacdn; hit; ttl=%d\r\n\r\n" % (min(a, DELTA_MAX), t)
            if self.file is not None:
                self.file.show(min(a, DELTA_MAX), t)
                self.large = (self.head + self.tail, self.file)
        if since > 0:  # (a clock before the response: recomputed every time)
            # Age's whole seconds turn at age = a + 1, the ttl's at left = t (a margin
            # against float rounding at either edge)
            self.since = now - min(age - a, t + 1 - left) + _EDGE
            self.until = now + min(a + 1 - age, left - t) - _EDGE
        else:
            self.since = self.until = 0.0
        return True
