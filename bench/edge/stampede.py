"""The cold stampede: N clients ask one never-seen object at the same moment.

Every client opens its connection first; when all are open, every request is written
at once (`Connection: close`), and each client reads its response to EOF. The response
parser is a small pure function (Content-Length, chunked, or to EOF)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field


class BadResponse(ValueError):
    pass


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one HTTP/1.1 response read to EOF."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        raise BadResponse("no end of headers")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise BadResponse(f"bad status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise BadResponse(f"bad header line {line!r}")
        name = name.strip().lower()
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return int(parts[1]), headers, _dechunk(rest)
    if "content-length" in headers:
        n = int(headers["content-length"])
        if len(rest) < n:
            raise BadResponse(f"body cut short: {len(rest)} of {n} bytes")
        return int(parts[1]), headers, rest[:n]
    return int(parts[1]), headers, rest


def _dechunk(data: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            raise BadResponse("chunked body cut short")
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        chunk = data[end + 2 : end + 2 + size]
        if len(chunk) < size:
            raise BadResponse("chunked body cut short")
        out += chunk
        pos = end + 2 + size + 2


@dataclass
class Outcome:
    clients: int
    completed: int = 0  # responses read and parsed
    ok: int = 0  # status 200 and the expected body
    statuses: dict[str, int] = field(default_factory=dict)
    distinct_bodies: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # from the requests written to the last response read
    cache_outcomes: dict[str, int] = field(default_factory=dict)  # X-Cache values seen

    @property
    def all_identical_and_full(self) -> bool:
        return self.ok == self.clients and self.distinct_bodies == 1


async def _client(addr: str, port: int, request: bytes, go: asyncio.Event, opened: list[int], timeout: float) -> bytes:
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(addr, port)
    opened[0] += 1
    try:
        await go.wait()
        writer.write(request)
        async with asyncio.timeout(timeout):
            await writer.drain()
            return await reader.read(-1)
    finally:
        writer.close()


async def stampede(
    addr: str, port: int, host: str, path: str, clients: int, expected: bytes, timeout: float = 30.0
) -> Outcome:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: akacdn-bench\r\nConnection: close\r\n\r\n".encode()
    go = asyncio.Event()
    opened = [0]
    tasks = [asyncio.create_task(_client(addr, port, request, go, opened, timeout)) for _ in range(clients)]
    # let every connection open (or fail, bounded), then release all requests together
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and opened[0] < sum(not t.done() for t in tasks):
        await asyncio.sleep(0.01)
    t0 = time.monotonic()
    go.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    out = Outcome(clients, seconds=round(time.monotonic() - t0, 4))
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    caches: Counter[str] = Counter()
    bodies: set[str] = set()
    for r in results:
        if isinstance(r, BaseException):
            errors[type(r).__name__] += 1
            continue
        try:
            status, headers, body = parse_response(r)
        except (BadResponse, ValueError) as e:
            errors[f"bad response: {e}"[:80]] += 1
            continue
        out.completed += 1
        statuses[str(status)] += 1
        caches[headers.get("x-cache", "-")] += 1
        bodies.add(hashlib.sha256(body).hexdigest())
        if status == 200 and body == expected:
            out.ok += 1
    out.statuses, out.errors, out.cache_outcomes = dict(statuses), dict(errors), dict(caches)
    out.distinct_bodies = len(bodies)
    return out
