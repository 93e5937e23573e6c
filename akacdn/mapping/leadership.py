"""A mapping center's part in the election (asyncio shell over `election.Election`).

Every `[election] interval` it measures the center's connectivity (`connectivity`),
ticks the core, carries out its decisions and sends the center's `CenterStatus` (the
election status; from the leader, the suspensions too) on topic `center`. The highest
term seen is persisted in `<state>/term` (fsynced before a new leader publishes
anything under its term), so a restarted center never leads under an old term.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec

from ..config import Network
from ..messaging.client import Message, MessagingClient
from ..runtime import Runtime, atomic_write, read_file
from .builder import Liveness
from .election import Center, Election, Lead, Resign, Settings
from .messages import CENTER_TOPIC, CenterStatus
from .suspensions import Suspensions

_status = msgspec.msgpack.Decoder(CenterStatus)


def connectivity(net: Network, heard: set[str], relays_alive: int) -> float:
    """The share of the network a center hears (0..1): the mean of the shares of regions
    (any machine of it heard), nameservers (LLNS and TLNS) and relays."""
    machines = {m.id: m for m in net.machines}
    parts = []
    if net.regions:
        regions = {machines[m].region for m in heard if m in machines and machines[m].region}
        parts.append(len(regions & {r.id for r in net.regions}) / len(net.regions))
    nameservers = [m.id for m in net.machines if m.role in ("llns", "tlns")]
    if nameservers:
        parts.append(sum(1 for m in nameservers if m in heard) / len(nameservers))
    relays = net.by_role("relay")
    if relays:
        parts.append(min(relays_alive, len(relays)) / len(relays))
    return sum(parts) / len(parts) if parts else 0.0


def election_settings(net: Network) -> Settings:
    e = net.election
    return Settings(interval=e.interval, lease=e.lease, min_score=e.min_score, margin=e.margin, confirm=e.confirm)


class Leadership:
    def __init__(
        self,
        rt: Runtime,
        client: MessagingClient,
        liveness: Liveness,
        suspensions: Suspensions,
        on_lead: Callable[[int], None],
        on_resign: Callable[[str], None],
    ) -> None:
        self.rt, self.client, self.liveness, self.suspensions = rt, client, liveness, suspensions
        self.on_lead, self.on_resign = on_lead, on_resign
        # the rest of what a leader's status carries (quarantines, the release), both ways
        self.status_extra: Callable[[], dict[str, Any]] = dict
        self.on_leader_status: Callable[[CenterStatus], None] = lambda _: None
        self.path = rt.state_dir / "term"
        raw = read_file(self.path)
        self.persisted = int(raw.decode().strip() or 0) if raw else 0
        centers = [Center(m.id, m.preference) for m in rt.net.by_role("mapper")]
        self.core = Election(rt.machine.id, centers, election_settings(rt.net), self.persisted, time.monotonic())
        self.leader_gauge = rt.gauge("akacdn_center_leader", "1 while this center leads")
        self.term_gauge = rt.gauge("akacdn_center_term", "The term this center leads under (0: following)")
        self.score_gauge = rt.gauge("akacdn_center_connectivity", "Share of the network this center hears")

    def _persist(self, term: int) -> None:
        if term > self.persisted:
            atomic_write(self.path, f"{term}\n".encode())
            self.persisted = term

    def heard(self, env: Message) -> None:
        try:
            cs = _status.decode(env.body)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            self.rt.log.limited("center_status_refused", sender=env.sender)
            return
        if cs.status.center != env.sender:
            return  # a center speaks only for itself
        if cs.status.leader == cs.status.center:
            if self.suspensions.adopt(cs.suspensions_version, cs.suspensions):
                self.rt.record("suspensions_adopted", version=list(cs.suspensions_version), by=env.sender)
            self.on_leader_status(cs)
        self._do(self.core.heard(time.monotonic(), cs.status))

    def score(self, now: float) -> float:
        heard = set(self.liveness.heard_within(now, self.rt.net.timing.dead_after))
        return connectivity(self.rt.net, heard, len(self.client.health.alive(self.client.relays, now)))

    def _do(self, decisions: list[Lead | Resign]) -> None:
        for d in decisions:
            if isinstance(d, Lead):
                self._persist(d.term)  # durable before a map goes out under it
                self.on_lead(d.term)
            else:
                self.on_resign(d.reason)
        self._persist(self.core.seen)
        while self.core.events:
            e = self.core.events.popleft()
            self.rt.record(f"election_{e.kind}", subject=e.subject, reason=e.reason)
        self.leader_gauge.set(1 if self.core.leading else 0)
        self.term_gauge.set(self.core.term)

    def send_status(self) -> None:
        if self.core.leading:
            extra = self.status_extra()
            cs = CenterStatus(self.core.status(), self.suspensions.version, self.suspensions.listed(), **extra)
        else:
            cs = CenterStatus(self.core.status())
        self.client.publish(CENTER_TOPIC, msgspec.msgpack.encode(cs))

    async def run(self) -> None:
        """Until cancelled: tick, decide, tell the others."""
        interval = self.rt.net.election.interval
        while True:
            now = time.monotonic()
            score = self.score(now)
            self.score_gauge.set(score)
            self._do(self.core.tick(now, score))
            self.send_status()
            await asyncio.sleep(interval)
