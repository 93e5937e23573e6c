"""Which mapping center leads (pure): connectivity scores in, leadership decisions out.

"Leadership evaluation can depend on many factors including machine status,
connectivity to other machines in the network, or even a preference to run the leader
in a region with additional monitoring capabilities" (the paper, §3.3). Each center owns
one `Election`; its shell feeds it the other centers' `Status` messages (`heard`) and,
every `interval`, its own connectivity score (`tick`: the fraction of regions,
nameservers and relays it hears), and carries out what comes back: `Lead(term)` (persist
the term, then publish maps under it) or `Resign(reason)` (stop publishing).

Theory of operation. Centers are configured in one order; center i of N takes terms
t with t mod N = i, so two centers never lead under the same term and two different
maps can never carry the same (term, seq). Every center remembers the highest term it
has seen (the shell persists it), and a new leader's term is the next of its own above
that: a restarted old leader never leads under a term that is not new.

- Alive. A peer is alive while its last status is younger than `lease`.
- Standing. A center's standing is its score plus its configured preference. It may
  lead only while its score (without preference) is at least `min_score`: a center cut
  off from most of the network neither claims leadership nor keeps it. This is PreVote's
  purpose without a vote: a cut-off center cannot inflate the term and depose the leader
  the rest of the network still hears.
- Claims. Among the leaderships the alive centers state (their own, or the one they
  follow: centers that hear each other only through a third still follow one leader),
  the one with the highest term is the leader; a leader that hears of a higher one
  resigns at once (two claims meet only briefly, after a partition: at most one leader
  per connected component).
- Election. With no leader heard, after listening for `lease` since its start, an
  eligible center compares the standings the centers announced (its own as it
  announced it, so all compare the same numbers; ties: lower configured index first) and
  claims if it is first. If the first never claims (it cannot hear us, or it has left),
  the k-th claims once no leader has been heard for 2k leases.
- Staying. A leader stays while it is eligible and no alive peer's standing beats its
  own by `margin` for `confirm`; then it hands over (resigns; the better one claims).
  Below `min_score` for `lease` it resigns (cut off). A leader that cannot hear the
  better center (a half-cut network) cannot hand over: that center, hearing the leader
  stay worse by `margin` for `confirm` + `lease`, takes over under a newer term, and
  the old leader resigns when it hears of it. With steady connectivity nothing changes:
  no flapping.

Inputs are never refused by raising: statuses of unknown centers are counted in
`ignored`; a `ValueError` escapes only from the constructor.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    interval: float = 0.5  # statuses (the shell's cadence)
    lease: float = 2.0  # a leader unheard this long is gone
    min_score: float = 0.5  # connectivity a center needs to lead
    margin: float = 0.15  # a peer must beat the leader's standing by this ...
    confirm: float = 5.0  # ... for this long before the leader hands over
    history: int = 1000


class Center(msgspec.Struct, frozen=True):
    id: str
    preference: float = 0.0


class Status(msgspec.Struct, frozen=True):
    """What a center says about itself every `interval` (topic `center`)."""

    center: str
    term: int  # the highest term it has seen
    leader: str  # who it follows ("" none); itself when it leads
    leader_term: int  # that leadership's term
    score: float  # its connectivity, 0..1
    leader_age: float = 0.0  # seconds since the sender last heard its leader itself (inf: not itself)


class Lead(msgspec.Struct, frozen=True, tag=True):
    term: int


class Resign(msgspec.Struct, frozen=True, tag=True):
    reason: str


Decision = Lead | Resign


class Event(msgspec.Struct, frozen=True):
    at: float
    kind: str  # started | leads | resigned | follows | waits
    subject: str
    reason: str = ""


@dataclass(slots=True)
class _Peer:
    status: Status | None = None
    heard: float = float("-inf")


class Election:
    """The election state of one center. Single owner; every input returns decisions."""

    def __init__(
        self, me: str, centers: Sequence[Center], settings: Settings | None = None, term: int = 0, now: float = 0.0
    ) -> None:
        ids = [c.id for c in centers]
        if len(set(ids)) != len(ids) or me not in ids:
            raise ValueError(f"center ids must be unique and include {me!r}: {ids}")
        self.id = me
        self.settings = settings or Settings()
        if not 0 < self.settings.interval < self.settings.lease:
            raise ValueError("need 0 < interval < lease")
        self.index = {c.id: i for i, c in enumerate(centers)}
        self.preference = {c.id: c.preference for c in centers}
        self.n = len(centers)
        self.seen = term  # the highest term heard of (persisted by the shell)
        self.term = 0  # our leadership's term, while we lead
        self.leader = ""  # whom we follow, or ourselves
        self.leader_term = 0
        self.leader_age = 0.0  # how old our news of the leader is
        self.score = 0.0  # as we last announced it
        self.started = now
        self._peers = {c.id: _Peer() for c in centers if c.id != me}
        self._low_since: float | None = None  # below min_score since (while leading)
        self._beaten_since: float | None = None  # a better peer since (while leading)
        self._leaderless_since = now
        self.events: deque[Event] = deque(maxlen=self.settings.history)
        self.ignored: Counter[str] = Counter()
        self._event(now, "started", me, f"term seen {term}")

    @property
    def leading(self) -> bool:
        return self.leader == self.id

    # -- inputs -------------------------------------------------------------------------
    def heard(self, now: float, st: Status) -> list[Decision]:
        """Another center's status."""
        p = self._peers.get(st.center)
        if p is None:
            self.ignored["unknown"] += 1
            return []
        p.status, p.heard = st, now
        self.seen = max(self.seen, st.term, st.leader_term)
        if self.leading and st.leader and st.leader != self.id and st.leader_term > self.term:
            return self._resign(now, f"{st.leader} leads under a newer term {st.leader_term}")
        return []

    def tick(self, now: float, score: float) -> list[Decision]:
        """Every interval, with our connectivity now (0..1)."""
        self.score = score
        s = self.settings
        alive = self._alive(now)
        claims = self._claims(now, alive)
        if self.leading:
            if claims and max(claims)[0] > self.term:
                return self._resign(now, f"{max(claims)[1]} leads under a newer term")
            if score < s.min_score:
                self._low_since = now if self._low_since is None else self._low_since
                if now - self._low_since >= s.lease:
                    return self._resign(now, f"cut off: connectivity {score:.2f} < {s.min_score}")
            else:
                self._low_since = None
            mine = self._standing(self.id, score)
            better = [(self._standing(pid, p.status.score), pid) for pid, p in alive.items()
                      if p.status.score >= s.min_score]  # fmt: skip
            best = max(better, default=None)
            if best is not None and best[0] > mine + s.margin:
                self._beaten_since = now if self._beaten_since is None else self._beaten_since
                if now - self._beaten_since >= s.confirm:
                    return self._resign(now, f"handing over to {best[1]}: better connected ({best[0]:.2f})")
            else:
                self._beaten_since = None
            return []
        if claims:
            term, pid, age = max(claims)
            if (pid, term) != (self.leader, self.leader_term):
                self._event(now, "follows", pid, f"term {term}")
                self._beaten_since = None
            self.leader, self.leader_term = pid, term
            direct = alive.get(pid)
            # we vouch only for what we heard ourselves: news travels one hop, never in a loop
            self.leader_age = now - direct.heard if direct is not None and direct.status.leader == pid else float("inf")
            self._leaderless_since = now
            return self._depose(now, direct.status if direct is not None and direct.status.leader == pid else None)
        if self.leader:
            self._event(now, "follows", "", f"{self.leader} unheard for {s.lease}s")
            self.leader, self.leader_term = "", 0
            self._leaderless_since = now
        if now - self.started < s.lease or score < s.min_score:
            return []  # listen first; and never claim while cut off
        order = self._eligible(alive)
        place = order.index(self.id)
        if now - self._leaderless_since >= 2 * s.lease * place:  # the first at once, the next later
            return self._lead(now, "elected" if place == 0 else f"{', '.join(order[:place])} did not claim")
        return []

    def status(self) -> Status:
        age = 0.0 if self.leading else self.leader_age
        return Status(self.id, self.seen, self.leader, self.leader_term, self.score, age)

    def next_deadline(self, now: float) -> float:
        return now + self.settings.interval

    def peers(self, now: float) -> dict[str, tuple[bool, Status | None]]:
        """Every other center: (alive, its last status)."""
        return {pid: (now - p.heard <= self.settings.lease, p.status) for pid, p in self._peers.items()}

    # -- decisions ------------------------------------------------------------------------
    def next_term(self) -> int:
        """Our next term: above every term seen, in our own residue class."""
        i = self.index[self.id]
        t = self.seen + 1
        return t + (i - t) % self.n

    def _depose(self, now: float, leader: Status | None) -> list[Decision]:
        """A follower takes over from a leader it hears that stays clearly worse connected
        (by `margin`) for longer than the leader's own hand-over takes (`confirm` +
        `lease`): the leader may not hear us to hand over (a half-cut link)."""
        s = self.settings
        if leader is None or self.score < s.min_score:
            self._beaten_since = None
            return []
        if self._standing(self.id, self.score) > self._standing(leader.center, leader.score) + s.margin:
            self._beaten_since = now if self._beaten_since is None else self._beaten_since
            if now - self._beaten_since >= s.confirm + s.lease:
                return self._lead(now, f"{leader.center} stays worse connected ({leader.score:.2f})")
        else:
            self._beaten_since = None
        return []

    def _lead(self, now: float, why: str) -> list[Decision]:
        self.term = self.next_term()
        self.seen = self.term
        self.leader, self.leader_term = self.id, self.term
        self._low_since = self._beaten_since = None
        self._event(now, "leads", self.id, f"term {self.term}: {why}")
        return [Lead(self.term)]

    def _resign(self, now: float, why: str) -> list[Decision]:
        self.leader, self.leader_term, self.term = "", 0, 0
        self._leaderless_since = now
        self._low_since = self._beaten_since = None
        self._event(now, "resigned", self.id, why)
        return [Resign(why)]

    def _alive(self, now: float) -> dict[str, _Peer]:
        lease = self.settings.lease
        return {pid: p for pid, p in self._peers.items() if p.status is not None and now - p.heard <= lease}

    def _claims(self, now: float, alive: dict[str, _Peer]) -> list[tuple[int, str, float]]:
        """(term, center, age of the news) of every leadership an alive peer states: its
        own, or the one it follows and heard itself (so centers that hear each other only
        through a third follow one leader), while the news is younger than the lease.
        Followers pass on only what they heard themselves: they cannot keep a dead leader
        alive by repeating each other."""
        out = []
        lease = self.settings.lease
        for pid, p in alive.items():
            st = p.status
            assert st is not None
            if st.leader == pid:
                age = now - p.heard
            elif st.leader and st.leader != self.id:  # one hop: it heard the leader itself
                age = st.leader_age + (now - p.heard) + self.settings.interval
            else:
                continue
            if age <= lease:
                out.append((st.leader_term, st.leader, age))
        return out

    def _standing(self, cid: str, score: float) -> float:
        return score + self.preference[cid]

    def _eligible(self, alive: dict[str, _Peer]) -> list[str]:
        """Eligible centers, best first: by announced standing, then configured order."""
        cands = [(self.id, self.score)] + [
            (pid, p.status.score) for pid, p in alive.items() if p.status.score >= self.settings.min_score
        ]
        cands.sort(key=lambda c: (-self._standing(c[0], c[1]), self.index[c[0]]))
        return [c[0] for c in cands]

    def _event(self, now: float, kind: str, subject: str, reason: str) -> None:
        self.events.append(Event(now, kind, subject, reason))
