"""The mapping-center daemon: hears heartbeats, builds and publishes signed maps, and
keeps the purge journal.

The leader term is persisted and bumped at every start, so maps from a restarted center
are newer than anything it published before. After a start the center waits one
`dead_after` period (warm-up) before publishing, so it never publishes a map built
from a partial view of who is alive. Maps are rebuilt every `map_interval` (at once
when a machine comes back to life, but at most five times a second); a map that
changed is published on its topic at once (chunked over the messaging network however
large) and served over HTTP (`messaging.transport`). Every `map_interval` an `Announce` names the versions held and
the journal's head, so a consumer that lost a map or a purge fetches it over HTTP.

Purges: an edge's purge request (topic `purge.request`) is appended to the journal
(fsynced) and published as a journal `Entry` on `purge`; edges that were down or
missed it read the journal from their last sequence over HTTP.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..messaging.client import Message, MessagingClient
from ..messaging.journal import Journal
from ..messaging.journal import encode as encode_entry
from ..messaging.transport import Documents, center_routes
from ..runtime import Runtime, atomic_write, read_file, woken
from .builder import Liveness, MapBook, build
from .maps import AnyMap, LowMap, sign, topic
from .messages import (
    ANNOUNCE_TOPIC,
    HEARTBEAT_TOPIC,
    PURGE_REQUEST_TOPIC,
    PURGE_TOPIC,
    REGION_TOPIC,
    REPORT_TOPIC,
    Announce,
    Heartbeat,
    RegionReport,
    Report,
)

_hb = msgspec.msgpack.Decoder(Heartbeat)
_report = msgspec.msgpack.Decoder(Report)
_region = msgspec.msgpack.Decoder(RegionReport)


def load_private_key(path: str) -> Ed25519PrivateKey:
    with open(path) as f:
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(f.read().strip()))


def next_term(rt: Runtime) -> int:
    path = rt.state_dir / "term"
    raw = read_file(path)
    term = int(raw.decode().strip() or 0) + 1 if raw else 1
    atomic_write(path, f"{term}\n".encode())
    return term


class Center:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.key = load_private_key(rt.machine.key_file)
        self.term = next_term(rt)
        self.book = MapBook(self.term)
        self.liveness = Liveness(rt.net)
        rt.on_reload(self.liveness.configure)
        self.live: set[str] = set()
        self.wake = asyncio.Event()
        self.signed: dict[str, bytes] = {}
        self.changed: list[str] = []  # maps built since the last publish
        self.docs = Documents()
        self.purges = Journal(self.rt.state_dir / "purge.journal")
        topics = [HEARTBEAT_TOPIC, REPORT_TOPIC, REGION_TOPIC, PURGE_REQUEST_TOPIC]
        self.client = MessagingClient(rt, topics, self.on_message)
        self.serial_requests = rt.counter(
            "akacdn_serial_requests", "Requests the edges served, per serial and cache outcome", ("serial", "outcome")
        )
        self.serial_bytes = rt.counter("akacdn_serial_bytes", "Bytes the edges sent, per serial", ("serial",))
        self.serial_errors = rt.counter("akacdn_serial_errors", "5xx the edges answered, per serial", ("serial",))
        self.published = rt.counter("akacdn_maps_published", "Maps sent to the relays", ("map",))
        self.journaled = rt.counter("akacdn_purges_journaled", "Purge requests appended to the journal")
        self.live_gauge = rt.gauge("akacdn_live_machines", "Machines heard healthy", ("role",))
        self.refused = rt.counter("akacdn_heartbeats_refused", "Heartbeats refused", ("reason",))
        self.seq_gauge = rt.gauge("akacdn_map_built_seq", "Sequence of the newest map built", ("map",))
        self.size_gauge = rt.gauge("akacdn_map_bytes", "Size of the newest signed map", ("map",))
        self.servers_gauge = rt.gauge("akacdn_map_servers", "Edges in the newest low-level map")

    def on_message(self, env: Message) -> None:
        if env.topic == PURGE_REQUEST_TOPIC:
            self.on_purge(env)
            return
        if env.topic == REPORT_TOPIC:
            self.on_report(env)
            return
        if env.topic == REGION_TOPIC:
            self.on_region(env)
            return
        hb = _hb.decode(env.body)
        reason = self.liveness.heard(env.sender, hb, time.monotonic())
        if reason:
            self.refused.labels(reason).inc()
            self.rt.log.limited("heartbeat_refused", reason=reason, sender=env.sender)
        elif hb.healthy and hb.machine not in self.live:
            self.wake.set()

    def on_purge(self, env: Message) -> None:
        """Journal an edge's purge (durably), then tell every edge."""
        entry = self.purges.append(env.body, time.time())
        self.journaled.inc()
        self.rt.record("purge_journaled", seq=entry.seq, by=env.sender)
        self.client.publish(PURGE_TOPIC, encode_entry(entry))

    def on_region(self, env: Message) -> None:
        """A region agent reports dead peers: rebuild at once without them."""
        try:
            report = _region.decode(env.body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.refused.labels("bad_region_report").inc()
            return
        down = self.liveness.reported(env.sender, report, time.monotonic())
        if down:
            self.rt.record("reported_down", by=report.machine, down=down)
            self.wake.set()

    def on_report(self, env: Message) -> None:
        report = _report.decode(env.body)
        if report.machine != env.sender:
            self.refused.labels("report_sender_mismatch").inc()
            return
        for s in report.serials:
            serial = str(s.serial)
            self.serial_requests.labels(serial, "hit").inc(s.hits)
            self.serial_requests.labels(serial, "miss").inc(s.misses)
            self.serial_bytes.labels(serial).inc(s.bytes)
            self.serial_errors.labels(serial).inc(s.errors)

    def rebuild(self) -> None:
        now = time.monotonic()
        live = self.liveness.live(now, self.rt.net.timing.dead_after)
        if set(live) != self.live:
            self.rt.record(
                "live_set_changed",
                up=sorted(set(live) - self.live),
                down=sorted(self.live - set(live)),
            )
            self.live = set(live)
        for role in ("edge", "llns"):
            self.live_gauge.labels(role).set(sum(1 for hb in live.values() if hb.role == role))
        top, lows = build(self.rt.net, live, time.time())
        fresh: list[AnyMap] = ([top] if top else []) + list(lows)
        for m in self.book.update(fresh):
            self.signed[m.key] = sign(self.key, self.rt.machine.id, m)
            self.docs.put(m.key, m.version, self.signed[m.key])
            self.changed.append(m.key)
            self.seq_gauge.labels(m.key).set(m.version[1])
            self.size_gauge.labels(m.key).set(len(self.signed[m.key]))
            if isinstance(m, LowMap):
                self.servers_gauge.set(sum(len(r.servers) for r in m.regions))
            size = len(self.signed[m.key])
            self.rt.record("map_built", map=m.key, term=m.version[0], seq=m.version[1], bytes=size)

    def publish(self) -> None:
        """Changed maps at once; then the announcement of what we hold."""
        for key in dict.fromkeys(self.changed):
            self.client.publish(topic(self.book.maps[key]), self.signed[key])
            self.published.labels(key).inc()
        self.changed.clear()
        self.announce()

    def announce(self) -> None:
        maps = {k: (m.version[0], m.version[1]) for k, m in self.book.maps.items()}
        journals = {"purge": (self.purges.id, self.purges.head)}
        self.client.publish(ANNOUNCE_TOPIC, msgspec.msgpack.encode(Announce(self.rt.machine.id, maps, journals)))

    async def run(self) -> None:
        t = self.rt.net.timing
        self.rt.not_ready("warmup", f"listening to heartbeats for {t.dead_after}s")
        await self.client.start()
        self.rt.record("started", term=self.term)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.rt.serve_management(center_routes(self.rt, self.docs, {"purge": self.purges})))
                tg.create_task(self.rt.watchdog())
                tg.create_task(self.client.run())
                await asyncio.sleep(t.dead_after)
                self.announce()  # the purge journal is served from the start: say so
                self.rt.ready("warmup")
                gap = min(0.2, t.map_interval / 5)  # at most 5 builds a second, however many wake us
                while True:
                    self.wake.clear()  # a machine coming back during the build or the gap wakes the next
                    self.rebuild()
                    self.publish()
                    await asyncio.sleep(gap)
                    await woken(self.wake, t.map_interval - gap)
        finally:
            self.client.close()


async def main(rt: Runtime) -> None:
    await Center(rt).run()
