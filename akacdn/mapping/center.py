"""The mapping-center daemon: hears heartbeats, builds signed maps and, while it leads,
publishes them; keeps the purge journal; answers operators.

Several centers run; one leads (`leadership`, `election`): the others build the same
maps as a hot standby and publish none. A new leader publishes under a new term, above
every term seen, persisted first, so consumers take its maps over any older ones and a
restarted old leader never publishes over a newer one. After a start a center waits one
`dead_after` period (warm-up) before building, so it never builds a map from a partial
view of who is alive.

What goes into the maps (`builder`, `guard`): live machines, minus those an operator
suspended (`suspensions`, `operator`) and those flap damping holds out; a low-level map
that would leave no region serving, or drop more than `[mapping] max_drop` of the
capacity at once (until that lasts `drop_confirm`), is held (alarm event, metric).

Maps are rebuilt every `map_interval`, at once when a machine comes back to life or turns
dead (the shell sleeps until the first machine's `dead_after` runs out), but at most
five times a second; while leading, a map that changed is published on its topic
at once (chunked over the messaging network however large) and served over HTTP
(`messaging.transport`). Every `map_interval` an `Announce` names the versions held (the
leader's) and the journal's head, so a consumer that lost a map or a purge fetches it.

Measured mapping (`steering`): the edges' probe rounds (topic `probe`) and their demand
per client network (in their reports) are kept by every center; every `assign_interval`
the allocator moves client networks between regions (for a clearly better path, or to
shed a region over its target load), and the maps carry the result.

Purges: an edge's purge request (topic `purge.request`) is appended to the journal
(fsynced) and published as a journal `Entry` on `purge`; edges that were down or
missed it read the journal from their last sequence over HTTP.
"""

from __future__ import annotations

import asyncio
import gc
import time

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..messaging.client import Message, MessagingClient
from ..messaging.journal import Journal
from ..messaging.journal import encode as encode_entry
from ..messaging.transport import Documents, center_routes
from ..runtime import Runtime, woken
from .builder import Liveness, MapBook, build
from .guard import Damping, MapGuard
from .leadership import Leadership
from .maps import AnyMap, LowMap, sign, topic
from .messages import (
    ANNOUNCE_TOPIC,
    CENTER_TOPIC,
    HEARTBEAT_TOPIC,
    PROBE_TOPIC,
    PURGE_REQUEST_TOPIC,
    PURGE_TOPIC,
    REGION_TOPIC,
    REPORT_TOPIC,
    ROLL_TOPIC,
    Announce,
    CenterStatus,
    Heartbeat,
    ProbeReport,
    RegionReport,
    Report,
)
from .operator import operator_routes
from .releases import Releases
from .rollwatch import RollWatch
from .steering import Steering
from .suspensions import Suspensions

_hb = msgspec.msgpack.Decoder(Heartbeat)
_report = msgspec.msgpack.Decoder(Report)
_region = msgspec.msgpack.Decoder(RegionReport)
_probe = msgspec.msgpack.Decoder(ProbeReport)


def load_private_key(path: str) -> Ed25519PrivateKey:
    with open(path) as f:
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(f.read().strip()))


def _damping(rt: Runtime) -> Damping:
    m = rt.net.mapping
    return Damping(m.flap_penalty, m.flap_suppress, m.flap_reuse, m.flap_half_life, m.flap_max_suppress)


class Center:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.key = load_private_key(rt.machine.key_file)
        self.book: MapBook | None = None  # while we lead: the maps of our term
        self.liveness = Liveness(rt.net)
        rt.on_reload(self.liveness.configure)
        self.steering = Steering(rt.net)
        rt.on_reload(self.steering.configure)
        rt.on_reload(lambda _: gc.freeze())  # (the new config, as at start)
        self.live: set[str] = set()
        self.out: dict[str, str] = {}  # machines held out of the maps, and why
        self.damping = _damping(rt)
        self.guard = MapGuard(rt.net.mapping.max_drop, rt.net.mapping.drop_confirm)
        self.held: dict[str, str] = {}  # maps held back by the guard, and why
        self.wake = asyncio.Event()
        self.urgent = asyncio.Event()  # a rebuild that may not wait for the rate limit
        self.signed: dict[str, bytes] = {}
        self.changed: list[str] = []  # maps built since the last publish
        self.docs = Documents()
        self.purges = Journal(self.rt.state_dir / "purge.journal")
        self.suspensions = Suspensions(self.rt.state_dir / "suspensions.json")
        self.rolls = RollWatch(rt)  # rolls, the in-place mode, quarantines
        self.releases = Releases(rt, self.docs)  # zoned releases (while leading)
        topics = [HEARTBEAT_TOPIC, REPORT_TOPIC, REGION_TOPIC, PURGE_REQUEST_TOPIC, CENTER_TOPIC, ROLL_TOPIC]
        topics.append(PROBE_TOPIC)
        self.client = MessagingClient(rt, topics, self.on_message)
        self.leadership = Leadership(rt, self.client, self.liveness, self.suspensions, self.lead, self.resign)
        self.leadership.status_extra = lambda: {**self.rolls.status_extra(), **self.releases.status_extra()}
        self.leadership.on_leader_status = self.leader_status
        self.serial_requests = rt.counter(
            "akacdn_serial_requests", "Requests the edges served, per serial and cache outcome", ("serial", "outcome")
        )
        self.serial_bytes = rt.counter("akacdn_serial_bytes", "Bytes the edges sent, per serial", ("serial",))
        self.serial_errors = rt.counter("akacdn_serial_errors", "5xx the edges answered, per serial", ("serial",))
        self.serial_origin = rt.counter(
            "akacdn_serial_origin_requests", "Requests the edges sent to the origin, per serial", ("serial",)
        )
        self.serial_tunneled = rt.counter(
            "akacdn_serial_tunneled_requests", "Requests an edge got from another edge, per serial", ("serial",)
        )
        self.serial_offload = rt.gauge(
            "akacdn_serial_origin_offload", "1 - origin requests / client requests since start, per serial", ("serial",)
        )
        self._offload: dict[str, list[int]] = {}  # serial -> [client requests, origin requests]
        self.published = rt.counter("akacdn_maps_published", "Maps sent to the relays", ("map",))
        self.journaled = rt.counter("akacdn_purges_journaled", "Purge requests appended to the journal")
        self.live_gauge = rt.gauge("akacdn_live_machines", "Machines heard healthy", ("role",))
        self.refused = rt.counter("akacdn_heartbeats_refused", "Heartbeats refused", ("reason",))
        self.seq_gauge = rt.gauge("akacdn_map_built_seq", "Sequence of the newest map built", ("map",))
        self.size_gauge = rt.gauge("akacdn_map_bytes", "Size of the newest signed map", ("map",))
        self.servers_gauge = rt.gauge("akacdn_map_servers", "Edges in the newest low-level map")
        self.held_gauge = rt.gauge("akacdn_map_held", "1 while the guard holds a map back", ("map",))
        self.out_gauge = rt.gauge("akacdn_machines_out", "Machines held out of the maps", ("why",))
        self.probes_taken = rt.counter("akacdn_probe_reports", "Probe rounds taken from the edges")
        self.moves = rt.counter("akacdn_mapping_moves", "Client networks moved to another region", ("why",))
        self.routes_gauge = rt.gauge("akacdn_mapping_routes", "Client networks the low-level map routes")
        self.region_load = rt.gauge(
            "akacdn_region_load_ratio", "A region's load over its capacity (load-managed regions)", ("region",)
        )

    # leadership -------------------------------------------------------------------------
    def lead(self, term: int) -> None:
        """We lead under `term` (persisted): our maps from now on carry it."""
        self.book = MapBook(term)
        self.signed.clear()
        self.changed.clear()
        self.wake.set()

    def leader_status(self, cs: CenterStatus) -> None:
        """What the leader carries beside the election: quarantines, the release."""
        self.rolls.adopt(cs)
        if self.book is None:
            self.releases.adopt(cs.release, cs.status.center)

    def resign(self, reason: str) -> None:
        self.book = None
        self.changed.clear()
        for key in list(self.held):  # only a leader holds maps back; a follower's gauge would lie
            self._hold(key, None)

    def on_message(self, env: Message) -> None:
        if env.topic == CENTER_TOPIC:
            self.leadership.heard(env)
            return
        if env.topic == PURGE_REQUEST_TOPIC:
            self.on_purge(env)
            return
        if env.topic == REPORT_TOPIC:
            self.on_report(env)
            return
        if env.topic == REGION_TOPIC:
            self.on_region(env)
            return
        if env.topic == PROBE_TOPIC:
            self.on_probe(env)
            return
        if env.topic == ROLL_TOPIC:
            note = self.rolls.on_roll(env)
            if note is not None:
                if note.kind == "rolled" and self.book is not None:
                    self.releases.rolled(note.machine)
                    version = self.rolls.core.version
                    self.rolls.decide(self.book.term)
                    if self.rolls.core.version != version:  # a new quarantine: into the maps now
                        self.urgent.set()
                self.wake.set()
            return
        hb = _hb.decode(env.body)
        reason = self.liveness.heard(env.sender, hb, time.monotonic())
        if reason:
            self.refused.labels(reason).inc()
            self.rt.log.limited("heartbeat_refused", reason=reason, sender=env.sender)
        else:
            if self.book is not None:
                self.releases.heard(hb)
            if hb.healthy and hb.machine not in self.live:
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
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            self.refused.labels("bad_region_report").inc()
            return
        down = self.liveness.reported(env.sender, report, time.monotonic())
        if down:
            self.rt.record("reported_down", by=report.machine, down=down)
            self.wake.set()

    def on_probe(self, env: Message) -> None:
        """An edge's probe round: into the measurements (forged or foreign ones refused)."""
        try:
            report = _probe.decode(env.body)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            self.refused.labels("bad_probe_report").inc()
            return
        why = self.steering.measurements.probed(env.sender, report, time.monotonic())
        if why is not None:
            self.refused.labels(f"probe_{why}").inc()
            self.rt.log.limited("probe_refused", reason=why, sender=env.sender)
        else:
            self.probes_taken.inc()

    def on_report(self, env: Message) -> None:
        report = _report.decode(env.body)
        if report.machine != env.sender:
            self.refused.labels("report_sender_mismatch").inc()
            return
        if report.clients:
            self.steering.measurements.demanded(report.machine, report.clients, report.interval, time.monotonic())
        if self.book is not None:
            self.releases.report(report)
        for s in report.serials:
            serial = str(s.serial)
            self.serial_requests.labels(serial, "hit").inc(s.hits)
            self.serial_requests.labels(serial, "miss").inc(s.misses)
            self.serial_bytes.labels(serial).inc(s.bytes)
            self.serial_errors.labels(serial).inc(s.errors)
            self.serial_origin.labels(serial).inc(s.origin)
            self.serial_tunneled.labels(serial).inc(s.tunneled)
            o = self._offload.setdefault(serial, [0, 0])
            o[0] += s.requests - s.tunneled
            o[1] += s.origin
            if o[0] > 0:
                self.serial_offload.labels(serial).set(round(1.0 - o[1] / o[0], 6))

    def rebuild(self) -> None:
        now, net = time.monotonic(), self.rt.net
        live = self.liveness.live(now, net.timing.dead_after)
        if set(live) != self.live:
            up, down = sorted(set(live) - self.live), sorted(self.live - set(live))
            self.rt.record("live_set_changed", up=up, down=down)
            if net.mapping.damping:
                for mid in down:  # like BGP, a withdrawal is a flap (its return costs nothing more)
                    if self.damping.changed(mid, now):
                        self.rt.record("damped", machine=mid, penalty=round(self.damping.penalty_of(mid, now)))
            self.live = set(live)
        self.damping.forget(now)
        for role in ("edge", "llns"):
            self.live_gauge.labels(role).set(sum(1 for hb in live.values() if hb.role == role))
        out = self.suspensions.machines(net)
        damped = {mid: "damped: flapping" for mid in live if mid not in out and self.damping.damped(mid, now)}
        self.out = {**out, **damped}
        self.out_gauge.labels("suspended").set(len(out))
        self.out_gauge.labels("damped").set(len(damped))
        self.rolls.decide(self.book.term if self.book is not None else None)
        if self.book is not None:  # zoning stops while the network recovers in place
            self.releases.tick(frozen=self.rolls.core.in_place)
        self.steer(now, live)
        defaults = self.steering.defaults(live, self.out)
        top, lows = build(net, live, time.time(), self.out, self.rolls.quarantines(), self.steering.routes, defaults)
        if self.book is None:
            return  # following: the same maps are built (hot standby), none is published
        fresh: list[AnyMap] = [top] if top else []
        for low in lows:
            last = self.book.maps.get("low")
            why = self.guard.check(now, low, last if isinstance(last, LowMap) else None)
            self._hold("low", why)
            if why is None:
                fresh.append(low)
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

    def steer(self, now: float, live: dict[str, Heartbeat]) -> None:
        """An allocation cycle when one is due (leader and followers alike: a follower that
        takes over carries on from its own, equally measured, assignment)."""
        if not self.steering.due(now):
            return
        alloc = self.steering.assign(now, live, self.out)
        if self.book is None:
            return  # a follower's moves are its standby's: the leader's count and are logged
        for mv in alloc.moves:
            self.moves.labels(mv.why).inc()
            self.rt.record("network_moved", network=mv.prefix, src=mv.src, dst=mv.dst, why=mv.why)
        self.routes_gauge.set(len(alloc.routes))
        for r in self.steering.regions(live, self.out):
            if 0 < r.capacity < float("inf"):
                self.region_load.labels(r.id).set(round(r.load / r.capacity, 4))

    def _hold(self, key: str, why: str | None) -> None:
        if why is not None and self.held.get(key) != why:
            self.rt.record("map_held", map=key, reason=why)  # the alarm
        elif why is None and key in self.held:
            self.rt.record("map_released", map=key)
        if why is None:
            self.held.pop(key, None)
        else:
            self.held[key] = why
        self.held_gauge.labels(key).set(0 if why is None else 1)

    def publish(self) -> None:
        """While leading: changed maps at once. Always: what we hold (journals; maps)."""
        if self.book is not None:
            for key in dict.fromkeys(self.changed):
                self.client.publish(topic(self.book.maps[key]), self.signed[key])
                self.published.labels(key).inc()
        self.changed.clear()
        self.announce()

    def announce(self) -> None:
        maps = {k: (m.version[0], m.version[1]) for k, m in self.book.maps.items()} if self.book else {}
        journals = {"purge": (self.purges.id, self.purges.head)}
        a = Announce(self.rt.machine.id, maps, journals)
        if self.book is not None:  # the leader's orders: the recovery mode
            mode = "in_place" if self.rolls.core.in_place else ""
            a = msgspec.structs.replace(a, term=self.book.term, mode=mode, release=self.releases.order())
        self.client.publish(ANNOUNCE_TOPIC, msgspec.msgpack.encode(a))

    async def run(self) -> None:
        t = self.rt.net.timing
        self.rt.not_ready("warmup", f"listening to heartbeats for {t.dead_after}s")
        await self.client.start()
        self.rt.record("started", term_seen=self.leadership.persisted)
        routes = center_routes(self.rt, self.docs, {"purge": self.purges})
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.rt.serve_management(lambda app: (routes(app), operator_routes(self, app))))
                tg.create_task(self.rt.watchdog())
                tg.create_task(self.client.run())
                tg.create_task(self.leadership.run())
                tg.create_task(self.releases.run())
                await asyncio.sleep(t.dead_after)
                # the config (at the paper's scale, ~1.6 M objects) stays: out of the collector's
                # full passes, which otherwise cost ~0.3 s in whichever build they land
                gc.freeze()
                self.announce()  # the purge journal is served from the start: say so
                self.rt.ready("warmup")
                gap = min(0.2, t.map_interval / 5)  # at most 5 builds a second, however many wake us
                while True:
                    self.wake.clear()  # a machine coming back during the build or the gap wakes the next
                    self.rebuild()
                    self.publish()
                    await woken(self.urgent, gap)  # a quarantine does not wait out the gap
                    self.urgent.clear()
                    # the next map interval, or the moment a machine turns dead, if sooner
                    expiry = self.liveness.next_expiry(self.live, t.dead_after)
                    until = t.map_interval - gap
                    if expiry is not None:
                        until = min(until, max(0.0, expiry - time.monotonic()) + 0.01)
                    # a quarantine or the in-place mode ends; a release phase may pass
                    for due in (self.rolls.core.next_deadline(), self.releases.next_deadline()):
                        if due is not None:
                            until = min(until, max(0.0, due - time.time()))
                    until = min(until, max(0.0, self.steering.next_assign - time.monotonic()))  # an allocation cycle
                    await woken(self.wake, until)
        finally:
            self.client.close()


async def main(rt: Runtime) -> None:
    await Center(rt).run()
