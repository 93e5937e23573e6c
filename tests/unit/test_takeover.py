"""Intra-region IP takeover decisions: examples on one agent, properties over a simulated region.

The simulator (`Sim`) runs N agents on one segment with a stepped clock (interval/2): each
agent beacons once an interval (phases staggered), a heartbeat arrives one step later
unless the link is cut or dropped, and every action is applied to a simulated interface
that must always match what the agent believes it holds. No sockets, no real time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from akacdn.region.takeover import Action, Add, Announce, Heartbeat, Member, Release, Settings, Takeover

S = Settings(interval=1.0, dead_after=3.0, recover_after=8.0, release_grace=4.0)
STEP = S.interval / 2
PROPS = settings(max_examples=60, deadline=None)


def region(n: int, per: int = 2) -> list[Member]:
    return [Member(f"m{i}", tuple(f"198.18.0.{10 * i + j + 1}" for j in range(per))) for i in range(n)]


def addrs(mid: str, per: int = 2) -> tuple[str, ...]:
    i = int(mid[1:])
    return tuple(f"198.18.0.{10 * i + j + 1}" for j in range(per))


# --- the simulator ---------------------------------------------------------------------------


class Sim:
    """N agents exchanging heartbeats over a simulated clock, with cuttable links."""

    def __init__(self, n: int, per: int = 2, healthy: bool = True) -> None:
        self.members = region(n, per)
        self.ids = [m.id for m in self.members]
        self.owner = {a: m.id for m in self.members for a in m.addresses}
        self.steps = 0
        self.now = 0.0
        self.agents: dict[str, Takeover | None] = {}
        self.iface: dict[str, set[str]] = {mid: set() for mid in self.ids}
        self.boots: Counter[str] = Counter()
        self.cut: set[frozenset[str]] = set()  # symmetric partitions
        self.drop: Callable[[str, str], bool] = lambda sender, receiver: False
        self.wire: list[tuple[str, Heartbeat]] = []
        self.log: list[tuple[float, str, Action]] = []
        self.owner_added_over: list[tuple[float, str]] = []  # an owner added while a peer held it
        self.starting: dict[str, tuple[float, bool]] = {}  # listening agents: when to start, healthy
        for mid in self.ids:
            self.boot(mid, healthy)

    def boot(self, mid: str, healthy: bool = True, listen: bool = False) -> None:
        """Start a machine's agent; `listen`: as the shell does, hear heartbeats for
        dead_after first (without beaconing or acting), then start."""
        self.boots[mid] += 1
        self.iface[mid].clear()  # a machine comes up with a clean interface
        agent = self.agents[mid] = Takeover(mid, self.members, S, incarnation=self.boots[mid])
        if listen:
            self.starting[mid] = (self.now + S.dead_after, healthy)
        else:
            self.apply(mid, agent.start(self.now, healthy))

    def kill(self, mid: str) -> None:
        self.agents[mid] = None
        self.iface[mid].clear()  # the machine is down: nothing answers on its interface

    def health(self, mid: str, ok: bool) -> None:
        agent = self.agents[mid]
        assert agent is not None
        self.apply(mid, agent.own_health(self.now, ok))

    def live(self) -> Iterator[tuple[str, Takeover]]:
        return ((mid, a) for mid, a in self.agents.items() if a is not None)

    def holders(self, address: str) -> list[str]:
        return [mid for mid in self.ids if address in self.iface[mid]]

    def link(self, sender: str, receiver: str) -> bool:
        return frozenset((sender, receiver)) not in self.cut and not self.drop(sender, receiver)

    def apply(self, mid: str, actions: list[Action]) -> None:
        if self.agents[mid] is not None and not self.agents[mid].started:  # type: ignore[union-attr]
            assert actions == [], "an agent that has not started acts on nothing"
            return
        for i, act in enumerate(actions):
            self.log.append((self.now, mid, act))
            match act:
                case Add(address=a):
                    assert a not in self.iface[mid], f"{mid} added {a} twice"
                    if self.owner[a] == mid and self.holders(a):
                        self.owner_added_over.append((self.now, a))
                    self.iface[mid].add(a)
                case Announce(address=a):
                    assert i > 0 and actions[i - 1] == Add(a), "Announce must follow its Add"
                case Release(address=a):
                    assert a in self.iface[mid], f"{mid} released {a} it did not hold"
                    self.iface[mid].discard(a)
        agent = self.agents[mid]
        assert agent is not None and self.iface[mid] == agent.holds

    def step(self) -> None:
        self.steps += 1
        self.now = self.steps * STEP
        wire, self.wire = self.wire, []
        for to, hb in wire:
            agent = self.agents[to]
            if agent is not None:  # a heartbeat to a machine that died is lost
                self.apply(to, agent.heard(self.now, hb))
        for mid, (at, healthy) in list(self.starting.items()):
            agent = self.agents[mid]
            if agent is not None and self.now >= at:
                del self.starting[mid]
                self.apply(mid, agent.start(self.now, healthy))
        for mid, agent in list(self.live()):
            if agent.started:
                self.apply(mid, agent.tick(self.now))
        for i, mid in enumerate(self.ids):
            agent = self.agents[mid]
            if agent is None or not agent.started or (self.steps + i) % 2:
                continue
            hb = agent.beacon(self.now)
            self.wire += [(to, hb) for to in self.ids if to != mid and self.link(mid, to)]

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / STEP)):
            self.step()

    def moves_since(self, t: float) -> int:
        return sum(1 for at, _, act in self.log if at > t and isinstance(act, Add | Release))

    def first_live_after(self, owner: str) -> str | None:
        i, n = self.ids.index(owner), len(self.ids)
        return next((m for k in range(1, n) if self.agents[m := self.ids[(i + k) % n]] is not None), None)


def assert_one_holder_each(sim: Sim) -> None:
    """Every address held by exactly one agent: its owner if the owner is up."""
    for a, owner in sim.owner.items():
        holders = sim.holders(a)
        if sim.agents[owner] is not None:
            assert holders == [owner], (a, holders)
        else:
            assert len(holders) == 1, (a, holders)


class Flaky:
    """Drops heartbeats on every link of `victim` by `pattern`, never two in a row on one link."""

    def __init__(self, victim: str, pattern: list[bool]) -> None:
        self.victim, self.pattern = victim, pattern
        self.sent: Counter[tuple[str, str]] = Counter()
        self.last: dict[tuple[str, str], bool] = {}

    def __call__(self, sender: str, receiver: str) -> bool:
        if self.victim not in (sender, receiver):
            return False
        link = (sender, receiver)
        drop = self.pattern[self.sent[link] % len(self.pattern)] and not self.last.get(link, False)
        self.sent[link] += 1
        self.last[link] = drop
        return drop


# --- one agent: start, inputs, bookkeeping ---------------------------------------------------


def beat(sender: str, seq: int, holds: tuple[str, ...] | None = None, healthy: bool = True, inc: int = 1) -> Heartbeat:
    return Heartbeat(sender, inc, seq, healthy, addrs(sender) if holds is None else holds)


def test_start_holds_own_addresses_and_announces() -> None:
    t = Takeover("m1", region(3), S)
    a, b = addrs("m1")
    assert t.start(0.0) == [Add(a), Announce(a), Add(b), Announce(b)]
    assert t.holds == {a, b} and t.alive
    hb = t.beacon(0.0)
    assert (hb.sender, hb.healthy, hb.holds, hb.seq) == ("m1", True, (a, b), 1)
    assert t.beacon(0.5).seq == 2


def test_unhealthy_start_holds_nothing_until_settled() -> None:
    t = Takeover("m1", region(3), S)
    assert t.start(0.0, healthy=False) == []
    assert not t.beacon(0.0).healthy
    assert t.own_health(1.0, True) == []
    t.heard(8.0, beat("m0", 1))
    t.heard(8.0, beat("m2", 1))
    assert t.tick(1.0 + S.recover_after - STEP) == []
    assert t.tick(1.0 + S.recover_after) == [x for a in addrs("m1") for x in (Add(a), Announce(a))]


def test_unknown_and_stale_heartbeats_are_ignored_and_counted() -> None:
    t = Takeover("m0", region(3), S)
    t.start(0.0)
    t.heard(0.5, beat("m1", 5))
    t.heard(0.6, beat("zz", 1, ("198.18.0.1",)))  # not a member
    t.heard(0.6, beat("m0", 9))  # our own, echoed back
    t.heard(0.7, beat("m1", 5))  # duplicate
    t.heard(0.8, beat("m1", 4, healthy=False))  # older seq of the same incarnation
    t.heard(0.9, beat("m1", 1, healthy=False, inc=0))  # older incarnation still beating
    assert t.ignored == {"unknown": 2, "stale": 3}
    assert t.peers()["m1"].healthy and t.peers()["m1"].last_heard == 0.5
    t.heard(1.0, beat("m1", 0, inc=7))  # restarted: a new boot id starts over at seq 0
    assert t.peers()["m1"].incarnation == 7
    t.heard(9.0, beat("m1", 0, inc=3))  # silent long enough: a smaller boot id is a reboot too
    assert t.peers()["m1"].incarnation == 3 and t.ignored["stale"] == 3


@pytest.mark.parametrize(
    ("n", "dead", "expect"),
    [
        (4, ["m1"], {"m1": "m2"}),  # the next member takes over
        (4, ["m1", "m2"], {"m1": "m3", "m2": "m3"}),  # the next is dead too: the one after
        (4, ["m3"], {"m3": "m0"}),  # buddy order wraps around
        (4, ["m3", "m0"], {"m3": "m1", "m0": "m1"}),
        (3, ["m0", "m1"], {"m0": "m2", "m1": "m2"}),  # the last one standing holds everything
    ],
)
def test_buddy_order(n: int, dead: list[str], expect: dict[str, str]) -> None:
    sim = Sim(n)
    sim.run(2 * S.dead_after)
    for mid in dead:
        sim.kill(mid)
    sim.run(S.dead_after + S.interval)
    for victim, taker in expect.items():
        for a in addrs(victim):
            assert sim.holders(a) == [taker]
    assert_one_holder_each(sim)


def test_unhealthy_heartbeat_is_taken_over_at_once() -> None:
    t = Takeover("m1", region(3), S)
    t.start(0.0)
    t.heard(0.5, beat("m0", 1))
    t.heard(0.5, beat("m2", 1))
    acts = t.heard(1.0, beat("m0", 2, healthy=False))  # no waiting for missed heartbeats
    assert acts == [x for a in addrs("m0") for x in (Add(a), Announce(a))]
    kinds = [(e.kind, e.subject, e.reason) for e in t.events]
    assert ("declared_dead", "m0", "reported unhealthy") in kinds
    assert ("took", addrs("m0")[0], "owner m0 unhealthy") in kinds
    assert not t.peers()["m0"].alive and t.peers()["m0"].since == 1.0


def test_silent_peer_is_declared_dead_after_dead_after() -> None:
    t = Takeover("m1", region(3), S)
    t.start(0.0)
    t.heard(0.5, beat("m0", 1))
    t.heard(2.5, beat("m2", 1))
    assert t.next_deadline() == 0.5 + S.dead_after
    assert t.tick(0.5 + S.dead_after - 0.01) == []
    assert len(t.tick(0.5 + S.dead_after)) == 4
    assert t.events[-3].kind == "declared_dead" and t.events[-3].reason == "silent"


def test_failing_owner_releases_only_once_a_live_peer_serves() -> None:
    t = Takeover("m0", region(3), S)
    t.start(0.0)
    assert t.own_health(1.0, False) == []  # nobody serves them yet: keep serving
    assert not t.beacon(1.0).healthy and not t.alive
    assert t.heard(1.5, beat("m1", 1, addrs("m1"))) == []
    assert t.heard(2.5, beat("m1", 2, addrs("m1") + addrs("m0"))) == [Release(a) for a in addrs("m0")]


def test_owner_readds_after_release_grace_if_the_buddy_hangs_on() -> None:
    t = Takeover("m0", region(2), S)
    t.start(0.0)
    t.own_health(1.0, False)
    t.heard(1.5, beat("m1", 1, addrs("m1") + addrs("m0")))
    t.own_health(2.0, True)
    settle = 2.0 + S.recover_after
    assert t.next_deadline() == 1.5 + S.dead_after  # m1 falls silent first, unless heard again
    seq = 2
    now = 2.0
    while now < settle + S.release_grace - STEP:  # a stubborn (or deaf) buddy keeps claiming
        now += STEP
        seq += 1
        assert t.heard(now, beat("m1", seq, addrs("m1") + addrs("m0"))) == [], now
    assert t.next_deadline() == settle + S.release_grace
    acts = t.tick(settle + S.release_grace)
    assert acts[:2] == [Add(addrs("m0")[0]), Announce(addrs("m0")[0])]
    assert t.events[-1].reason == "own, release grace over"


@pytest.mark.parametrize(
    ("me", "silent", "last", "released"),
    [
        # the owner comes back healthy and holding: the owner wins
        ("m1", ["m0"], beat("m0", 9), addrs("m0")),
        # the owner comes back healthy but empty-handed: it is reclaiming, the buddy goes first
        ("m1", ["m0"], beat("m0", 9, ()), addrs("m0")),
        # the owner is back but unhealthy and still holding: the live buddy keeps them
        ("m1", ["m0"], beat("m0", 9, healthy=False), ()),
        # owner dead, an earlier buddy claims too: it wins (and m1, now alive, is owed its own)
        ("m2", ["m0", "m1"], beat("m1", 9, addrs("m0")), addrs("m0") + addrs("m1")),
        # owner dead, a later buddy claims too: we win
        ("m1", ["m0"], beat("m2", 9, addrs("m2") + addrs("m0")), ()),
        # wrap-around ranking: for m3's addresses m0 is ahead of m1
        ("m1", ["m3", "m0"], beat("m0", 9, addrs("m3")), addrs("m3") + addrs("m0")),
    ],
)
def test_dual_claims(me: str, silent: list[str], last: Heartbeat, released: tuple[str, ...]) -> None:
    members = region(4)
    t = Takeover(me, members, S)
    t.start(0.0)
    for k in range(1, 5):  # the others beat each second; the silent ones are declared dead
        for m in members:
            if m.id not in (me, *silent):
                t.heard(float(k), beat(m.id, k))
    assert all(a in t.holds for mid in silent for a in addrs(mid))
    acts = t.heard(4.5, last)
    assert sorted(x.address for x in acts if isinstance(x, Release)) == sorted(released)
    assert not any(isinstance(x, Add) for x in acts)


def test_settings_and_members_are_validated() -> None:
    with pytest.raises(ValueError):
        Settings(interval=1.0, dead_after=1.0)
    with pytest.raises(ValueError):
        Settings(release_grace=-1.0)
    with pytest.raises(ValueError):
        Takeover("m9", region(2))
    with pytest.raises(ValueError):
        Takeover("m0", [Member("m0", ("198.18.0.1",)), Member("m1", ("198.18.0.1",))])
    with pytest.raises(RuntimeError):
        Takeover("m0", region(2)).tick(0.0)
    assert msgspec.json.decode(b'{"interval": 0.5, "dead_after": 1.5}', type=Settings).dead_after == 1.5


# --- the acceptance properties over a simulated region ---------------------------------------


@PROPS
@given(
    n=st.integers(2, 6),
    victims=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 12)), min_size=1, max_size=4),
)
def test_one_taker_per_dead_machine(n: int, victims: list[tuple[int, int]]) -> None:
    sim = Sim(n)
    sim.run(2 * S.dead_after)
    assert_one_holder_each(sim)  # steady state: every owner holds its own, alone
    kills = {f"m{i % n}": steps for i, steps in victims}
    if len(kills) == n:
        kills.pop(f"m{n - 1}")  # keep one alive
    for step in range(max(kills.values()) + 1):
        for mid in [m for m, s in kills.items() if s == step]:
            sim.kill(mid)
        sim.step()
    sim.run(S.dead_after + S.interval)
    assert_one_holder_each(sim)
    for victim in kills:
        for a in addrs(victim):
            assert sim.holders(a) == [sim.first_live_after(victim)]


@PROPS
@given(
    n=st.integers(2, 6),
    owner=st.integers(0, 5),
    others_dead=st.sets(st.integers(0, 5), max_size=3),
    down_steps=st.integers(1, 40),
)
def test_handback_after_health_failure(n: int, owner: int, others_dead: set[int], down_steps: int) -> None:
    sim = Sim(n)
    o = f"m{owner % n}"
    dead = [f"m{i % n}" for i in others_dead if f"m{i % n}" != o][: n - 2]
    for mid in dead:
        sim.kill(mid)
    sim.run(2 * S.dead_after)
    t0 = sim.now
    sim.health(o, False)
    sim.run(down_steps * STEP)
    sim.health(o, True)
    sim.run(S.recover_after + S.release_grace + 3 * S.dead_after)
    assert_one_holder_each(sim)
    assert sim.owner_added_over == []  # the buddy released before the owner re-added
    for a in addrs(o):  # it was handed over once and back once
        moves = [(mid, type(act)) for at, mid, act in sim.log if at > t0 and getattr(act, "address", None) == a]
        taker = sim.first_live_after(o)
        assert moves == [(taker, Add), (taker, Announce), (o, Release), (taker, Release), (o, Add), (o, Announce)]


@PROPS
@given(n=st.integers(2, 5), owner=st.integers(0, 4), down_steps=st.integers(1, 30), healthy_boot=st.booleans())
def test_handback_after_crash_restart(n: int, owner: int, down_steps: int, healthy_boot: bool) -> None:
    sim = Sim(n)
    o = f"m{owner % n}"
    sim.run(2 * S.dead_after)
    sim.kill(o)
    sim.run(down_steps * STEP)
    sim.boot(o, healthy=healthy_boot)
    if not healthy_boot:  # proves itself for recover_after first; the buddy goes first
        sim.health(o, True)
    sim.run(2 * S.interval)
    if healthy_boot:  # owner wins at once: any dual holding lasted at most one beacon round
        assert_one_holder_each(sim)
    sim.run(S.recover_after + S.release_grace + 2 * S.dead_after)
    assert_one_holder_each(sim)
    if not healthy_boot:
        assert sim.owner_added_over == []


@PROPS
@given(n=st.integers(2, 5), owner=st.integers(0, 4), down_steps=st.integers(1, 30))
def test_a_restarted_owner_that_hears_its_buddy_covering_proves_itself_before_reclaiming(
    n: int, owner: int, down_steps: int
) -> None:
    """As the agent runs: a machine comes back, listens for dead_after, then starts with its
    service up. If a buddy covered for it all along, it starts unsettled: the buddy lets go
    first and the owner never adds an address a peer still holds. (A buddy that takes over
    during the listen itself may not have been heard yet: then the owner wins the dual
    claim, within a beacon round.)"""
    sim = Sim(n)
    o = f"m{owner % n}"
    sim.run(2 * S.dead_after)
    sim.kill(o)
    sim.run(down_steps * STEP)
    covered = all(sim.holders(a) for a in addrs(o))
    sim.boot(o, healthy=True, listen=True)
    sim.run(S.dead_after + STEP)
    agent = sim.agents[o]
    assert agent is not None and agent.started
    started = next(e for e in agent.events if e.kind == "started")
    heard_covering = "covered by" in started.reason
    if covered:  # held by a buddy all along the listen (it keeps it while we are silent)
        assert heard_covering, started
    sim.run(2 * S.interval)
    if not heard_covering:  # claimed at once: any dual holding lasted at most a beacon round
        assert_one_holder_each(sim)
    sim.run(S.recover_after + S.release_grace + 2 * S.dead_after)
    assert_one_holder_each(sim)
    if heard_covering:
        assert sim.owner_added_over == [], "the buddy released before the owner added"


def test_a_cold_region_claims_its_own_addresses_at_once_after_listening() -> None:
    t = Takeover("m1", region(3), S)
    assert t.heard(0.5, beat("m0", 1)) == [], "heard before the start: noted, not acted on"
    acts = t.start(S.dead_after)
    assert acts == [x for a in addrs("m1") for x in (Add(a), Announce(a))]
    assert t.beacon(S.dead_after).healthy


def test_a_restart_covered_by_a_buddy_waits_until_the_buddy_lets_go() -> None:
    t = Takeover("m1", region(3), S)
    t.heard(0.5, beat("m2", 7, holds=addrs("m2") + addrs("m1")))  # m2 covers for us
    t.heard(0.5, beat("m0", 7))
    assert t.start(1.0) == [], "covered: no address yet"
    assert not t.beacon(1.0).healthy, "and not healthy until it has proved itself"
    assert [e.reason for e in t.events if e.kind == "started"] == ["covered by m2: proves itself first"]
    now = 1.0
    for seq in range(8, 8 + int(S.recover_after / S.interval)):  # peers keep beaconing
        now += S.interval
        assert t.heard(now, beat("m2", seq, holds=addrs("m2") + addrs("m1"))) == []
        t.heard(now, beat("m0", seq))
    assert t.beacon(now).healthy, "settled after recover_after"
    acts = t.heard(now + 0.1, beat("m2", 99))  # the buddy let go
    assert acts == [x for a in addrs("m1") for x in (Add(a), Announce(a))]


link = st.tuples(st.integers(0, 5), st.integers(0, 5))
phase = st.tuples(st.sets(link, max_size=10), st.sets(st.integers(0, 5), max_size=2), st.integers(1, 24))


@PROPS
@given(n=st.integers(2, 6), dead=st.sets(st.integers(0, 5), max_size=2), phases=st.lists(phase, min_size=1, max_size=5))
def test_no_dual_holding_after_partitions_heal(
    n: int, dead: set[int], phases: list[tuple[set[tuple[int, int]], set[int], int]]
) -> None:
    sim = Sim(n)
    sim.run(2 * S.dead_after)
    for mid in sorted({f"m{i % n}" for i in dead})[: n - 1]:
        sim.kill(mid)
    for cuts, sick, steps in phases:
        sim.cut = {frozenset((f"m{a % n}", f"m{b % n}")) for a, b in cuts if a % n != b % n}
        for mid, _ in list(sim.live()):
            sim.health(mid, int(mid[1:]) not in {i % n for i in sick})
        sim.run(steps * STEP)
    sim.cut = set()
    for mid, _ in list(sim.live()):
        sim.health(mid, True)
    sim.run(S.recover_after + S.release_grace + 2 * S.dead_after)
    assert_one_holder_each(sim)
    quiet_from = sim.now
    sim.run(10 * S.interval)
    assert sim.moves_since(quiet_from) == 0  # quiescent, not just lucky


@PROPS
@given(n=st.integers(2, 6), victim=st.integers(0, 5), pattern=st.lists(st.booleans(), min_size=1, max_size=12))
def test_heartbeat_flapping_below_dead_after_moves_nothing(n: int, victim: int, pattern: list[bool]) -> None:
    sim = Sim(n)
    sim.run(2 * S.dead_after)
    t0 = sim.now
    sim.drop = Flaky(f"m{victim % n}", pattern)  # present/absent, gaps of at most 2 intervals
    sim.run(30 * S.interval)
    assert sim.moves_since(t0) == 0
    assert_one_holder_each(sim)


@PROPS
@given(
    n=st.integers(2, 6),
    victim=st.integers(0, 5),
    dwell=st.lists(st.integers(1, round(S.recover_after / STEP) - 1), min_size=2, max_size=40),
)
def test_health_flapping_below_recover_after_moves_each_address_once(n: int, victim: int, dwell: list[int]) -> None:
    sim = Sim(n)
    v = f"m{victim % n}"
    sim.run(2 * S.dead_after)
    t0 = sim.now
    ok = True
    for steps in dwell:  # healthy spells all shorter than recover_after
        ok = not ok
        sim.health(v, ok)
        sim.run(steps * STEP)
    sim.health(v, False)
    sim.run(3 * S.interval)
    # handed to the buddy once (its Add, the owner's Release) and never back while flapping
    assert sim.moves_since(t0) == 2 * len(addrs(v))
    for a in addrs(v):
        assert sim.holders(a) == [sim.first_live_after(v)]


def test_returning_earlier_buddy_does_not_take_what_a_live_peer_serves() -> None:
    sim = Sim(3)
    sim.run(2 * S.dead_after)
    sim.kill("m0")
    sim.kill("m1")
    sim.run(S.dead_after + S.interval)
    assert [sim.holders(a) for a in addrs("m0")] == [["m2"], ["m2"]]
    t0 = sim.now
    sim.boot("m1")  # m1 is ahead of m2 in m0's buddy order, but m2 already serves m0's addresses
    sim.run(S.recover_after + S.release_grace + 2 * S.dead_after)
    assert [sim.holders(a) for a in addrs("m0")] == [["m2"], ["m2"]]
    assert_one_holder_each(sim)
    assert sim.moves_since(t0) == 2  # after m1's start only m2 let go of m1's own two: no churn
