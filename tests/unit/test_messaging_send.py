"""The sending cores: streams and chunking, STATE notes, pacing, the retransmit history
and its budget, path choice over relays in distinct regions, the purge journal."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from akacdn.messaging.envelope import DATA, STATE
from akacdn.messaging.history import Budget, History
from akacdn.messaging.journal import Journal
from akacdn.messaging.paths import Relay, RelayHealth, choose
from akacdn.messaging.sender import Outbox, Pacer


def policy(topic: str) -> float:
    return 0.0 if topic == "heartbeat" else 5.0


# --- outbox ------------------------------------------------------------------------------------


@given(size=st.integers(0, 5000), chunk=st.integers(1, 1200))
def test_chunks_cover_the_message_exactly(size: int, chunk: int) -> None:
    body = bytes(i % 251 for i in range(size))
    ds = Outbox("e1", 9, chunk, policy).message("t", body, 1.0, 1.0)
    assert len(ds) == max(1, -(-size // chunk))
    assert all(d.kind == DATA and d.parts == len(ds) and d.size == size and len(d.body) <= chunk for d in ds)
    assert [d.part for d in ds] == list(range(len(ds)))
    assert b"".join(d.body for d in ds) == body


def test_streams_are_numbered_per_topic_from_one() -> None:
    box = Outbox("e1", 9, 100, policy)
    seqs = [(t, box.message(t, b"x", 0.0, 0.0)[0].seq) for t in ("a", "b", "a", "a", "b")]
    assert seqs == [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)]
    with pytest.raises(ValueError):
        Outbox("e1", 9, 1, policy).message("a", b"x" * 70_000, 0.0, 0.0)


def test_state_notes_only_for_recent_streams_of_recovering_topics() -> None:
    box = Outbox("e1", 9, 100, policy, state_interval=0.25)
    box.message("map.low", b"x", 0.0, 0.0)
    assert box.states(0.5, 0.5) == []  # nothing has left yet (still in the pacing queue)
    box.flushed("map.low", 1)
    box.message("map.low", b"x", 0.0, 1.0)
    box.message("heartbeat", b"x", 0.0, 1.0)
    assert box.states(1.1, 1.1) == []  # a note comes a state interval after the last message
    (note,) = box.states(1.3, 1.3)
    assert note.seq == 1  # message 2 has not wholly left: not named yet
    box.flushed("map.low", 2)
    box.flushed("map.low", 1)  # (out of order: the highest stays)
    assert box.states(1.4, 1.4) == []  # the next after twice the gap
    (note,) = box.states(1.8, 1.8)
    assert note.kind == STATE and note.topic == "map.low" and note.seq == 2 and note.epoch == 9
    times = [t / 100 for t in range(180, 700) if box.states(t / 100, t / 100)]
    assert times == [2.8, 4.8]  # doubling: 1, then 2 s apart; then past the 5 s deadline
    assert box.states(7.0, 6.5) == []  # past the deadline: nobody is recovering it any more


def test_pacer_allows_a_burst_then_the_rate() -> None:
    p = Pacer(rate=1000, burst=5, now=0.0)
    assert [p.take(0.0) for _ in range(5)] == [0.0] * 5
    assert p.take(0.0) == pytest.approx(0.001)
    assert p.take(0.002) == 0.0  # 2 tokens back, one taken
    assert p.take(0.002) == 0.0
    assert p.take(0.002) > 0.0
    assert Pacer(rate=1000, burst=5, now=0.0).take(100.0, 5) == 0.0  # never above the burst


# --- history and budget ------------------------------------------------------------------------

S = ("mc1", "map.low", 1)


def test_history_returns_what_it_holds_by_ranges_or_whole() -> None:
    h = History(max_bytes=10_000, max_age=10.0)
    for part in range(10):
        h.add(0.0, S, 1, part, b"%d" % part)
    assert h.lookup(S, 1, [(2, 4), (8, 12)]) == [b"2", b"3", b"8", b"9"]
    assert h.lookup(S, 1, []) == [b"%d" % p for p in range(10)]
    assert h.lookup(S, 2, []) == [] and h.misses >= 1
    assert h.lookup(S, 1, [(0, 65536)]) == [b"%d" % p for p in range(10)]  # a huge range costs what is held


def test_history_is_bounded_by_bytes_and_age_oldest_first() -> None:
    h = History(max_bytes=100, max_age=15.0)
    for seq in range(1, 21):
        h.add(float(seq), S, seq, 0, b"x" * 10)
        assert h.bytes <= 100
    assert h.lookup(S, 10, []) == [] and h.lookup(S, 11, []) == [b"x" * 10]  # bytes: the 10 newest
    h.expire(27.5)  # older than 15 s: 11, 12 gone
    assert h.lookup(S, 12, []) == [] and h.lookup(S, 13, []) == [b"x" * 10]
    h.add(100.0, S, 99, 0, b"y")
    assert len(h) == 1 and h.bytes == 1


def test_budget_caps_repairs_at_a_share_of_what_was_sent() -> None:
    b = Budget(share=0.2, cap=100, start=2)
    dest, stranger = ("a", 1), ("b", 1)
    assert not b.spend(stranger)  # never sent to: not a reflector
    b.earn(dest, 50)  # 2 + 10 credits
    assert sum(b.spend(dest) for _ in range(20)) == 12
    b.earn(dest, 10_000)
    assert b.credit(dest) == 100  # capped


def test_budget_table_is_bounded() -> None:
    b = Budget(max_destinations=3)
    for i in range(10):
        b.earn(("a", i))
    assert len(b._credit) == 3 and b.credit(("a", 9)) > 0 and b.credit(("a", 0)) == 0


# --- paths -------------------------------------------------------------------------------------

RELAYS = [
    Relay("relay1", "r1", ("127.0.20.1", 7400)),
    Relay("relay2", "r1", ("127.0.20.2", 7400)),
    Relay("relay3", "r2", ("127.0.20.3", 7400)),
    Relay("relay4", "r3", ("127.0.20.4", 7400)),
]
ALL = {r.id for r in RELAYS}


def test_paths_take_distinct_regions_own_region_first() -> None:
    chosen = choose(RELAYS, ALL, "r2-e1", "r2", 2)
    assert chosen[0].id == "relay3" and len({r.region for r in chosen}) == 2
    assert choose(RELAYS, ALL, "r2-e1", "r2", 2) == chosen  # stable
    three = choose(RELAYS, ALL, "x", "", 3)
    assert len({r.region for r in three}) == 3
    assert len(choose(RELAYS, ALL, "x", "", 9)) == 4  # all of them when there are fewer


def test_paths_spread_publishers_over_relays() -> None:
    firsts = {choose(RELAYS, ALL, f"e{i}", "", 1)[0].id for i in range(50)}
    assert len(firsts) >= 3


def test_paths_pass_over_dead_relays_and_fill_with_them_last() -> None:
    chosen = choose(RELAYS, ALL - {"relay3"}, "r2-e1", "r2", 2)
    assert "relay3" not in {r.id for r in chosen} and len({r.region for r in chosen}) == 2
    only = choose(RELAYS, {"relay1", "relay2"}, "x", "", 2)  # one region left: both its relays
    assert {r.id for r in only} == {"relay1", "relay2"}
    none = choose(RELAYS, set(), "x", "", 2)
    assert len(none) == 2  # nothing alive: still send somewhere


def test_relay_health_grace_then_answers() -> None:
    h = RelayHealth(start=0.0, dead_after=3.0, grace=2.0)
    assert h.alive(RELAYS, 1.0) == ALL  # not heard yet, within grace
    assert h.alive(RELAYS, 2.5) == set()
    assert h.heard("relay1", 2.5)
    assert h.alive(RELAYS, 5.0) == {"relay1"} and h.alive(RELAYS, 5.6) == set()


# --- journal -----------------------------------------------------------------------------------


def test_journal_appends_reads_pages_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "purge.journal"
    j = Journal(path, retain=100, page=3)
    ident = j.id
    assert j.head == 0 and j.read(0).entries == []
    for i in range(5):
        e = j.append(b"p%d" % i, 10.0 + i)
        assert e.seq == i + 1 and e.journal == ident
    page = j.read(1)
    assert [e.seq for e in page.entries] == [2, 3, 4] and page.more and page.head == 5
    assert [e.body for e in j.read(4).entries] == [b"p4"] and not j.read(4).more
    again = Journal(path, retain=100, page=3)
    assert again.id == ident and again.head == 5 and [e.body for e in again.read(3).entries] == [b"p3", b"p4"]


def test_journal_cuts_a_torn_tail_and_keeps_what_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "j"
    j = Journal(path)
    for i in range(3):
        j.append(b"x%d" % i, 0.0)
    with open(path, "ab") as f:
        f.write(b"\x00\x00\x01\x00partial")  # a crash mid-append
    again = Journal(path)
    assert again.head == 3 and again.id == j.id
    assert again.append(b"next", 0.0).seq == 4
    assert [e.body for e in Journal(path).read(0).entries] == [b"x0", b"x1", b"x2", b"next"]


def test_journal_keeps_the_newest_and_says_when_a_reader_is_too_far_behind(tmp_path: Path) -> None:
    path = tmp_path / "j"
    j = Journal(path, retain=10)
    for i in range(35):
        j.append(b"%d" % i, 0.0)
    assert j.head == 35
    gone = j.read(5)
    assert gone.gone and gone.entries == [] and gone.first == 26
    assert [e.seq for e in j.read(25).entries] == list(range(26, 36))
    assert path.stat().st_size < 30 * 30  # rewritten: not every entry kept on disk
    again = Journal(path, retain=10)
    assert again.head == 35 and again.read(5).gone and again.read(25).entries[0].seq == 26
