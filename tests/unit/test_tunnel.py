"""Tunnel grants: seal/open, every refusal, key rotation, domain separation from messaging,
the replay cache (bounded over time, fail closed when full), fuzz."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from akacdn.edge.tunnel import (
    MAX_HEADER,
    REASONS,
    TAG,
    Grant,
    SeenGrants,
    TunnelKeys,
    TunnelRefused,
    issue,
    tunnel_key,
)
from akacdn.messaging.envelope import DATA, Datagram, EnvelopeError, Keyring

KEY = bytes(range(32))
KEYS = TunnelKeys({1: KEY}, 1)
NOW = 1_700_000_000.0
NONCE = b"n" * 16
REQ: dict[str, Any] = {"customer": "c1", "method": "GET", "target": "/a/b.jpg?x=1", "purpose": "sureroute"}


def grant(**kw: Any) -> Grant:
    args: dict[str, Any] = {**REQ, "sender": "r1-e1", "hops": 1, "now": NOW, "nonce": NONCE} | kw
    return issue(**args)


def opens(value: str, now: float = NOW, keys: TunnelKeys = KEYS, seen: SeenGrants | None = None, **kw: Any) -> Grant:
    return keys.open(value, now, **({**REQ, "seen": seen} | kw))


def reason(value: str, now: float = NOW, keys: TunnelKeys = KEYS, seen: SeenGrants | None = None, **kw: Any) -> str:
    with pytest.raises(TunnelRefused) as got:
        opens(value, now, keys, seen, **kw)
    assert got.value.reason in REASONS
    return got.value.reason


def unb64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def resign(raw_body: bytes, key_id: int = 1, key: bytes = KEY) -> str:
    """A header with a valid tunnel tag over an arbitrary body."""
    payload = bytes([key_id]) + raw_body
    return b64(hmac.digest(tunnel_key(key), payload, hashlib.sha256) + payload)


def wire(g: Grant, **kw: Any) -> bytes:
    """The msgpack body of a grant, with some fields replaced (as a peer's bug would)."""
    th = hashlib.sha256(g.target.encode()).digest()
    fields = [g.customer, g.method, th, g.sender, g.hops, g.issued, g.expires, g.nonce, g.purpose]
    names = ["customer", "method", "target_hash", "sender", "hops", "issued", "expires", "nonce", "purpose"]
    for k, v in kw.items():
        fields[names.index(k)] = v
    return msgspec.msgpack.encode(fields)


# --- seal and open ---------------------------------------------------------------------------


def test_round_trip_and_header_shape() -> None:
    g = grant()
    value = KEYS.seal(g)
    assert value.isascii() and "=" not in value and len(value) < 250
    assert all(c.isalnum() or c in "-_" for c in value)
    assert opens(value) == g
    assert opens(value, NOW + 9.99) == g and opens(value, NOW - 2.0) == g  # lifetime and skew


def test_longest_grant_is_short_whatever_the_target() -> None:
    g = grant(customer="c" * 64, method="M" * 16, sender="s" * 64, target="/" + "x" * 100_000, hops=255)
    value = TunnelKeys({1: KEY}, 1, max_hops=255).seal(g)
    assert len(value) <= 400 <= MAX_HEADER
    wide = grant(customer="\U0001f600" * 64, method="\U0001f600" * 16, sender="\U0001f600" * 64, hops=255)
    assert len(TunnelKeys({1: KEY}, 1, max_hops=255).seal(wide)) <= MAX_HEADER  # 4 UTF-8 bytes a character


@settings(max_examples=200)
@given(
    st.fixed_dictionaries(
        {
            "customer": st.text(min_size=1, max_size=64),
            "method": st.text(min_size=1, max_size=16),
            "target": st.text(max_size=3000),
            "sender": st.text(min_size=1, max_size=64),
            "hops": st.integers(0, 3),
            "now": st.floats(0, 2e9),
            "lifetime": st.floats(0.001, 29),
            "nonce": st.binary(min_size=16, max_size=16),
            "purpose": st.sampled_from(["sureroute", "parent"]),
        }
    )
)
def test_round_trip_any_grant(args: dict[str, Any]) -> None:
    g = issue(**args)
    if not g.expires > g.issued:  # the lifetime lost to rounding at a large `now`
        return
    value = KEYS.seal(g)
    assert len(value) <= MAX_HEADER
    request = {k: args[k] for k in ("customer", "method", "target", "purpose")}
    assert KEYS.open(value, args["now"], **request, seen=SeenGrants()) == g


@pytest.mark.parametrize(
    "bad",
    [
        {"customer": ""},
        {"customer": "c" * 65},
        {"sender": "s" * 65},
        {"method": ""},
        {"hops": -1},
        {"hops": 256},
        {"nonce": b"short"},
        {"lifetime": 0.0},
        {"lifetime": -1.0},
        {"now": float("nan")},
        {"now": float("inf")},
        {"now": -5.0},
        {"purpose": "other"},
    ],
)
def test_seal_refuses_a_grant_that_could_never_open(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        KEYS.seal(grant(**bad))


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("where", [0, TAG - 1, TAG + 1, TAG + 10, -1], ids=["tag0", "tag-last", "body0", "body", "end"])
def test_flipped_byte_is_bad_signature(where: int) -> None:
    raw = bytearray(unb64(KEYS.seal(grant())))
    raw[where] ^= 0x01
    assert reason(b64(bytes(raw))) == "bad_signature"


def test_unknown_key_id_and_wrong_key() -> None:
    raw = bytearray(unb64(KEYS.seal(grant())))
    raw[TAG] = 9
    assert reason(b64(bytes(raw))) == "unknown_key"
    assert reason(KEYS.seal(grant()), keys=TunnelKeys({1: bytes(32)}, 1)) == "bad_signature"


def test_time_window() -> None:
    value = KEYS.seal(grant())  # issued NOW, expires NOW + 10
    assert reason(value, NOW + 10.0) == "expired"
    assert reason(value, NOW + 1e6) == "expired"
    assert reason(value, NOW - 2.01) == "not_yet_valid"  # beyond the 2 s skew
    assert reason(value, NOW - 3600) == "not_yet_valid"
    assert reason(value, float("nan")) == "not_yet_valid"  # a broken clock fails closed
    assert reason(value, NOW, max_lifetime=float("nan")) == "expired"
    assert opens(value, NOW - 0.5, keys=TunnelKeys({1: KEY}, 1, skew=1.0)) == grant()
    assert reason(value, NOW - 1.5, keys=TunnelKeys({1: KEY}, 1, skew=1.0)) == "not_yet_valid"


def test_lifetime_over_the_limit_is_expired() -> None:
    value = KEYS.seal(grant(lifetime=60.0))
    assert reason(value, NOW + 1) == "expired"  # default limit: 30 s
    assert reason(value, NOW + 1, max_lifetime=59.9) == "expired"
    assert opens(value, NOW + 1, max_lifetime=60.0) == grant(lifetime=60.0)


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("customer", "c2", "wrong_customer"),
        ("customer", "C1", "wrong_customer"),
        ("method", "POST", "wrong_target"),
        ("method", "get", "wrong_target"),
        ("target", "/a/b.jpg?x=2", "wrong_target"),
        ("target", "/a/b.jpg", "wrong_target"),
        ("target", "/a/b.jpg?x=1 ", "wrong_target"),
        ("purpose", "parent", "wrong_target"),
    ],
)
def test_binding(field: str, value: str, why: str) -> None:
    assert reason(KEYS.seal(grant()), **{field: value}) == why


def test_parent_grant_is_not_a_sureroute_grant() -> None:
    value = KEYS.seal(grant(purpose="parent"))
    assert opens(value, purpose="parent").purpose == "parent"
    assert reason(value, purpose="sureroute") == "wrong_target"


def test_a_receiver_that_takes_any_purpose_is_told_the_grants() -> None:
    """The serving edge opens with purpose=None and acts on the grant's own purpose."""
    for purpose in ("parent", "sureroute"):
        assert opens(KEYS.seal(grant(purpose=purpose)), purpose=None).purpose == purpose


def test_hops() -> None:
    for hops in (0, 3):
        assert opens(KEYS.seal(grant(hops=hops))).hops == hops
    assert reason(KEYS.seal(grant(hops=4))) == "too_many_hops"
    assert reason(KEYS.seal(grant(hops=255))) == "too_many_hops"
    assert reason(KEYS.seal(grant(hops=2)), keys=TunnelKeys({1: KEY}, 1, max_hops=1)) == "too_many_hops"


def test_replay_of_the_same_header() -> None:
    seen = SeenGrants()
    value = KEYS.seal(grant())
    assert opens(value, seen=seen) == grant()
    assert reason(value, NOW + 1, seen=seen) == "replayed"
    assert reason(KEYS.seal(grant(hops=0)), NOW + 1, seen=seen) == "replayed"  # same sender and nonce
    assert opens(KEYS.seal(grant(nonce=b"m" * 16)), seen=seen)  # a retry: a new nonce
    assert opens(KEYS.seal(grant(sender="r2-e1")), seen=seen)  # nonces are per sender
    assert len(seen) == 3


def test_refused_grants_take_no_place_in_the_replay_cache() -> None:
    seen = SeenGrants()
    value = KEYS.seal(grant())
    assert reason(value, seen=seen, target="/other") == "wrong_target"
    assert reason(value, NOW + 11, seen=seen) == "expired"
    assert len(seen) == 0
    assert opens(value, seen=seen) == grant()


def test_replay_cache_full_fails_closed() -> None:
    seen = SeenGrants(max_entries=3)
    for i in range(3):
        opens(KEYS.seal(grant(nonce=bytes([i]) * 16)), seen=seen)
    fourth = KEYS.seal(grant(nonce=b"\x09" * 16))
    assert reason(fourth, NOW + 1, seen=seen) == "replay_cache_full"
    assert reason(KEYS.seal(grant(nonce=b"\x00" * 16)), NOW + 1, seen=seen) == "replayed"  # still remembered
    assert len(seen) == 3
    # once the first three expire (10 s lifetime + 2 s skew) there is room again
    late = KEYS.seal(grant(nonce=b"\x09" * 16, now=NOW + 12))
    assert opens(late, NOW + 12, seen=seen).nonce == b"\x09" * 16
    assert len(seen) == 1


def test_replayed_nonce_is_remembered_until_expiry_plus_skew() -> None:
    seen = SeenGrants()
    g = grant()
    seen.check_and_remember(g, NOW)
    for t in (NOW + 5, NOW + 10, NOW + 11.99):
        with pytest.raises(TunnelRefused) as got:
            seen.check_and_remember(g, t)
        assert got.value.reason == "replayed"
    seen.check_and_remember(g, NOW + 12)  # forgotten: `open` refuses it as expired by then anyway
    assert reason(KEYS.seal(g), NOW + 12) == "expired"


def test_expired_nonces_are_forgotten_the_cache_stays_bounded() -> None:
    seen = SeenGrants()
    # 100 grants a second for 10 minutes (60 lifetimes of 10 s), lifetimes of 1, 5 and 10 s:
    # each is kept its lifetime + 2 s, so about 100/3 * (3 + 7 + 12) = 733 at a time
    sizes = []
    for i in range(60_000):
        t = NOW + i / 100
        g = grant(now=t, nonce=i.to_bytes(16, "big"), lifetime=(1.0, 10.0, 5.0)[i % 3])
        seen.check_and_remember(g, t)
        sizes.append(len(seen))
    assert 700 <= max(sizes) <= 740 and 700 <= sizes[-1] <= 740
    assert len(seen._heap) == len(seen)
    seen.forget_expired(NOW + 10_000)
    assert len(seen) == 0 and not seen._heap


def test_malformed() -> None:
    value = KEYS.seal(grant())
    bad = [
        "",
        "A",
        "AAAA",
        value + "=",  # padding
        value[:-1] + "+",  # not url-safe alphabet
        value + " ",
        " " + value,
        value + "A",  # a length of 4n+1 or a different body: either way no grant
        value[:40],
        "é" * 100,
        value[:50] + "\x00" + value[50:],
        "A" * (MAX_HEADER + 1),
    ]
    for v in bad:
        assert reason(v) in ("malformed", "bad_signature", "unknown_key"), v
    for v in ("", "A", "AAAA", value + "=", value + " ", "é" * 100, "A" * (MAX_HEADER + 1)):
        assert reason(v) == "malformed"


def test_non_canonical_base64_is_malformed() -> None:
    value = KEYS.seal(grant())
    raw = unb64(value)
    assert len(raw) % 3 != 0  # so the last character has spare bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(value[-1])
    twin = value[:-1] + alphabet[last | 1]  # a spare bit set: decodes to the same bytes
    assert twin != value and unb64(twin) == raw
    assert reason(twin) == "malformed"


def test_valid_tag_over_bad_fields_is_malformed() -> None:
    g = grant()
    bad = [
        b"\xc1",
        b"not msgpack",
        msgspec.msgpack.encode(["c1", "GET"]),
        wire(g, hops=-1),
        wire(g, hops=256),
        wire(g, nonce=b"x" * 15),
        wire(g, nonce=b"x" * 17),
        wire(g, target_hash=b"x" * 31),
        wire(g, purpose="other"),
        wire(g, customer=""),
        wire(g, customer="c" * 65),
        wire(g, issued=float("nan")),
        wire(g, expires=float("inf")),
        wire(g, issued=-1.0),
        wire(g, expires=g.issued),  # no lifetime
        wire(g, expires=g.issued - 1),
        wire(g) + b"\x00",  # trailing bytes
    ]
    for body in bad:
        assert reason(resign(body)) == "malformed", body
    assert opens(resign(wire(g))) == g  # the helper is right


def test_open_returns_the_receivers_target() -> None:
    g = grant(target="/caf\udce9")  # a surrogate escaped byte: hashes, never raises
    assert opens(KEYS.seal(g), target="/caf\udce9") == g


# --- keys: rotation and domain separation ----------------------------------------------------


def test_rotation() -> None:
    new = b"n" * 32
    old_only, new_only = TunnelKeys({1: KEY}, 1), TunnelKeys({2: new}, 2)
    both_old, both_new = TunnelKeys({1: KEY, 2: new}, 1), TunnelKeys({1: KEY, 2: new}, 2)
    value = old_only.seal(grant())
    assert opens(value, keys=both_new) == grant()  # sealed with 1, opened by {1, 2} sending with 2
    assert unb64(both_new.seal(grant()))[TAG] == 2 and unb64(both_old.seal(grant()))[TAG] == 1
    for sender in (old_only, both_old, both_new, new_only):
        for receiver in (old_only, both_old, both_new, new_only):
            v = sender.seal(grant())
            if sender.send_id in receiver.keys:
                assert opens(v, keys=receiver) == grant()
            else:
                assert reason(v, keys=receiver) == "unknown_key"
    with pytest.raises(ValueError):
        TunnelKeys({1: KEY}, 2)
    with pytest.raises(ValueError):
        TunnelKeys({1: KEY, 256: KEY}, 1)


def test_tunnel_key_is_not_the_message_key() -> None:
    assert tunnel_key(KEY) != KEY and len(tunnel_key(KEY)) == 32
    assert tunnel_key(KEY) != tunnel_key(b"n" * 32)
    assert KEYS.keys[1] == tunnel_key(KEY)


def test_messaging_envelope_does_not_open_as_a_grant() -> None:
    ring = Keyring({1: KEY}, 1)
    dg = Datagram(DATA, "r1-e1", "heartbeat", 1, 7, 0, 1, 5, NOW, b"hello")
    assert reason(b64(ring.seal(dg))) == "bad_signature"
    # nor a grant body MAC'd with the message key itself (what a messaging MAC would be)
    payload = b"\x01" + wire(grant())
    assert reason(b64(hmac.digest(KEY, payload, hashlib.sha256) + payload)) == "bad_signature"


def test_grant_does_not_open_as_a_messaging_envelope() -> None:
    ring = Keyring({1: KEY}, 1)
    raw = unb64(KEYS.seal(grant()))
    with pytest.raises(EnvelopeError) as got:
        ring.open(raw)
    assert got.value.reason == "bad_mac"


# --- fuzz: open raises only TunnelRefused ----------------------------------------------------


def _only_refused(value: str) -> None:
    try:
        g = opens(value, seen=SeenGrants())
    except TunnelRefused as e:
        assert e.reason in REASONS
    else:
        assert isinstance(g, Grant)


@settings(max_examples=500)
@given(st.text(max_size=1200))
def test_fuzz_any_text(value: str) -> None:
    _only_refused(value)


@settings(max_examples=500)
@given(st.binary(max_size=1200))
def test_fuzz_any_bytes_as_latin1(data: bytes) -> None:
    _only_refused(data.decode("latin-1"))
    _only_refused(b64(data))


@settings(max_examples=500)
@given(st.binary(max_size=400))
def test_fuzz_any_body_with_a_valid_tag(body: bytes) -> None:
    _only_refused(resign(body))


VALID = KEYS.seal(grant())


@settings(max_examples=1000)
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(["set", "insert", "delete"]), st.integers(0, len(VALID)), st.characters()),
        min_size=1,
        max_size=4,
    ),
    cut=st.integers(0, len(VALID)),
)
def test_fuzz_mutations_of_a_valid_header(edits: list[tuple[str, int, str]], cut: int) -> None:
    s = list(VALID)
    for op, at, ch in edits:
        at = min(at, len(s))
        if op == "set" and at < len(s):
            s[at] = ch
        elif op == "insert":
            s.insert(at, ch)
        elif op == "delete" and at < len(s):
            del s[at]
    mutated = "".join(s)
    _only_refused(mutated)
    _only_refused(mutated[:cut])
    if mutated != VALID:
        with pytest.raises(TunnelRefused):
            opens(mutated)


@settings(max_examples=300)
@given(raw=st.binary(min_size=1, max_size=300), at=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_fuzz_bit_flips_of_a_valid_grant(raw: bytes, at: int, bit: int) -> None:
    data = bytearray(unb64(VALID))
    data[at % len(data)] ^= 1 << bit
    with pytest.raises(TunnelRefused):
        opens(b64(bytes(data)))
    _only_refused(b64(bytes(data) + raw))
