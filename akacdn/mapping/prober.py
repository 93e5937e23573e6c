"""Measured mapping's probes, the asyncio shell: one DNS query or TCP connect per target,
paced, a round every `[probing] interval`, the round's `ProbeReport` to the mapping
centers. What to probe, how fast and what to report is decided in `mapping.probe`.

Error contract: `probe_dns` and `probe_tcp` return None for every network failure (a
timeout, an ICMP error, a refused connection, a source address that cannot be bound);
anything else escaping them is a bug and ends the round (and the daemon, which restarts).
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import secrets
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from .maps import LowMap
from .messages import ProbeReport
from .probe import Pacer, Tally, Target, plan

IN_FLIGHT = 64  # probes out at once, at most
# ". IN NS", RD=0: any nameserver answers it (or refuses it: any reply shows it is alive)
_QUESTION = b"\x00" + struct.pack("!HH", 2, 1)
_HEADER = struct.Struct("!HHHHHH")


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def _local(source: str | None, family: socket.AddressFamily) -> tuple[str, int] | None:
    """Where a probe leaves from: `source` when it is of the target's family, else the
    kernel's choice (an IPv4 machine address cannot send to an IPv6 target)."""
    if source and _family(source) == family:
        return (source, 0)
    return None


class _DnsProbe(asyncio.DatagramProtocol):
    """Waits for the first reply to query `qid` from `peer`; foreign datagrams are ignored."""

    def __init__(self, qid: int, peer: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]) -> None:
        self.qid = qid
        self.peer = peer
        self.done: asyncio.Future[float | None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.done.done() or len(data) < _HEADER.size:
            return
        if addr is not None:  # (the socket is connected: the kernel passes only the peer's anyway)
            try:
                if (ipaddress.ip_address(addr[0].partition("%")[0]), addr[1]) != self.peer:
                    return
            except (ValueError, TypeError, IndexError):
                return
        qid, flags, qdcount, *_ = _HEADER.unpack_from(data)
        if qid != self.qid or not flags & 0x8000:
            return  # not our query's id, or not a response
        if qdcount and data[12 : 12 + len(_QUESTION)] != _QUESTION:
            return  # a reply to some other question
        self.done.set_result(time.perf_counter())

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable (ECONNREFUSED ...)
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def probe_dns(address: str, port: int, timeout: float, source: str | None = None) -> float | None:
    """One ". IN NS" query over UDP to (address, port) (an IP address: never a name to
    resolve); the RTT in seconds of the first reply with our id (any rcode), or None when
    none came within `timeout` or an ICMP error said nobody listens."""
    loop = asyncio.get_running_loop()
    family = _family(address)
    qid = secrets.randbits(16)
    query = _HEADER.pack(qid, 0, 1, 0, 0, 0) + _QUESTION
    transport: asyncio.DatagramTransport | None = None
    try:
        async with asyncio.timeout(timeout):
            peer = (ipaddress.ip_address(address), port)
            transport, proto = await loop.create_datagram_endpoint(
                lambda: _DnsProbe(qid, peer),
                local_addr=_local(source, family),
                remote_addr=(address, port),
                family=family,
            )
            sent = time.perf_counter()  # (uvloop's loop.time() is per iteration, in ms)
            transport.sendto(query)
            got = await proto.done
            return None if got is None else max(0.0, got - sent)
    except (TimeoutError, OSError):
        return None
    finally:
        if transport is not None:
            transport.close()


async def probe_tcp(address: str, port: int, timeout: float, source: str | None = None) -> float | None:
    """The time a TCP connect to (address, port) takes, in seconds (the connection is
    closed at once), or None when refused or not done within `timeout`."""
    loop = asyncio.get_running_loop()
    family = _family(address)
    local = _local(source, family)
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        sock.setblocking(False)
        if local is not None:
            sock.bind(local)
        async with asyncio.timeout(timeout):
            start = time.perf_counter()
            await loop.sock_connect(sock, (address, port))
            return max(0.0, time.perf_counter() - start)
    except (TimeoutError, OSError):
        return None
    finally:
        sock.close()


class Prober:
    """This edge's share of its region's probes, a round every `[probing] interval`; each
    round's `ProbeReport` goes to `publish` (msgpack), for topic `probe`."""

    def __init__(self, rt: Any, publish: Callable[[bytes], None], source: str | None = None) -> None:
        self.rt = rt
        self._publish = publish
        self.source = source or None  # probes leave from this address (its family's targets)
        self.live_edges: tuple[str, ...] | None = None  # this region's, from the low map (None: no map yet)
        self._pacer: Pacer | None = None  # one across rounds: the rate holds at round boundaries too
        self._regions_at = -math.inf  # when a round last included the other regions
        self._sent = rt.counter("akacdn_probes_sent", "Measured mapping's probes sent", ("kind",))
        self._lost = rt.counter("akacdn_probes_lost", "Measured mapping's probes without a reply", ("kind",))
        for kind in ("network", "region"):  # shown from the start, at 0
            self._sent.labels(kind)
            self._lost.labels(kind)

    def use_map(self, low: LowMap) -> None:
        """The live edges of this machine's region, from a new low map."""
        region = self.rt.machine.region
        self.live_edges = tuple(sorted(s.machine for r in low.regions if r.region == region for s in r.servers))

    async def run(self) -> None:
        """Forever: a round, then a wait until the next round's start (round start +
        interval; at once when the round took longer)."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await self.round()
            wait = start + self.rt.net.probing.interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)

    async def round(self) -> ProbeReport | None:
        """One round (the config read anew: it may have been reloaded): plan, probe, report.
        None when there was nothing to probe (and nothing was published)."""
        net, machine = self.rt.net, self.rt.machine
        settings = net.probing
        now = time.monotonic()
        # the other regions: every region_interval (a full mesh of 1,100 regions is millions of results)
        regions = now - self._regions_at >= settings.region_interval
        targets = plan(net, machine, self.live_edges, regions)
        if regions:
            self._regions_at = now
        if not targets:
            return None
        if self._pacer is None or self._pacer.rate != settings.rate:
            self._pacer = Pacer(settings.rate)
        loop = asyncio.get_running_loop()
        started = loop.time()
        tally = Tally()
        await self._probe_all(targets, settings.timeout, self._pacer, tally)
        report = tally.report(machine.id, machine.region, time.time())
        self._publish(msgspec.msgpack.encode(report))
        seconds = round(loop.time() - started, 3)
        self.rt.log.info("probe_round", targets=len(targets), lost=tally.lost, seconds=seconds)
        return report

    async def _probe_all(self, targets: Sequence[Target], timeout: float, pacer: Pacer, tally: Tally) -> None:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(IN_FLIGHT)
        async with asyncio.TaskGroup() as tg:
            for t in targets:
                await slots.acquire()
                while (wait := pacer.delay(loop.time())) > 0:
                    await asyncio.sleep(wait)
                tg.create_task(self._probe(t, timeout, tally, slots))

    async def _probe(self, t: Target, timeout: float, tally: Tally, slots: asyncio.Semaphore) -> None:
        try:
            probe = probe_dns if t.method == "dns" else probe_tcp
            rtt = await probe(t.address, t.port, timeout, self.source)
        finally:
            slots.release()
        tally.add(t, rtt)
        self._sent.labels(t.kind).inc()
        if rtt is None:
            self._lost.labels(t.kind).inc()
