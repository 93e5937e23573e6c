"""The receiver core: dedupe, reordering, reassembly, gaps, NACK scheduling, deadlines,
epochs, bounds; and a simulated multi-path network (hypothesis) around it."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from akacdn.messaging.envelope import STATE, Datagram, Keyring, Want
from akacdn.messaging.history import History
from akacdn.messaging.receiver import Limits, Receiver
from akacdn.messaging.sender import Outbox

RING = Keyring({1: b"k" * 32}, 1)
R1, R2, R3 = ("198.18.0.1", 7400), ("198.18.0.2", 7400), ("198.18.0.3", 7400)
DEADLINES = {"map": 5.0, "heartbeat": 0.0}


def policy(topic: str) -> float:
    return DEADLINES.get(topic.split(".")[0], 2.0)


def outbox(sender: str = "mc1", epoch: int = 100, chunk: int = 10) -> Outbox:
    return Outbox(sender, epoch, chunk, policy)


def run_timers(rx: Receiver, until: float) -> list:
    """Fire every timer up to `until`, as the shell would; the NACKs sent."""
    out = []
    while (d := rx.next_deadline()) is not None and d <= until:
        out.extend(rx.on_timer(d))
    return out


# --- the common path ---------------------------------------------------------------------------


def test_single_datagram_messages_in_order_and_their_copies() -> None:
    rx, box = Receiver(policy), outbox()
    for i in range(1, 4):
        (d,) = box.message("map.low", b"m%d" % i, 0.0, 0.0)
        verdict, msg = rx.datagram(0.0, d, R1)
        assert verdict == "delivered" and msg is not None and msg.body == b"m%d" % i and msg.seq == i
        assert rx.datagram(0.0, d, R2) == ("duplicate", None)  # the second path's copy
    assert rx.next_deadline() is None and rx.incomplete() == 0


def test_chunked_message_reassembled_in_any_order_with_duplicates() -> None:
    body = bytes(range(256)) * 3
    rx, box = Receiver(policy), outbox(chunk=100)
    ds = box.message("map.low", body, 0.0, 0.0)
    assert len(ds) == 8 and {d.parts for d in ds} == {8} and {d.size for d in ds} == {len(body)}
    order = ds[::-1] + ds[2:5]  # backwards, then copies
    got = []
    for d in order:
        verdict, msg = rx.datagram(0.0, d, R1)
        if msg is not None:
            got.append(msg)
    assert len(got) == 1 and got[0].body == body and got[0].parts == 8 and not got[0].recovered
    assert rx.datagram(0.0, ds[3], R2)[0] == "duplicate"
    assert rx.pending_bytes == 0


def test_reordered_messages_are_delivered_as_they_complete_each_once() -> None:
    rx, box = Receiver(policy, started=0), outbox()  # listening since before the stream began
    ds = [box.message("map.low", b"x%d" % i, 0.0, 0.0)[0] for i in range(1, 6)]
    seen = [rx.datagram(0.0, ds[i], R1)[1] for i in (2, 0, 4, 1, 3)]
    assert [m.seq for m in seen if m] == [3, 1, 5, 2, 4]
    assert all(rx.datagram(0.0, d, R2)[0] == "duplicate" for d in ds)


def test_a_stream_that_began_before_we_listened_is_joined_where_first_heard() -> None:
    box = outbox(epoch=100)
    ds = [box.message("map.low", b"x", 0.0, 0.0)[0] for _ in range(5)]
    late = Receiver(policy, started=150)  # we started after the sender
    assert late.datagram(0.0, ds[3], R1)[0] == "delivered"
    assert late.next_deadline() is None  # 1-3 were before our time: not missing
    assert late.datagram(0.0, ds[1], R1)[0] == "duplicate"
    early = Receiver(policy, started=50)  # we were there first: a lost first message is recovered
    assert early.datagram(0.0, ds[3], R1)[0] == "delivered"
    (n,) = run_timers(early, 1.0)[:1]
    assert n.wants == [Want(1, []), Want(2, []), Want(3, [])]


# --- gaps and NACKs ----------------------------------------------------------------------------


def test_a_gap_is_nacked_after_the_delay_then_with_backoff_then_given_up() -> None:
    lim = Limits(nack_delay=0.01, nack_interval=0.04, nack_backoff=1.5, nack_tries=4)
    rx, box = Receiver(policy, lim), outbox()
    ds = [box.message("map.low", b"x", 0.0, 0.0)[0] for _ in range(3)]
    rx.datagram(0.0, ds[0], R1)
    rx.datagram(0.0, ds[2], R1)  # 2 is missing
    assert rx.next_deadline() == 0.01
    times = []
    while (d := rx.next_deadline()) is not None:
        nacks = rx.on_timer(d)
        if nacks:
            (n,) = nacks
            assert n.wants == [Want(2, [])] and n.topic == "map.low" and n.sender == "mc1" and n.epoch == 100
            times.append(round(d, 4))
    assert times == [0.01, 0.05, 0.11, 0.2]  # +0.04, +0.06, +0.09: x1.5 per try, 4 tries
    (lost,) = rx.lost
    assert lost.seq == 2 and lost.reason == "deadline"
    assert rx.datagram(6.0, ds[1], R1)[0] == "duplicate"  # settled: never delivered late


def test_no_nack_when_the_other_path_fills_the_gap_in_time() -> None:
    rx, box = Receiver(policy), outbox()
    ds = [box.message("map.low", b"x", 0.0, 0.0)[0] for _ in range(3)]
    rx.datagram(0.0, ds[0], R1)
    rx.datagram(0.0, ds[2], R1)
    assert rx.datagram(0.005, ds[1], R2)[0] == "delivered"
    assert run_timers(rx, 10.0) == [] and not rx.lost


def test_nacks_rotate_over_the_upstreams_the_stream_came_through() -> None:
    rx, box = Receiver(policy, Limits(nack_tries=4)), outbox()
    ds = [box.message("map.low", b"x", 0.0, 0.0)[0] for _ in range(3)]
    rx.datagram(0.0, ds[0], R1)
    rx.datagram(0.001, ds[2], R2)
    vias = [n.via for n in run_timers(rx, 10.0)]
    assert vias == [R2, R1, R2, R1]  # most recent first, then the other


def test_recovered_message_is_marked() -> None:
    rx, box = Receiver(policy), outbox()
    ds = [box.message("map.low", b"x", 0.0, 0.0)[0] for _ in range(3)]
    rx.datagram(0.0, ds[0], R1)
    rx.datagram(0.0, ds[2], R1)
    assert run_timers(rx, 0.02)
    verdict, msg = rx.datagram(0.03, ds[1], R1)
    assert verdict == "delivered" and msg is not None and msg.recovered


def test_missing_chunks_are_nacked_as_ranges_and_a_stalled_tail_too() -> None:
    rx, box = Receiver(policy, Limits(tail_delay=0.05)), outbox(chunk=1)
    ds = box.message("map.low", b"abcdefghij", 0.0, 0.0)
    for i in (0, 1, 4, 6):
        rx.datagram(0.0, ds[i], R1)
    (n,) = rx.on_timer(0.01)
    assert n.wants == [Want(1, [(2, 4), (5, 6)])]  # holes below the newest part; 7-9 may be on their way
    nacks = run_timers(rx, 0.06)
    assert nacks[-1].wants == [Want(1, [(2, 4), (5, 6), (7, 10)])]  # stalled: the tail too


def test_state_note_reveals_a_lost_tail() -> None:
    rx, box = Receiver(policy), outbox()
    ds = [box.message("map.low", b"x", 0.0, 0.0)[0] for _ in range(3)]
    rx.datagram(0.0, ds[0], R1)  # 2 and 3 lost: nothing after them shows the gap
    assert rx.next_deadline() is None
    box.flushed("map.low", 3)  # all three have left the sender
    (note,) = box.states(0.0, 0.3)  # a state interval (0.25 s) after the last message
    assert note.kind == STATE and note.seq == 3
    assert rx.state(0.3, note, R1) == "ok"
    (n,) = rx.on_timer(0.31)
    assert n.wants == [Want(2, []), Want(3, [])]


def test_no_recovery_topics_drop_older_messages_and_never_nack() -> None:
    rx, box = Receiver(policy), outbox()
    ds = [box.message("heartbeat", b"h", 0.0, 0.0)[0] for _ in range(4)]
    assert rx.datagram(0.0, ds[0], R1)[0] == "delivered"
    assert rx.datagram(0.0, ds[2], R1)[0] == "delivered"
    assert rx.datagram(0.0, ds[1], R1)[0] == "duplicate"  # older than the newest: of no use
    assert rx.next_deadline() is None and run_timers(rx, 100.0) == []
    assert rx.state(0.0, Datagram(STATE, "mc1", "heartbeat", 100, 9, 0, 0, 0, 0.0, b""), R1) == "ignored"
    assert box.states(0.0, 0.0) == []  # and senders send no STATE for them


def test_nack_off_gives_up_at_the_deadline_without_asking() -> None:
    rx, box = Receiver(policy, Limits(nack=False)), outbox()
    ds = [box.message("map.low", b"x", 0.0, 0.0)[0] for _ in range(3)]
    rx.datagram(0.0, ds[0], R1)
    rx.datagram(0.0, ds[2], R1)
    assert run_timers(rx, 10.0) == []
    assert [(x.seq, x.reason) for x in rx.lost] == [(2, "deadline")]


# --- epochs, validation, bounds ----------------------------------------------------------------


def test_a_restarted_sender_is_a_new_stream_and_its_old_life_is_refused() -> None:
    rx = Receiver(policy)
    old, new = outbox(epoch=100), outbox(epoch=200)
    d_old = [old.message("map.low", b"o", 0.0, 0.0)[0] for _ in range(5)]
    rx.datagram(0.0, d_old[0], R1)
    rx.datagram(0.0, d_old[2], R1)  # seq 2 pending
    (d_new,) = new.message("map.low", b"n", 0.0, 0.0)
    verdict, msg = rx.datagram(1.0, d_new, R1)
    assert verdict == "delivered" and msg is not None and msg.seq == 1 and msg.epoch == 200
    assert [(x.seq, x.reason) for x in rx.lost] == [(2, "restarted")]
    assert rx.datagram(1.0, d_old[3], R1)[0] == "stale_epoch"  # a replay of the old life
    # a sender silent for long may come back with any epoch (its clock stepped back)
    (d_back,) = outbox(epoch=50).message("map.low", b"b", 40.0, 40.0)
    assert rx.datagram(40.0, d_back, R1)[0] == "delivered"


def test_inconsistent_or_impossible_chunks_are_refused() -> None:
    rx = Receiver(policy, Limits(max_message=1000))
    mk = lambda part, parts, size, body: Datagram(0, "s", "map.low", 1, 1, part, parts, size, 0.0, body)  # noqa: E731
    assert rx.datagram(0.0, mk(0, 0, 0, b""), R1)[0] == "bad_chunk"  # no parts
    assert rx.datagram(0.0, mk(3, 3, 30, b"x"), R1)[0] == "bad_chunk"  # part beyond parts
    assert rx.datagram(0.0, mk(0, 2, 30, b"x" * 31), R1)[0] == "bad_chunk"  # body beyond size
    assert rx.datagram(0.0, mk(0, 5, 3, b"x"), R1)[0] == "bad_chunk"  # more parts than bytes
    assert rx.datagram(0.0, mk(0, 2, 2000, b"x"), R1)[0] == "too_big"
    assert rx.datagram(0.0, mk(0, 2, 30, b"x"), R1)[0] == "new"
    assert rx.datagram(0.0, mk(1, 3, 30, b"x"), R1)[0] == "bad_chunk"  # disagrees with part 0
    assert rx.datagram(0.0, mk(1, 2, 31, b"x"), R1)[0] == "bad_chunk"
    # parts that do not add up to the announced size: refused when complete
    verdict, msg = rx.datagram(0.0, mk(1, 2, 30, b"y"), R1)
    assert verdict == "bad_chunk" and msg is None and rx.lost[-1].reason == "bad_size"


def test_a_seq_far_ahead_resynchronises_the_stream() -> None:
    rx, box = Receiver(policy, Limits(window=100)), outbox()
    d1 = box.message("map.low", b"a", 0.0, 0.0)[0]
    rx.datagram(0.0, d1, R1)
    far = Datagram(0, "mc1", "map.low", 100, 10_000, 0, 1, 1, 0.0, b"z")
    assert rx.datagram(0.0, far, R1)[0] == "delivered"
    assert rx.incomplete() == 0  # not 9,998 placeholders
    assert rx.next_deadline() is None


def test_flood_of_incomplete_messages_stays_within_the_byte_bounds() -> None:
    lim = Limits(pending_bytes=50_000, sender_bytes=20_000, max_message=10**6)
    rx = Receiver(policy, lim)
    rnd = random.Random(1)
    for i in range(3000):
        sender = f"s{i % 7}"
        seq = rnd.randrange(1, 50)
        d = Datagram(0, sender, "map.low", 1, seq, rnd.randrange(0, 100), 100, 100_000, 0.0, b"x" * 900)
        rx.datagram(i * 0.001, d, R1)
        assert rx.pending_bytes <= lim.pending_bytes
        assert all(v <= lim.sender_bytes for v in rx._senders.values())
    assert any(x.reason == "memory" for x in rx.lost)
    run_timers(rx, 1000.0)  # and every incomplete message is let go at its deadline
    assert rx.pending_bytes == 0 and rx.incomplete() == 0


def test_incomplete_message_count_and_stream_count_are_bounded() -> None:
    lim = Limits(max_incomplete=50, max_streams=20)
    rx = Receiver(policy, lim)
    for i in range(500):
        d = Datagram(0, f"s{i}", "map.low", 1, 5 + i % 3, 0, 3, 3, 0.0, b"x")
        rx.datagram(0.0, d, R1)
        assert rx.incomplete() <= 50 and len(rx) <= 20


def test_never_completed_messages_of_no_recovery_topics_are_dropped_after_the_hole_timeout() -> None:
    rx, box = Receiver(policy, Limits(hole_timeout=2.0)), outbox(chunk=1)
    ds = box.message("heartbeat", b"abc", 0.0, 0.0)
    rx.datagram(0.0, ds[0], R1)
    assert run_timers(rx, 1.9) == [] and rx.incomplete() == 1
    run_timers(rx, 2.0)
    assert rx.incomplete() == 0 and rx.pending_bytes == 0 and rx.lost[-1].reason == "hole"


def test_relay_mode_tracks_parts_without_their_bytes() -> None:
    rx, box = Receiver(policy, reassemble=False), outbox(chunk=4)
    ds = box.message("map.low", b"0123456789", 0.0, 0.0)
    assert [rx.datagram(0.0, d, R1)[0] for d in ds] == ["new", "new", "delivered"]
    assert rx.pending_bytes == 0
    assert [rx.datagram(0.0, d, R1)[0] for d in ds] == ["duplicate"] * 3


# --- a simulated network -----------------------------------------------------------------------


class Net:
    """A publisher, `k` relays with a history each, one subscriber; each hop loses,
    duplicates and delays datagrams at random. Relays recover from the publisher's
    history and the subscriber from the relays', both through receiver cores."""

    def __init__(self, rnd: random.Random, loss: float, k: int, lim: Limits) -> None:
        self.rnd, self.loss = rnd, loss
        self.pub_history = History(10**9, 10**6)
        self.relays = [
            (f"r{i}", Receiver(policy, lim, reassemble=False, started=0), History(10**9, 10**6)) for i in range(k)
        ]
        self.sub = Receiver(policy, lim, started=0)
        self.events: list[tuple[float, int, str, object]] = []
        self.latency: dict[str, float] = {}
        self.n = 0
        self.delivered: list = []

    def send(self, at: float, where: str, what: object) -> None:
        if self.rnd.random() < self.loss:
            return
        # each path has its own latency (1-15 ms), plus jitter well under the NACK delay
        base = self.latency.setdefault(where, self.rnd.uniform(0.001, 0.015))
        for _ in range(2 if self.rnd.random() < 0.05 else 1):  # the network duplicates, rarely
            self.n += 1
            self.events.append((at + base + self.rnd.uniform(0, 0.001), self.n, where, what))

    def publish(self, at: float, ds: list[Datagram]) -> None:
        for d in ds:
            self.pub_history.add(at, ("mc1", d.topic, d.epoch), d.seq, d.part, RING.seal(d))
            for name, _, _ in self.relays:
                self.send(at, name, d)

    def run(self, until: float) -> None:
        while True:
            timers = [(rx.next_deadline(), name) for name, rx, _ in self.relays] + [(self.sub.next_deadline(), "sub")]
            timers = [(t, name) for t, name in timers if t is not None]
            nxt_event = min(self.events, default=None)
            nxt_timer = min(timers, default=None)
            if nxt_event is None and nxt_timer is None:
                return
            if nxt_timer is not None and (nxt_event is None or nxt_timer[0] < nxt_event[0]):
                t, name = nxt_timer
                if t > until:
                    return
                self.timer(t, name)
                continue
            assert nxt_event is not None
            if nxt_event[0] > until:
                return
            self.events.remove(nxt_event)
            self.deliver(*nxt_event[:1], *nxt_event[2:])

    def timer(self, t: float, name: str) -> None:
        rx = self.sub if name == "sub" else next(r for n, r, _ in self.relays if n == name)
        for n in rx.on_timer(t):
            self.send(t, f"nack:{n.via}:{name}", n)

    def deliver(self, t: float, where: str, what: object) -> None:
        if where.startswith("nack:"):  # "nack:<to>:<from>": answered from <to>'s history
            _, to, frm = where.split(":")
            history = self.pub_history if to == "pub" else next(h for n, _, h in self.relays if n == to)
            for want in what.wants:  # type: ignore[attr-defined]
                for data in history.lookup(("mc1", what.topic, what.epoch), want.seq, want.parts):  # type: ignore[attr-defined]
                    self.send(t, frm if to == "pub" else f"sub@{to}", RING.open(data))
            return
        d: Datagram = what  # type: ignore[assignment]
        if where.startswith("sub@"):  # to the subscriber, through relay <name>
            relay = where[4:]
            if d.kind == STATE:
                self.sub.state(t, d, relay)
                return
            _, msg = self.sub.datagram(t, d, relay)
            if msg is not None:
                self.delivered.append(msg)
            return
        name, rx, hist = next(r for r in self.relays if r[0] == where)  # to a relay, from the publisher
        if d.kind == STATE:
            rx.state(t, d, "pub")
            self.send(t, f"sub@{name}", d)
            return
        verdict, _ = rx.datagram(t, d, "pub")
        if verdict in ("new", "delivered"):
            hist.add(t, ("mc1", d.topic, d.epoch), d.seq, d.part, RING.seal(d))
            self.send(t, f"sub@{name}", d)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    loss=st.sampled_from([0.0, 0.05, 0.1, 0.2]),
    k=st.integers(1, 3),
    sizes=st.lists(st.integers(0, 120), min_size=1, max_size=25),
)
def test_simulated_network_delivers_each_message_once_and_intact(
    seed: int, loss: float, k: int, sizes: list[int]
) -> None:
    rnd = random.Random(seed)
    lim = Limits(nack_tries=30, nack_max_interval=0.2, window=1000)
    net = Net(rnd, loss, k, lim)
    box = Outbox("mc1", 7, 10, policy)
    bodies = {}
    t = 0.0
    for size in sizes:
        body = rnd.randbytes(size)
        ds = box.message("map.low", body, t, t)
        bodies[ds[0].seq] = body
        net.publish(t, ds)
        box.flushed("map.low", ds[0].seq)
        t += rnd.uniform(0.0, 0.05)
    for tick in range(1, 25):  # the publisher's STATE notes (asked for every 0.25 s, as the
        note_at = t + 0.25 * tick  # client's timer does) reveal a lost tail
        net.run(note_at)
        for note in box.states(note_at, note_at):
            net.publish(note_at, [note])
    net.run(1000.0)
    seqs = [m.seq for m in net.delivered]
    assert len(seqs) == len(set(seqs)), "a message was delivered twice"
    for m in net.delivered:
        assert m.body == bodies[m.seq]
    lost = {x.seq for x in net.sub.lost}
    assert set(seqs) | lost == set(bodies), "every message is delivered or given up, once"
    assert not set(seqs) & lost
    if loss == 0.0:
        assert set(seqs) == set(bodies) and not any(m.recovered for m in net.delivered)
    if loss <= 0.1:  # with 30 tries before a 5 s deadline, recovery gets everything through
        assert set(seqs) == set(bodies)
    assert net.sub.pending_bytes == 0 and net.sub.incomplete() == 0


_datagrams = st.lists(
    st.tuples(
        st.sampled_from([0, 0, 0, STATE]),  # kind
        st.sampled_from(["a", "b", "c"]),  # sender
        st.sampled_from(["map.low", "heartbeat", "purge"]),  # topic
        st.integers(0, 3),  # epoch
        st.integers(0, 10_000),  # seq
        st.integers(0, 70),  # part
        st.integers(0, 70),  # parts
        st.integers(0, 5000),  # size
        st.binary(max_size=300),
        st.floats(0, 0.5),  # time step
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(items=_datagrams)
def test_any_authenticated_input_is_answered_with_a_verdict_within_the_bounds(items: list) -> None:
    """Whatever a key holder sends: no exception, a verdict for each, the bounds hold, and
    every timer eventually lets go of every incomplete message."""
    lim = Limits(pending_bytes=20_000, sender_bytes=8_000, max_incomplete=100, max_streams=5, window=500)
    rx = Receiver(policy, lim, started=0)
    now = 0.0
    for kind, sender, topic, epoch, seq, part, parts, size, body, step in items:
        now += step
        d = Datagram(kind, sender, topic, epoch, seq, part, parts, size, 0.0, body)
        verdict = rx.state(now, d, R1) if kind == STATE else rx.datagram(now, d, R1)[0]
        assert isinstance(verdict, str)
        assert rx.pending_bytes <= lim.pending_bytes and rx.incomplete() <= lim.max_incomplete and len(rx) <= 5
        rx.on_timer(now)
    run_timers(rx, now + 1000.0)
    assert rx.incomplete() == 0 and rx.pending_bytes == 0 and rx.next_deadline() is None


def test_a_stream_first_heard_far_into_it_is_joined_even_if_it_began_after_us() -> None:
    """A relay that becomes one of a publisher's paths mid-stream (the other relay died)
    must not ask the publisher for the whole past of the stream."""
    box = outbox(epoch=100)
    ds = [box.message("map.low", b"x", 0.0, 0.0)[0] for _ in range(200)]
    rx = Receiver(policy, Limits(join_slack=64), started=50)
    assert rx.datagram(0.0, ds[150], R1)[0] == "delivered"
    assert rx.next_deadline() is None and rx.incomplete() == 0


def test_a_stream_back_far_ahead_after_a_silence_is_joined_anew() -> None:
    box = outbox()
    ds = [box.message("map.low", b"x", 0.0, 0.0)[0] for _ in range(300)]
    rx = Receiver(policy, Limits(join_slack=64, rejoin_after=1.0), started=0)
    for d in ds[:10]:
        rx.datagram(0.0, d, R1)
    assert rx.datagram(5.0, ds[250], R1)[0] == "delivered"  # 5 s later, 240 ahead: a path change
    assert rx.next_deadline() is None and rx.incomplete() == 0
    assert [(x.seq, x.reason) for x in rx.lost] == [(11, "rejoined")]
    assert rx.datagram(5.1, ds[20], R1)[0] == "duplicate"
    # a small gap after a silence, or a big one without, is still recovered
    rx2 = Receiver(policy, Limits(join_slack=64, rejoin_after=1.0), started=0)
    rx2.datagram(0.0, ds[0], R1)
    rx2.datagram(5.0, ds[30], R1)
    assert rx2.incomplete() == 29
    rx3 = Receiver(policy, Limits(join_slack=64, rejoin_after=1.0), started=0)
    rx3.datagram(0.0, ds[0], R1)
    rx3.datagram(0.5, ds[200], R1)
    assert rx3.incomplete() == 199


def test_nacks_pass_over_an_upstream_not_heard_lately() -> None:
    rx, box = Receiver(policy, Limits(nack_tries=4, via_fresh=1.0)), outbox()
    ds = [box.message("map.low", b"x", 0.0, 0.0)[0] for _ in range(6)]
    rx.datagram(0.0, ds[0], R1)  # R1 carried the stream, then died
    rx.datagram(2.0, ds[1], R2)
    rx.datagram(2.0, ds[3], R2)  # 3 is missing: only R2 was heard lately
    assert {n.via for n in run_timers(rx, 10.0)} == {R2}
