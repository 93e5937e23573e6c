"""UDP and TCP DNS listeners (asyncio shell): bytes in, fast path or `wire.respond`, bytes out.

UDP: a non-blocking socket drained from the loop's reader callback, in batches of
recvmmsg/sendmmsg (`udp.UdpBatch`) where libc has them, else by a recvfrom loop. Each
query is first looked up in the `AnswerCache`, then answered by the slow path, then
passed through RRL. Counters on this path are plain integers, exported by a collector
at scrape time.

TCP follows RFC 7766: 2-byte length prefix, several (pipelined) queries per connection
answered in order, an idle timeout, and a cap on concurrent connections (beyond it new
ones are closed at once and counted). TCP is never rate limited.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from ..runtime import Runtime
from ..sockets import bound
from .fastpath import AnswerCache, bucket_of
from .guard import guarded
from .rrl import DROP, SEND, RateLimiter, rrl_key, truncated
from .udp import BATCH as UDP_BATCH
from .udp import UdpBatch
from .wire import CACHEABLE, AnswerFn, respond

BATCHES_PER_WAKEUP = 8  # then yield to the loop, so TCP, timers and maps get their turn
MAX_UDP_QUERY = 4096


class DnsStats(Collector):
    """Plain counters of the serving path, added up over this process and its workers."""

    def __init__(self) -> None:
        self.replies: Counter[tuple[str, str]] = Counter()  # (kind, transport)
        self.rrl: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.workers: dict[int, dict[str, list[tuple[list[str], float]]]] = {}

    def snapshot(self) -> dict[str, list[tuple[list[str], float]]]:
        return {
            "replies": [([k, t], float(v)) for (k, t), v in self.replies.items()],
            "rrl": [([a], float(v)) for a, v in self.rrl.items()],
            "errors": [([e], float(v)) for e, v in self.errors.items()],
        }

    def collect(self) -> Iterator[CounterMetricFamily]:
        fams = {
            "replies": CounterMetricFamily("akacdn_dns_replies", "DNS replies by kind", labels=["kind", "transport"]),
            "rrl": CounterMetricFamily("akacdn_dns_rrl", "Replies rate limited, by action", labels=["action"]),
            "errors": CounterMetricFamily("akacdn_dns_errors", "Socket errors", labels=["error"]),
        }
        totals: dict[str, Counter[tuple[str, ...]]] = {k: Counter() for k in fams}
        for snap in [self.snapshot(), *self.workers.values()]:
            for name, samples in snap.items():
                for labels, value in samples:
                    totals[name][tuple(labels)] += value
        for name, fam in fams.items():
            for labels, value in totals[name].items():
                fam.add_metric(list(labels), value)
            yield fam


class DnsServer:
    def __init__(self, rt: Runtime, answer: AnswerFn) -> None:
        self.rt = rt
        self.zone_answer = answer
        self.answer = guarded(rt, answer)
        self.identity = rt.net.dns.nsid or rt.machine.id
        self.cache = AnswerCache()
        self.stats = DnsStats()
        rt.registry.register(self.stats)
        self.tcp_refused = rt.counter("akacdn_dns_tcp_refused", "TCP connections over the limit")
        self._tcp_open = 0
        self._udp: list[socket.socket] = []
        self._second = 0
        self.rrl: RateLimiter | None = None
        self.configure()
        rt.on_reload(lambda _: self.configure())
        rt.not_ready("sockets", "DNS sockets not bound yet")

    def configure(self) -> None:
        d = self.rt.net.dns
        self.rrl = RateLimiter(d.rrl_rate, d.rrl_slip) if d.rrl_rate else None
        self.identity = d.nsid or self.rt.machine.id
        self.answer = guarded(self.rt, self.zone_answer)  # fault injection follows the customers
        self.cache.clear()

    def map_changed(self) -> None:
        """A new map: every pre-built answer is stale."""
        self.cache.clear()

    # the slow path, shared by UDP and TCP ----------------------------------------------
    def slow(self, data: bytes, source: str, transport: str, max_udp: int | None) -> bytes | None:
        """Answer a query the cache could not (dnslib), and keep the answer for the next."""
        r = respond(data, source, self.answer, self.identity, max_udp)
        self.stats.replies[(r.kind, transport)] += 1
        if r.kind == "bug":
            self.rt.log.limited("answer_bug", client=source)
        if r.data is not None and max_udp is not None and r.kind in CACHEABLE:
            self.cache.store(data, bucket_of(source), r.data, r.varies)
        return r.data

    def udp_query(self, data: bytes, source: str, bucket: bytes) -> bytes | None:
        """One UDP query off the fast path: cache (0x20, per-bucket), slow path, then RRL."""
        out = self.cache.lookup(data, bucket)
        if out is not None:
            self.stats.replies[("cached", "udp")] += 1
        else:
            out = self.slow(data, source, "udp", 512)
            if out is None:
                return None
        rrl = self.rrl
        # only replies that carry data are limited: errors (FORMERR, NOTIMP...) are small
        if rrl is not None and out[4:6] == b"\x00\x01" and out[3] & 0xF in (0, 3, 5):
            action = rrl.check(bucket, rrl_key(out), self._second)
            if action != SEND:
                self.stats.rrl["drop" if action == DROP else "slip"] += 1
                return None if action == DROP else truncated(out)
        return out

    # UDP ------------------------------------------------------------------------------
    def _readable(self, sock: socket.socket, batch: UdpBatch | None) -> None:
        """The socket has queries: serve a bounded number of batches, then yield."""
        self._second = int(time.monotonic())
        direct = self.rrl is None
        entries = self.cache.entries
        if batch is not None:
            hits = 0
            for _ in range(BATCHES_PER_WAKEUP):
                n, h = batch.serve(entries, self.udp_query, direct)
                hits += h
                if n < UDP_BATCH:
                    break
            if hits:
                self.stats.replies[("cached", "udp")] += hits
            return
        for _ in range(BATCHES_PER_WAKEUP * UDP_BATCH):
            try:
                data, addr = sock.recvfrom(MAX_UDP_QUERY)
            except BlockingIOError:
                return
            except OSError as e:  # e.g. ICMP port unreachable reported on the socket
                self.stats.errors[type(e).__name__] += 1
                continue
            out = self.udp_query(data, addr[0], bucket_of(addr[0]))
            if out is not None:
                try:
                    sock.sendto(out, addr)
                except OSError as e:
                    self.stats.errors[type(e).__name__] += 1

    async def serve(self) -> None:
        """Listen on UDP and TCP at our addresses until cancelled."""
        loop = asyncio.get_running_loop()
        port, reuse = self.rt.net.ports.dns, self.rt.net.dns.workers > 1
        freebind = bool(self.rt.machine.host_address)  # peers' addresses are not ours until taken
        batched = UdpBatch.available() and not self.rt.net.dns.portable_udp
        addresses = self.rt.net.service_addresses(self.rt.machine)
        servers = []
        try:
            for addr in addresses:
                sock = bound(addr, port, socket.SOCK_DGRAM, reuse_port=reuse, freebind=freebind, rcvbuf=4 * 2**20)
                self._udp.append(sock)
                loop.add_reader(sock.fileno(), self._readable, sock, UdpBatch(sock) if batched else None)
                tcp = bound(addr, port, socket.SOCK_STREAM, reuse_port=reuse, freebind=freebind)
                servers.append(await asyncio.start_server(self._tcp, sock=tcp))
            self.rt.log.info("listening", addresses=addresses, port=port)
            self.rt.ready("sockets")
            await asyncio.Future()
        finally:
            for server in servers:
                server.close()
            for sock in self._udp:
                loop.remove_reader(sock.fileno())
                sock.close()
            self._udp.clear()

    # TCP ------------------------------------------------------------------------------
    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._tcp_open >= self.rt.net.dns.tcp_max_connections:
            self.tcp_refused.inc()
            writer.close()
            return
        self._tcp_open += 1
        try:
            peer = writer.get_extra_info("peername")
            if not peer:  # reset before we got to it
                return
            source = peer[0]
            while True:
                async with asyncio.timeout(self.rt.net.dns.tcp_idle):
                    (n,) = struct.unpack("!H", await reader.readexactly(2))
                    data = await reader.readexactly(n)
                out = self.slow(data, source, "tcp", None)
                if out is None:
                    break
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._tcp_open -= 1
            writer.close()
