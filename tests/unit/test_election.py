"""The mapping centers' election core: claims, terms, hand-over, cut-off, restarts; and a
simulated network of centers (hypothesis stateful) with partitions, degraded
connectivity, kills and restarts."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from akacdn.mapping.election import Center, Election, Lead, Resign, Settings, Status

S = Settings(interval=0.5, lease=2.0, min_score=0.5, margin=0.15, confirm=5.0)
CENTERS = [Center("mc1"), Center("mc2"), Center("mc3")]
CENTERS_IDS = [c.id for c in CENTERS]


def run(elections: dict[str, Election], scores: dict[str, float], start: float, until: float,
        hears: set[tuple[str, str]] | None = None) -> list[tuple[float, str, object]]:  # fmt: skip
    """Step every center each interval: statuses to whoever hears them, then ticks."""
    out = []
    t = start
    while t <= until:
        statuses = {cid: e.status() for cid, e in elections.items()}
        for to, e in elections.items():
            for frm, st_ in statuses.items():
                if frm != to and (hears is None or (frm, to) in hears):
                    for d in e.heard(t, st_):
                        out.append((t, to, d))
        for cid, e in elections.items():
            for d in e.tick(t, scores[cid]):
                out.append((t, cid, d))
        t = round(t + S.interval, 6)
    return out


def leaders(elections: dict[str, Election]) -> list[str]:
    return [cid for cid, e in elections.items() if e.leading]


def test_terms_are_unique_per_center_and_above_all_seen() -> None:
    es = [Election(c.id, CENTERS, S, term=7) for c in CENTERS]
    assert [e.next_term() for e in es] == [9, 10, 8]  # residues 0, 1, 2 of 3, each above 7
    assert len({e.next_term() for e in es}) == 3


def test_one_leader_is_elected_by_standing_and_others_follow() -> None:
    es = {c.id: Election(c.id, CENTERS, S, now=0.0) for c in CENTERS}
    out = run(es, {"mc1": 0.9, "mc2": 1.0, "mc3": 0.8}, 0.0, 10.0)
    assert leaders(es) == ["mc2"]  # the best connected
    assert [d for _, _, d in out if isinstance(d, Lead)] == [Lead(1)]  # mc2 is index 1 of 3
    assert es["mc1"].leader == es["mc3"].leader == "mc2"
    assert not any(t < S.lease for t, _, d in out if isinstance(d, Lead)), "listens for a lease first"


def test_preference_breaks_near_ties_and_order_breaks_exact_ones() -> None:
    centers = [Center("mc1"), Center("mc2", preference=0.2)]
    es = {c.id: Election(c.id, centers, S) for c in centers}
    run(es, {"mc1": 1.0, "mc2": 0.9}, 0.0, 6.0)
    assert leaders(es) == ["mc2"]  # the monitoring-rich site preferred
    es = {c.id: Election(c.id, CENTERS[:2], S) for c in CENTERS[:2]}
    run(es, {"mc1": 1.0, "mc2": 1.0}, 0.0, 6.0)
    assert leaders(es) == ["mc1"]


def test_a_killed_leader_is_replaced_after_the_lease_with_a_newer_term() -> None:
    es = {c.id: Election(c.id, CENTERS, S) for c in CENTERS}
    scores = {"mc1": 1.0, "mc2": 0.9, "mc3": 0.8}
    run(es, scores, 0.0, 6.0)
    assert leaders(es) == ["mc1"] and es["mc1"].term == 3
    dead = es.pop("mc1")
    out = run(es, scores, 6.5, 14.0)
    leads = [(t, cid, d) for t, cid, d in out if isinstance(d, Lead)]
    assert [(cid, d.term) for _, cid, d in leads] == [("mc2", 4)]  # above 3, in mc2's class
    assert 6.5 + S.lease <= leads[0][0] <= 6.5 + S.lease + 2 * S.interval
    # the old leader comes back (its term persisted): it follows, and would never reuse a term
    back = Election("mc1", CENTERS, S, term=dead.seen, now=14.5)
    es["mc1"] = back
    run(es, scores, 14.5, 30.0)
    assert leaders(es) == ["mc2"]  # mc1 is better, but not by the margin of a hand-over? it is by 0.1 < 0.15
    assert back.leader == "mc2" and back.next_term() > 4


def test_a_leader_cut_off_resigns_and_a_connected_one_takes_over() -> None:
    es = {c.id: Election(c.id, CENTERS[:2], S) for c in CENTERS[:2]}
    run(es, {"mc1": 1.0, "mc2": 1.0}, 0.0, 6.0)
    assert leaders(es) == ["mc1"]
    # mc1 loses most relays: it hears few, and mc2 no longer hears it (nor it mc2)
    out = run(es, {"mc1": 0.2, "mc2": 0.9}, 6.5, 20.0, hears=set())
    resigned = [t for t, cid, d in out if cid == "mc1" and isinstance(d, Resign)]
    led = [t for t, cid, d in out if cid == "mc2" and isinstance(d, Lead)]
    assert resigned and led and resigned[0] <= 6.5 + S.lease + S.interval
    assert leaders(es) == ["mc2"]


def test_a_cut_off_center_never_claims_so_the_term_is_not_inflated() -> None:
    es = {c.id: Election(c.id, CENTERS[:2], S) for c in CENTERS[:2]}
    run(es, {"mc1": 1.0, "mc2": 1.0}, 0.0, 6.0)
    out = run(es, {"mc1": 1.0, "mc2": 0.1}, 6.5, 60.0, hears={("mc2", "mc1")})  # mc2 hears nobody
    assert not [d for _, cid, d in out if cid == "mc2" and isinstance(d, Lead)]
    assert es["mc2"].seen == es["mc1"].term and leaders(es) == ["mc1"]


def test_degraded_leader_hands_over_only_after_the_confirm_period_and_margin() -> None:
    es = {c.id: Election(c.id, CENTERS[:2], S) for c in CENTERS[:2]}
    run(es, {"mc1": 1.0, "mc2": 1.0}, 0.0, 6.0)
    out = run(es, {"mc1": 0.9, "mc2": 1.0}, 6.5, 30.0)  # within the margin: nothing moves
    assert not out and leaders(es) == ["mc1"]
    out = run(es, {"mc1": 0.6, "mc2": 1.0}, 30.5, 50.0)
    first = [t for t, cid, d in out if cid == "mc1" and isinstance(d, Resign)][0]
    assert first >= 30.5 + S.confirm
    assert leaders(es) == ["mc2"] and es["mc2"].term > es["mc1"].seen - 1


def test_two_leaders_after_a_healed_partition_become_one_at_once() -> None:
    es = {c.id: Election(c.id, CENTERS[:2], S) for c in CENTERS[:2]}
    run(es, {"mc1": 0.8, "mc2": 0.8}, 0.0, 20.0, hears=set())  # both lead their own half
    assert leaders(es) == ["mc1", "mc2"]
    assert (es["mc1"].term, es["mc2"].term) == (2, 1)  # of 2 centers, mc1 takes even terms
    out = run(es, {"mc1": 0.8, "mc2": 0.8}, 20.5, 21.0)
    assert leaders(es) == ["mc1"]  # the newer term wins at the first status heard
    assert [cid for _, cid, d in out if isinstance(d, Resign)] == ["mc2"]


def test_when_the_best_never_claims_the_next_does() -> None:
    es = {c.id: Election(c.id, CENTERS[:2], S) for c in CENTERS[:2]}
    # mc1 is heard by mc2 (announcing a good score) but never hears anyone and never claims:
    # we model it by a stale, non-leading status from a center that does not tick
    mc2 = es["mc2"]
    for t in [x * 0.5 for x in range(0, 30)]:
        mc2.heard(t, Status("mc1", 0, "", 0, 1.0))
        mc2.tick(t, 0.9)
    assert mc2.leading  # after 2 leases without a leader


def test_unknown_centers_are_ignored_and_settings_checked() -> None:
    e = Election("mc1", CENTERS, S)
    assert e.heard(0.0, Status("mcX", 99, "mcX", 99, 1.0)) == [] and e.ignored["unknown"] == 1 and e.seen == 0
    with pytest.raises(ValueError):
        Election("mcZ", CENTERS, S)
    with pytest.raises(ValueError):
        Election("mc1", CENTERS, Settings(interval=3.0, lease=2.0))


class Network(RuleBasedStateMachine):
    """Three centers; each interval statuses go to the centers that hear the sender. The
    test cuts and heals links, changes scores, kills and restarts centers (the term
    persisted), and checks: terms never reused, never below what the leader had seen;
    after things stay still for a while, at most one leader per group of centers that
    hear each other (exactly one where one is eligible), and no further changes."""

    def __init__(self) -> None:
        super().__init__()
        self.t = 0.0
        self.es = {c.id: Election(c.id, CENTERS, S) for c in CENTERS}
        self.persisted = {c.id: 0 for c in CENTERS}
        self.scores = {"mc1": 1.0, "mc2": 0.9, "mc3": 0.8}
        self.links = {(a, b) for a in self.es for b in self.es if a != b}
        self.terms: dict[int, str] = {}

    def step(self, n: int) -> list[tuple[float, str, object]]:
        out = run(self.es, self.scores, self.t, self.t + (n - 1) * S.interval, self.links)
        self.t += n * S.interval
        for _, cid, d in out:
            if isinstance(d, Lead):
                assert self.terms.setdefault(d.term, cid) == cid, f"term {d.term} reused"
                assert d.term > self.persisted[cid]
                self.persisted[cid] = d.term
        for cid, e in self.es.items():
            self.persisted[cid] = max(self.persisted[cid], e.seen)
        return out

    @rule(n=st.integers(1, 8))
    def time_passes(self, n: int) -> None:
        self.step(n)

    @rule(a=st.sampled_from(["mc1", "mc2", "mc3"]), b=st.sampled_from(["mc1", "mc2", "mc3"]))
    def cut(self, a: str, b: str) -> None:
        self.links -= {(a, b), (b, a)}

    @rule(a=st.sampled_from(["mc1", "mc2", "mc3"]), b=st.sampled_from(["mc1", "mc2", "mc3"]))
    def heal(self, a: str, b: str) -> None:
        if a != b:
            self.links |= {(a, b), (b, a)}

    @rule(c=st.sampled_from(["mc1", "mc2", "mc3"]))
    def isolate(self, c: str) -> None:
        self.links = {(a, b) for a, b in self.links if c not in (a, b)}

    @rule()
    def heal_all(self) -> None:
        self.links = {(a, b) for a in CENTERS_IDS for b in CENTERS_IDS if a != b}

    @rule(c=st.sampled_from(["mc1", "mc2", "mc3"]), score=st.sampled_from([0.1, 0.4, 0.6, 0.8, 0.9, 1.0]))
    def connectivity(self, c: str, score: float) -> None:
        self.scores[c] = score

    @precondition(lambda self: len(self.es) > 1)
    @rule(c=st.sampled_from(["mc1", "mc2", "mc3"]))
    def kill(self, c: str) -> None:
        self.es.pop(c, None)

    @rule(c=st.sampled_from(["mc1", "mc2", "mc3"]))
    def restart(self, c: str) -> None:
        self.es[c] = Election(c, CENTERS, S, term=self.persisted[c], now=self.t)

    @invariant()
    def settles(self) -> None:
        """Freeze everything for a while: then one leader per connected group, stable."""
        saved = (self.t, {k: v for k, v in self.es.items()})
        self.step(int((6 * S.lease + 2 * S.confirm) / S.interval))
        before = {cid: (e.leader, e.leader_term) for cid, e in self.es.items()}
        out = self.step(int(4 * S.lease / S.interval))
        assert not [d for _, _, d in out if isinstance(d, (Lead, Resign))], "a change while nothing changed"
        for cid, e in self.es.items():
            assert (e.leader, e.leader_term) == before[cid]
        groups = self._groups()
        for g in groups:
            lead = [c for c in g if self.es[c].leading]
            assert len(lead) <= 1, f"two leaders in {g}: {lead}"
            if any(self.scores[c] >= S.min_score for c in g):
                assert len(lead) == 1, f"no leader in {g}"
        del saved

    def _groups(self) -> list[set[str]]:
        """Centers that hear each other both ways, transitively (through a third, too)."""
        left, groups = set(self.es), []
        while left:
            g, todo = set(), [left.pop()]
            while todo:
                c = todo.pop()
                g.add(c)
                for o in list(left):
                    if (c, o) in self.links and (o, c) in self.links:
                        left.discard(o)
                        todo.append(o)
            groups.append(g)
        return groups


TestNetwork = Network.TestCase
TestNetwork.settings = settings(max_examples=60, stateful_step_count=12, deadline=None)


def test_a_leader_that_cannot_hear_the_better_center_is_deposed_by_it() -> None:
    es = {c.id: Election(c.id, CENTERS[:2], S) for c in CENTERS[:2]}
    run(es, {"mc1": 1.0, "mc2": 1.0}, 0.0, 6.0)
    assert leaders(es) == ["mc1"]
    # half-cut: mc2 still hears mc1 (worse now), mc1 no longer hears mc2 (cannot hand over)
    out = run(es, {"mc1": 0.7, "mc2": 1.0}, 6.5, 30.0, hears={("mc1", "mc2")})
    took = [t for t, cid, d in out if cid == "mc2" and isinstance(d, Lead)]
    assert took and took[0] >= 6.5 + S.confirm + S.lease
    assert es["mc2"].leading and es["mc2"].term > 2
    run(es, {"mc1": 0.7, "mc2": 1.0}, 30.5, 32.0)  # the link heals: mc1 hears the newer term
    assert leaders(es) == ["mc2"]
