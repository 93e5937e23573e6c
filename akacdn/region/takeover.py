"""Intra-region IP takeover (pure): heartbeats and health in, address actions out.

"A live machine will automatically ARP over the IP address of a down machine." Each
region agent owns one `Takeover`; the shell feeds it heartbeats, its own health check
results and ticks, all stamped with a monotonic `now`, and carries out the returned
`Add` / `Release` / `Announce` actions (netlink, then a gratuitous ARP burst).

Theory of operation. The members are configured in one fixed order; each member owns
some service addresses. The buddy order of a member X is the members after X, wrapping
around, so every agent ranks the candidates for X's addresses the same way (X first).

- Alive. A peer is alive while its last heartbeat is younger than `dead_after` and
  says healthy; an unhealthy heartbeat makes it not-alive at once (no waiting for
  misses). We are alive while *settled*: our own checks have passed continuously for
  `recover_after` (or since a healthy start). The beacon's `healthy` flag is this
  settled state, so a failure is reported at once and a recovery only after
  `recover_after`: health flapping faster than that never moves an address back.
- Own addresses. Held from a healthy start. A settled owner keeps them; an owner that
  lost them (it released them while unhealthy) re-adds them once no reachable peer's
  heartbeat claims them any more, or `release_grace` after it settled (a buddy that
  never lets go). An unsettled owner keeps them until a live peer claims them, then
  releases, so there is no lasting dual holding.
- Other members' addresses. Never held while their owner is alive: the buddy releases
  first, and the owner adds when the claim is gone. While the owner is not alive, the
  first live member of its buddy order takes an address that no live peer claims.
  Holders are sticky: a returning member earlier in the buddy order does not take an
  address a live peer already serves (no churn).
- Dual claims (a partition heals): the owner wins if alive; otherwise the earlier
  member in the owner's buddy order wins. The loser releases. An unsettled holder
  yields to any live claimant and never adds.
- Start. The shell listens for about `dead_after` first (heartbeats are noted, not
  acted on). A healthy peer heard holding one of our addresses means a buddy covered
  for us while we were down: we start unsettled and prove ourselves for `recover_after`
  before it hands back. Otherwise a healthy start is settled at once (a cold region
  claims its own addresses without waiting).
- Boot grace. A peer not heard since our start is presumed alive, holding its own
  addresses, until `dead_after` has passed, so a booting region does not grab itself.

Every decision is recomputed from the state on each input and applied as the
difference to what we hold (releases first, then add + announce). The `events`
timeline (bounded by `Settings.history`, oldest dropped) records who was declared dead
or alive, what was taken or released, and why. Inputs are never rejected by raising:
bad heartbeats are dropped and counted in `ignored`; a `ValueError` escapes only from
the constructors (bad settings or membership).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    interval: float = 1.0  # seconds between our beacons (the shell's cadence)
    dead_after: float = 3.0  # silence that makes a peer dead
    recover_after: float = 10.0  # continuous health before a member counts as alive again
    release_grace: float = 5.0  # longest a settled owner waits for a buddy to let go
    history: int = 1000  # events kept in the timeline

    def __post_init__(self) -> None:
        if not 0 < self.interval < self.dead_after:
            raise ValueError("need 0 < interval < dead_after")
        if self.recover_after < 0 or self.release_grace < 0 or self.history < 1:
            raise ValueError("recover_after and release_grace must be >= 0, history >= 1")


class Member(msgspec.Struct, frozen=True):
    id: str
    addresses: tuple[str, ...] = ()  # the service addresses this machine owns


class Heartbeat(msgspec.Struct, frozen=True):
    sender: str
    incarnation: int  # boot id: changes when the agent restarts
    seq: int  # increases with every beacon of one incarnation
    healthy: bool  # settled: checks passing for recover_after
    holds: tuple[str, ...]  # addresses currently on the sender's interface


class Add(msgspec.Struct, frozen=True, tag=True):
    address: str


class Release(msgspec.Struct, frozen=True, tag=True):
    address: str


class Announce(msgspec.Struct, frozen=True, tag=True):
    address: str  # gratuitous ARP burst; always right after the Add


Action = Add | Release | Announce


class Event(msgspec.Struct, frozen=True):
    at: float
    kind: str  # started | declared_dead | declared_alive | took | released | healthy | unhealthy
    subject: str  # a member id or an address
    reason: str = ""


class PeerStatus(msgspec.Struct, frozen=True):
    alive: bool
    since: float  # when `alive` last changed (or our start)
    last_heard: float
    healthy: bool
    holds: frozenset[str]
    incarnation: int


@dataclass(slots=True)
class _Peer:
    holds: frozenset[str]  # presumed: its own addresses until heard
    incarnation: int | None = None
    seq: int = -1
    last_heard: float = 0.0  # our start time until heard
    healthy: bool = True
    reachable: bool = True
    alive: bool = True
    since: float = 0.0


@dataclass(slots=True)
class _Self:
    healthy_since: float | None = None  # start of the current passing run of checks
    settled: bool = False
    seq: int = 0
    started: bool = False
    holds: set[str] = field(default_factory=set)


class Takeover:
    """The takeover state of one agent. Single owner; every input returns actions."""

    def __init__(
        self, self_id: str, members: Sequence[Member], settings: Settings | None = None, incarnation: int = 0
    ) -> None:
        ids = [m.id for m in members]
        if len(set(ids)) != len(ids) or self_id not in ids:
            raise ValueError(f"member ids must be unique and include {self_id!r}: {ids}")
        self._owner: dict[str, str] = {}
        for m in members:
            for a in m.addresses:
                if self._owner.setdefault(a, m.id) != m.id:
                    raise ValueError(f"address {a} owned by both {self._owner[a]} and {m.id}")
        self.id = self_id
        self.incarnation = incarnation
        self.settings = settings or Settings()
        self._order = tuple(ids)
        self._index = {mid: i for i, mid in enumerate(ids)}
        self._peers = {m.id: _Peer(frozenset(m.addresses)) for m in members if m.id != self_id}
        self._me = _Self()
        self.events: deque[Event] = deque(maxlen=self.settings.history)
        self.ignored: Counter[str] = Counter()  # "unknown" sender, "stale" heartbeat

    # --- inputs ------------------------------------------------------------------------

    def start(self, now: float, healthy: bool = True) -> list[Action]:
        """Begin at `now`; `healthy`: our service passes its checks now.

        Assumes a clean interface (the shell removes stale service addresses at boot), and
        that the shell listened (`heard`) for about `dead_after` before. If a live, healthy
        peer was heard holding one of our addresses, we crashed and came back while a
        buddy covered for us: we start unsettled and prove ourselves for `recover_after`,
        and the buddy lets go first (no dual holding). Otherwise (a cold start of the
        region, or nobody covered) a healthy start counts as settled at once and we hold
        our own addresses; peers not heard get `dead_after` of boot grace.
        """
        self._me.started = True
        mine = {a for a, owner in self._owner.items() if owner == self.id}
        covering = sorted(
            pid
            for pid, p in self._peers.items()
            if p.incarnation is not None
            and p.healthy
            and p.holds & mine
            and now < p.last_heard + self.settings.dead_after
        )
        for p in self._peers.values():
            if p.incarnation is None:
                p.last_heard = now  # boot grace: presumed alive for dead_after
            p.since = now
        if not healthy:
            self._me.healthy_since, why = None, "checks fail"
        elif covering:
            self._me.healthy_since, why = now, f"covered by {', '.join(covering)}: proves itself first"
        else:
            self._me.healthy_since, why = now - self.settings.recover_after, "claims its addresses"
        self._event(now, "started", self.id, why)
        return self._decide(now)

    def heard(self, now: float, hb: Heartbeat) -> list[Action]:
        """A peer's heartbeat arrived. Unknown senders and stale beats are counted, not used.
        Before `start` it is only noted (what `start` decides by), never acted on."""
        p = self._peers.get(hb.sender)
        if p is None:
            self.ignored["unknown"] += 1
            return []
        if hb.incarnation == p.incarnation:
            stale = hb.seq <= p.seq
        else:
            # A boot id need not grow (it may be random): a new one is taken at once
            # unless the old one is still beating, in which case this is a leftover.
            beating = now < p.last_heard + self.settings.dead_after
            stale = p.incarnation is not None and beating and hb.incarnation < p.incarnation
        if stale:
            self.ignored["stale"] += 1
            return []
        p.incarnation, p.seq, p.last_heard = hb.incarnation, hb.seq, now
        p.healthy, p.holds = hb.healthy, frozenset(hb.holds)
        return self._decide(now) if self._me.started else []

    def own_health(self, now: float, healthy: bool) -> list[Action]:
        """Our service checks passed (or not). A failure counts at once, a pass after recover_after."""
        if not healthy:
            self._me.healthy_since = None
        elif self._me.healthy_since is None:
            self._me.healthy_since = now
        return self._decide(now)

    def tick(self, now: float) -> list[Action]:
        """Time passed: silent peers die, we settle, grace periods end."""
        return self._decide(now)

    # --- outputs -----------------------------------------------------------------------

    def beacon(self, now: float) -> Heartbeat:
        """The heartbeat to send now (each call takes the next sequence number)."""
        self._me.seq += 1
        return Heartbeat(self.id, self.incarnation, self._me.seq, self._settled(now), tuple(sorted(self._me.holds)))

    @property
    def started(self) -> bool:
        return self._me.started

    @property
    def holds(self) -> frozenset[str]:
        return frozenset(self._me.holds)

    @property
    def alive(self) -> bool:
        """Whether we count as a live member (settled) as of the last input."""
        return self._me.settled

    def peers(self) -> dict[str, PeerStatus]:
        """What we believe about every peer, as of the last input."""
        return {
            pid: PeerStatus(
                p.alive, p.since, p.last_heard, p.healthy, p.holds, -1 if p.incarnation is None else p.incarnation
            )
            for pid, p in self._peers.items()
        }

    def next_deadline(self) -> float | None:
        """When a tick could change something without any input (None: nothing pending)."""
        s = self.settings
        times = [p.last_heard + s.dead_after for p in self._peers.values() if p.reachable]
        since = self._me.healthy_since
        if since is not None and not self._me.settled:
            times.append(since + s.recover_after)
        elif since is not None and any(self._owner[a] == self.id and a not in self._me.holds for a in self._owner):
            times.append(since + s.recover_after + s.release_grace)
        return min(times, default=None)

    # --- decisions ---------------------------------------------------------------------

    def _settled(self, now: float) -> bool:
        since = self._me.healthy_since
        return since is not None and now >= since + self.settings.recover_after

    def _refresh(self, now: float) -> None:
        """Bring liveness up to `now`, logging every change with its reason."""
        if not self._me.started:
            raise RuntimeError("Takeover.start() must come first")
        for pid, p in self._peers.items():
            p.reachable = now < p.last_heard + self.settings.dead_after
            alive = p.reachable and p.healthy
            if alive != p.alive:
                p.alive, p.since = alive, now
                why = "heard healthy" if alive else "reported unhealthy" if p.reachable else "silent"
                self._event(now, "declared_alive" if alive else "declared_dead", pid, why)
        settled = self._settled(now)
        if settled != self._me.settled:
            self._me.settled = settled
            self._event(
                now, "healthy" if settled else "unhealthy", self.id, "checks pass" if settled else "checks fail"
            )

    def _decide(self, now: float) -> list[Action]:
        """Recompute what we should hold and return the difference as actions."""
        self._refresh(now)
        releases: list[tuple[str, str]] = []
        adds: list[tuple[str, str]] = []
        for a, owner in self._owner.items():
            held = a in self._me.holds
            want, why = self._want(now, a, owner, held)
            if want != held:
                (adds if want else releases).append((a, why))
        out: list[Action] = []
        for a, why in releases:  # let go before grabbing: fewer moments of dual holding
            self._me.holds.discard(a)
            out.append(Release(a))
            self._event(now, "released", a, why)
        for a, why in adds:
            self._me.holds.add(a)
            out += [Add(a), Announce(a)]
            self._event(now, "took", a, why)
        return out

    def _want(self, now: float, a: str, owner: str, held: bool) -> tuple[bool, str]:
        """Whether we should hold address `a`, and why (the reason matters when it changes)."""
        me = self._me.settled
        live = [pid for pid, p in self._peers.items() if p.alive and a in p.holds]
        if owner == self.id:
            if held:
                return (True, "") if me or not live else (False, f"unhealthy, {live[0]} serves it")
            if not me:
                return False, ""
            if not any(p.reachable and a in p.holds for p in self._peers.values()):
                return True, "own, unclaimed"
            since = self._me.healthy_since
            assert since is not None  # settled implies a passing run
            return now >= since + self.settings.recover_after + self.settings.release_grace, "own, release grace over"
        if self._peers[owner].alive:
            return False, f"owner {owner} alive"  # serving or reclaiming: the buddy goes first
        if held:
            if not me:
                return (False, f"unhealthy, {live[0]} serves it") if live else (True, "")
            better = [pid for pid in live if self._rank(pid, owner) < self._rank(self.id, owner)]
            return (False, f"outranked by {better[0]}") if better else (True, "")
        if me and not live and self._first_live_buddy(owner) == self.id:
            return True, f"owner {owner} {'unhealthy' if self._peers[owner].reachable else 'silent'}"
        return False, ""

    def _rank(self, member: str, owner: str) -> int:
        """Place of `member` among the candidates for `owner`'s addresses (the owner is 0)."""
        return (self._index[member] - self._index[owner]) % len(self._order)

    def _first_live_buddy(self, owner: str) -> str | None:
        n, i = len(self._order), self._index[owner]
        for k in range(1, n):
            m = self._order[(i + k) % n]
            if self._me.settled if m == self.id else self._peers[m].alive:
                return m
        return None

    def _event(self, now: float, kind: str, subject: str, reason: str) -> None:
        self.events.append(Event(now, kind, subject, reason))
