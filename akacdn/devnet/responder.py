"""A probe responder for labs and tests: the client networks' probe targets, with RTT
emulated (this kernel has no netem).

It answers every parseable DNS query with an empty NOERROR reply (QR=1, AA=0, RA=0, the
query's id, opcode, RD and first question) after a delay chosen by the query's source
address: the longest matching prefix of the delay table, else its default. The table
lives in a JSON control file, re-read whenever it changes (checked on a query, at most
every 0.1 s), so a lab moves a network "further away" while everything runs:

    {"default": 0.0, "prefixes": {"127.5.1.0/24": 0.08, "::1/128": 0.02}}

A control file that is missing or refused keeps the table in force (a refusal is logged).
Delayed replies are timers (`loop.call_later`), never a wait of the receive path; at most
`MAX_PENDING` wait at once, more are dropped and counted. Malformed datagrams and
responses are ignored and counted.

    python -m akacdn.devnet.responder --listen 127.5.1.1:53 --listen [::1]:5300 --control delays.json
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ipaddress
import os
import socket
import struct
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec

from ..config import probe_target
from ..dns.query import QueryError, parse_query
from ..mapping.routing import PrefixTable
from ..runtime import Log, run

MAX_PENDING = 10_000  # delayed replies waiting at once
CHECK_EVERY = 0.1  # seconds between looks at the control file
_HEADER = struct.Struct("!HHHHHH")

Delay = Annotated[float, msgspec.Meta(ge=0, le=60)]


class Control(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    default: Delay = 0.0
    prefixes: dict[str, Delay] = {}


class DelayTable:
    """Seconds to wait before answering a source address (longest prefix, else default)."""

    def __init__(self, default: float = 0.0, prefixes: Mapping[str, float] | None = None) -> None:
        self.default = default
        self.prefixes = dict(prefixes or {})
        self._table = PrefixTable(self.prefixes.items())  # ValueError for a bad prefix

    @classmethod
    def parse(cls, data: bytes) -> DelayTable:
        """A control file's content; ValueError when it is refused."""
        try:
            c = msgspec.json.decode(data, type=Control)
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            raise ValueError(str(e)) from None
        return cls(c.default, c.prefixes)

    def delay(self, address: str) -> float:
        try:
            addr = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return self.default
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped  # a v4 client of a dual-stack socket
        got, _ = self._table.lookup(addr)
        return self.default if got is None else got


def reply_to(data: bytes) -> bytes | None:
    """The empty NOERROR reply to a DNS query (None: not a well-formed query)."""
    try:
        q = parse_query(data)
    except (QueryError, ValueError, IndexError, struct.error):
        return None
    if q.flags & 0x8000:
        return None  # a response: never answer one (no loops between responders)
    flags = 0x8000 | (q.flags & 0x7800) | (q.flags & 0x0100)  # QR, opcode, RD; AA=0, RA=0, NOERROR
    question = data[12 : q.question_end] if q.qdcount else b""
    return _HEADER.pack(q.id, flags, 1 if q.qdcount else 0, 0, 0, 0) + question


class _Control:
    """The delay table of a control file, re-read when the file changes."""

    def __init__(self, path: Path, log: Log) -> None:
        self.path = path
        self.log = log
        self.table = DelayTable()
        self._seen: tuple[int, int, int] | None = None
        self._checked = -1e9

    def current(self, now: float) -> DelayTable:
        if now - self._checked >= CHECK_EVERY:
            self._checked = now
            self.check()
        return self.table

    def check(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            return  # missing for now: keep the table in force
        # mtime alone misses two writes within one clock tick; size and inode catch most of those
        seen = (st.st_mtime_ns, st.st_size, st.st_ino)
        if seen == self._seen:
            return
        self._seen = seen
        try:
            self.table = DelayTable.parse(self.path.read_bytes())
        except (OSError, ValueError) as e:
            self.log.warning("control_refused", file=str(self.path), reason=str(e))


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.transport is not None:
            self.responder.received(self.transport, data, addr)

    def error_received(self, exc: Exception) -> None:
        self.responder.counts["send_errors"] += 1


class Responder:
    """The responder's sockets and pending replies; `serve` runs one until cancelled."""

    def __init__(self, control: Path, log: Log | None = None) -> None:
        self.log = log or Log("responder")
        self.control = _Control(Path(control), self.log)
        self.counts: collections.Counter[str] = collections.Counter()  # answered, malformed, dropped
        self.addresses: list[tuple[str, int]] = []
        self._transports: list[asyncio.DatagramTransport] = []
        self._pending: set[asyncio.TimerHandle] = set()

    async def start(self, listen: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Bind every (address, port) (port 0: any free one); the bound addresses."""
        loop = asyncio.get_running_loop()
        self.control.current(loop.time())
        try:
            for host, port in listen:
                family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Listener(self), local_addr=(host, port), family=family
                )
                self._transports.append(transport)
                self.addresses.append(transport.get_extra_info("sockname")[:2])
        except BaseException:
            self.close()
            raise
        return self.addresses

    def received(self, transport: asyncio.DatagramTransport, data: bytes, addr: Any) -> None:
        reply = reply_to(data)
        if reply is None:
            self.counts["malformed"] += 1
            return
        loop = asyncio.get_running_loop()
        delay = self.control.current(loop.time()).delay(addr[0])
        if delay <= 0:
            self.counts["answered"] += 1
            transport.sendto(reply, addr)
            return
        if len(self._pending) >= MAX_PENDING:
            self.counts["dropped"] += 1
            return
        handle: asyncio.TimerHandle | None = None

        def send() -> None:
            self._pending.discard(handle)  # type: ignore[arg-type]
            if not transport.is_closing():
                self.counts["answered"] += 1
                transport.sendto(reply, addr)

        handle = loop.call_later(delay, send)
        self._pending.add(handle)

    def close(self) -> None:
        """Stop: pending replies are not sent, the sockets close."""
        for h in self._pending:
            h.cancel()
        self._pending.clear()
        for t in self._transports:
            t.close()
        self._transports.clear()


async def serve(listen: list[tuple[str, int]], control: Path) -> None:
    """Answer on every (address, port) of `listen` until cancelled."""
    responder = Responder(control)
    try:
        bound = await responder.start(listen)
        responder.log.info("listening", addresses=[f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in bound],
                           control=str(control))  # fmt: skip
        await asyncio.Future()  # until cancelled (SIGTERM)
    finally:
        responder.close()


def _listen(text: str) -> tuple[str, int]:
    try:
        host, port = probe_target(text, 0)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if port == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a port is needed (ADDR:PORT or [V6]:PORT)")
    return host, port


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m akacdn.devnet.responder", description="A DNS probe responder with emulated RTT."
    )
    ap.add_argument("--listen", action="append", type=_listen, required=True, metavar="ADDR:PORT")
    ap.add_argument("--control", type=Path, required=True, metavar="FILE", help="the JSON delay table")
    args = ap.parse_args(argv)
    return run(lambda: serve(args.listen, args.control))


if __name__ == "__main__":
    sys.exit(main())
