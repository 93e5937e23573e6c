"""Messaging cores: the authenticated datagram envelope (keys, rotation, fuzz), the replay guard of
control datagrams, the relay's subscription table."""

from __future__ import annotations

import hashlib
import hmac

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from akacdn.messaging.envelope import (
    DATA,
    HEADER,
    MAX_DATAGRAM,
    NACK,
    TAG,
    Datagram,
    EnvelopeError,
    Keyring,
    Nack,
    Want,
    decode_nack,
    decode_topics,
    encode,
)
from akacdn.messaging.replay import ReplayGuard
from akacdn.messaging.subscriptions import SubscriptionTable

KEY = bytes(range(32))
RING = Keyring({1: KEY}, 1)
DG = Datagram(DATA, "r1-e1", "heartbeat", 1_700_000_000_000_000_000, 7, 0, 1, 5, 1_700_000_000.25, b"\x81\xa1k\xa1v")

# --- envelope --------------------------------------------------------------------------------


def test_seal_open_round_trip() -> None:
    data = RING.seal(DG)
    assert len(data) > HEADER and data[TAG] == 1
    assert RING.open(data) == DG


@given(
    sender=st.text(max_size=64),
    topic=st.text(max_size=64),
    epoch=st.integers(0, 2**63 - 1),
    seq=st.integers(0, 2**63 - 1),
    part=st.integers(0, 65535),
    sent_at=st.floats(allow_nan=False, allow_infinity=False),
    body=st.binary(max_size=2000),
)
def test_round_trip_any_datagram(
    sender: str, topic: str, epoch: int, seq: int, part: int, sent_at: float, body: bytes
) -> None:
    d = Datagram(DATA, sender, topic, epoch, seq, part, 65535, len(body), sent_at, body)
    assert RING.open(RING.seal(d)) == d


def _reason(ring: Keyring, data: bytes) -> str:
    with pytest.raises(EnvelopeError) as got:
        ring.open(data)
    return got.value.reason


@pytest.mark.parametrize(
    "where",
    [0, TAG - 1, HEADER, HEADER + 5, -1],
    ids=["tag-first", "tag-last", "payload-first", "payload-mid", "payload-last"],
)
def test_flipped_byte_is_bad_mac(where: int) -> None:
    data = bytearray(RING.seal(DG))
    data[where] ^= 0x01
    assert _reason(RING, bytes(data)) == "bad_mac"


def test_wrong_key_is_bad_mac() -> None:
    assert _reason(Keyring({1: bytes(32)}, 1), RING.seal(DG)) == "bad_mac"


def test_key_id_names_the_key_and_an_unknown_id_is_refused() -> None:
    data = bytearray(RING.seal(DG))
    data[TAG] = 9
    assert _reason(RING, bytes(data)) == "unknown_key"


def test_rotation_two_keys_accepted_only_the_sending_one_used() -> None:
    old, new = Keyring({1: KEY}, 1), Keyring({2: b"n" * 32}, 2)
    both_old = Keyring({1: KEY, 2: b"n" * 32}, 1)  # phase 1: new key accepted, old still sent
    both_new = Keyring({1: KEY, 2: b"n" * 32}, 2)  # phase 2: new key sent, old still accepted
    for sender in (old, both_old, both_new, new):
        for receiver in (old, both_old, both_new, new):
            data = sender.seal(DG)
            if data[TAG] in receiver.keys:
                assert receiver.open(data) == DG
            else:
                assert _reason(receiver, data) == "unknown_key"
    assert both_new.seal(DG)[TAG] == 2 and both_old.seal(DG)[TAG] == 1
    with pytest.raises(ValueError):
        Keyring({1: KEY}, 2)


@pytest.mark.parametrize("size", [0, 1, TAG, HEADER, MAX_DATAGRAM + 1])
def test_short_or_oversized_is_size(size: int) -> None:
    assert _reason(RING, b"\x01" * size) == "size"


def test_valid_mac_over_non_msgpack_or_out_of_range_fields_is_malformed() -> None:
    bad = [
        b"\xc1",
        b"not msgpack at all",
        msgspec.msgpack.encode(["only", "three", 3]),
        msgspec.msgpack.encode([9, "s", "t", 1, 1, 0, 1, 1, 0.0, b""]),  # unknown kind
        msgspec.msgpack.encode([0, "s" * 65, "t", 1, 1, 0, 1, 1, 0.0, b""]),  # sender too long
        msgspec.msgpack.encode([0, "s", "t", -1, 1, 0, 1, 1, 0.0, b""]),  # negative epoch
        msgspec.msgpack.encode([0, "s", "t", 1, 1, 70000, 1, 1, 0.0, b""]),  # part out of range
    ]
    for raw in bad:
        payload = b"\x01" + raw
        data = hmac.digest(KEY, payload, hashlib.sha256) + payload
        assert _reason(RING, data) == "malformed"


@settings(max_examples=500)
@given(data=st.binary(max_size=300))
def test_open_raises_only_envelope_error_on_anything(data: bytes) -> None:
    try:
        RING.open(data)
    except EnvelopeError:
        pass
    payload = b"\x01" + data  # and with a valid tag over arbitrary bytes
    try:
        RING.open(hmac.digest(KEY, payload, hashlib.sha256) + payload)
    except EnvelopeError:
        pass


def test_nack_and_topics_bodies() -> None:
    n = Nack("mc1", "map.low", 5, [Want(3, []), Want(4, [(0, 2), (7, 9)])])
    assert decode_nack(encode(n)) == n
    assert decode_topics(encode(["a", "b"])) == ["a", "b"]
    for bad in (b"\xc1", encode([1, 2]), encode(["x" * 65]), encode([["s", "t", 1, []]])):
        with pytest.raises(EnvelopeError):
            decode_topics(bad)
        with pytest.raises(EnvelopeError):
            decode_nack(bad)
    assert NACK == 2


# --- replay guard ----------------------------------------------------------------------------

NOW = 1000.0


def test_first_ok_then_duplicate() -> None:
    g = ReplayGuard()
    assert g.check("a", 10, NOW, NOW) == "ok"
    assert g.check("a", 10, NOW, NOW) == "duplicate"
    assert g.check("b", 10, NOW, NOW) == "ok"  # sequences are per sender


def test_older_but_in_window_accepted_once() -> None:
    g = ReplayGuard(window=100)
    assert g.check("a", 50, NOW, NOW) == "ok"
    assert g.check("a", 60, NOW, NOW) == "ok"
    assert g.check("a", 55, NOW, NOW) == "ok"  # late, but new: a reordered path
    assert g.check("a", 55, NOW, NOW) == "duplicate"
    assert g.check("a", 60, NOW, NOW) == "duplicate"


def test_stale_beyond_window() -> None:
    g = ReplayGuard(window=100)
    assert g.check("a", 1000, NOW, NOW) == "ok"
    assert g.check("a", 900, NOW, NOW) == "stale"
    assert g.check("a", 901, NOW, NOW) == "ok"
    # the window follows the highest sequence
    assert g.check("a", 5000, NOW, NOW) == "ok"
    assert g.check("a", 4000, NOW, NOW) == "stale"


def test_stale_after_many_messages_prune_the_seen_set() -> None:
    g = ReplayGuard(window=8)
    for seq in range(1, 40):
        assert g.check("a", seq, NOW, NOW) == "ok"
    for seq in range(1, 32):
        assert g.check("a", seq, NOW, NOW) == "stale"
    for seq in range(32, 40):
        assert g.check("a", seq, NOW, NOW) == "duplicate"


@pytest.mark.parametrize("sent_at", [NOW - 30.5, NOW + 30.5, 0.0])
def test_too_old_by_time(sent_at: float) -> None:
    g = ReplayGuard(max_age=30.0)
    assert g.check("a", 1, sent_at, NOW) == "too_old"
    assert g.check("a", 1, NOW - 29.0, NOW) == "ok"  # refused ones were not remembered


def test_restarted_sender_with_higher_seq_is_accepted() -> None:
    g = ReplayGuard(window=4096)
    boot1 = 1_700_000_000_000_000  # sequences start at boot time in microseconds
    for i in range(5):
        assert g.check("r1-e1", boot1 + i, NOW, NOW) == "ok"
    boot2 = boot1 + 60_000_000  # restarted a minute later
    assert g.check("r1-e1", boot2, NOW + 60, NOW + 60) == "ok"
    assert g.check("r1-e1", boot2 + 1, NOW + 60, NOW + 60) == "ok"
    assert g.check("r1-e1", boot1 + 4, NOW + 60, NOW + 60) == "stale"  # old life replayed


def test_senders_table_is_bounded_least_recently_heard_first_out() -> None:
    g = ReplayGuard(max_senders=2)
    assert g.check("a", 1, NOW, NOW) == "ok"
    assert g.check("b", 1, NOW, NOW) == "ok"
    assert g.check("a", 2, NOW, NOW) == "ok"  # a is now the most recent
    assert g.check("c", 1, NOW, NOW) == "ok"  # table full: b goes
    assert len(g._senders) == 2
    assert g.check("a", 2, NOW, NOW) == "duplicate"  # a is still remembered
    assert g.check("c", 1, NOW, NOW) == "duplicate"
    # b was forgotten: the cost of the bound is that its in-age messages pass once more
    assert g.check("b", 1, NOW, NOW) == "ok"
    assert len(g._senders) == 2


_messages = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 300), st.floats(-40.0, 40.0)),
    max_size=300,
)


@settings(max_examples=300)
@given(msgs=_messages, window=st.integers(1, 64))
def test_never_accepts_the_same_sender_seq_twice(msgs: list[tuple[str, int, float]], window: int) -> None:
    g = ReplayGuard(window=window, max_age=30.0, max_senders=3)
    accepted: set[tuple[str, int]] = set()
    highest: dict[str, int] = {}
    for sender, seq, skew in msgs:
        verdict = g.check(sender, seq, NOW + skew, NOW)
        if abs(skew) > 30.0:
            assert verdict == "too_old"
        if verdict == "ok":
            assert (sender, seq) not in accepted
            accepted.add((sender, seq))
            highest[sender] = max(highest.get(sender, seq), seq)
        elif verdict == "stale":
            assert seq <= highest[sender] - window
        elif verdict == "duplicate":
            assert (sender, seq) in accepted
    assert len(g._senders) <= 3


# --- subscription table ----------------------------------------------------------------------

A, B, C = ("127.0.1.11", 7400), ("127.0.1.12", 7400), ("127.0.30.1", 7400)


def test_targets_by_topic() -> None:
    t = SubscriptionTable()
    assert t.subscribe(A, ["map.top", "map.low.r1"], now=0.0, lease=10.0)
    assert t.subscribe(B, ["map.low.r1"], now=0.0, lease=10.0)
    assert t.subscribe(C, ["heartbeat"], now=0.0, lease=10.0)
    assert sorted(t.targets("map.low.r1", 1.0)) == [A, B]
    assert t.targets("map.top", 1.0) == [A]
    assert t.targets("heartbeat", 1.0) == [C]
    assert t.targets("map.low.r2", 1.0) == []


def test_resubscribe_replaces_topics_and_renews_lease() -> None:
    t = SubscriptionTable()
    t.subscribe(A, ["map.top"], now=0.0, lease=10.0)
    t.subscribe(A, ["map.low.r1"], now=8.0, lease=10.0)
    assert t.targets("map.top", 9.0) == []
    assert t.targets("map.low.r1", 15.0) == [A]  # renewed at 8 until 18
    assert len(t) == 1


def test_lease_expiry() -> None:
    t = SubscriptionTable()
    t.subscribe(A, ["x"], now=0.0, lease=5.0)
    t.subscribe(B, ["x"], now=3.0, lease=5.0)
    assert sorted(t.targets("x", 5.0)) == [A, B]
    assert t.targets("x", 6.0) == [B]
    assert t.expire(6.0) == 1 and len(t) == 1
    assert t.targets("x", 9.0) == []
    assert t.expire(9.0) == 1 and len(t) == 0


def test_table_full_refuses_new_subscribers_but_renews_old_ones() -> None:
    t = SubscriptionTable(max_subscribers=2)
    assert t.subscribe(A, ["x"], 0.0, 10.0)
    assert t.subscribe(B, ["x"], 0.0, 10.0)
    assert not t.subscribe(C, ["x"], 1.0, 10.0)
    assert t.targets("x", 1.0) == [A, B] and len(t) == 2
    assert t.subscribe(A, ["x", "y"], 2.0, 10.0)  # a known subscriber may renew
    # once a lease runs out there is room again
    assert t.subscribe(C, ["x"], 11.0, 10.0)
    assert sorted(t.targets("x", 11.0)) == [A, C]
    assert len(t) == 2


def test_too_many_topics_refused() -> None:
    t = SubscriptionTable(max_topics=3)
    assert not t.subscribe(A, ["a", "b", "c", "d"], 0.0, 10.0)
    assert len(t) == 0
    assert t.subscribe(A, ["a", "b", "c"], 0.0, 10.0)
    assert not t.subscribe(A, ["a", "b", "c", "d"], 1.0, 10.0)  # refusal keeps the old lease
    assert t.targets("c", 5.0) == [A]


def test_times_must_be_believable() -> None:
    from akacdn.messaging.envelope import stale

    now = 1_700_000_000.0
    d = Datagram(DATA, "e", "t", int((now - 100) * 1e9), 1, 0, 1, 1, now, b"x")
    assert stale(d, now, 30.0) is None
    assert stale(d, now + 31, 30.0) == "too_old"  # a replay from long ago
    assert stale(d, now - 31, 30.0) == "too_old"  # or a clock far ahead
    future = Datagram(DATA, "e", "t", int((now + 3600) * 1e9), 1, 0, 1, 1, now, b"x")
    assert stale(future, now, 30.0) == "bad_epoch"  # an epoch from the future would shut out the real stream


def test_topics_of_tells_a_renewal_from_a_change() -> None:
    t = SubscriptionTable()
    assert t.topics_of(A) is None
    t.subscribe(A, ["x", "y"], 0.0, 10.0)
    assert t.topics_of(A) == frozenset({"x", "y"})
