"""Tunnel grants (pure): what lets one edge ask another to fetch for it.

SureRoute and tiered distribution forward a cache miss to an edge of another region (an
intermediate region that fetches from the origin, or a parent tier). That edge must never
be an open relay: it serves a tunnel request only when the request carries a grant sealed
with a key derived from the network's message keys, time-limited, bound to the customer,
the method, the target and the purpose, not replayed, with a bounded hop count.

Header value (`X-Akacdn-Tunnel`): base64url without padding (ASCII, header-safe) of::

    0      32 bytes   HMAC-SHA256 tag over everything after it, with the tunnel key
    32     1 byte     key id: which network message key the tunnel key derives from
    33     ...        msgpack array: [customer, method, sha256(target), sender, hops,
                                      issued, expires, nonce, purpose]

- The tunnel key of an id is HKDF-SHA256 of that id's message key (fixed salt, info
  ``b"akacdn tunnel v1"``): no messaging MAC (datagram envelopes, journal pages) is ever
  a tunnel tag, nor the reverse, though the layout is the envelope's.
- The target travels as its SHA-256: the receiving edge knows the target (it is its
  request's), so the grant binds it without carrying it, and the header stays short
  whatever the URL's length: at most ~350 characters with ASCII names (customer,
  sender: 64 characters; method: 16), under `MAX_HEADER` (1,024) with any.
- `hops` is how many more tunnel hops are allowed after this one: 0, the receiving edge
  fetches from the origin itself; to go on, it issues its own grant (its own `sender`, a
  new nonce) with one hop less.
- `sender` is the machine id of the edge that sealed the grant. The network key is shared
  by every machine, so a grant proves "a machine of the network", not which one; `sender`
  scopes the replay check (and names the peer in logs).

`TunnelKeys.open` checks, in this order: size and encoding, key id, tag (constant time),
fields, time, binding, hops, replay (last, so only a grant good in every other way takes a
place in the replay cache). A retried request gets a new grant (a new nonce), so refusing
replays does not hinder failover.

`TunnelKeys.open` raises only `TunnelRefused`, for any input string; its `reason` (one of
`REASONS`) names the counter to bump. A method or purpose that is not the grant's is
"wrong_target" (the request is its method, target and purpose); a lifetime over the limit
is "expired".
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import math
import re
from typing import Annotated, Literal, get_args

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HEADER_NAME = "X-Akacdn-Tunnel"
TAG = 32
PREFIX = TAG + 1  # tag and key id
MAX_HEADER = 1024  # characters of the header value
NONCE = 16
SKEW = 2.0  # seconds a grant's issue time may be ahead of our clock
MAX_HOPS = 3
LIFETIME = 10.0  # default lifetime of a grant, seconds
MAX_LIFETIME = 30.0  # default longest lifetime `open` accepts, seconds
MAX_SEEN = 100_000

Reason = Literal[
    "malformed",
    "unknown_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "wrong_customer",
    "wrong_target",
    "replayed",
    "too_many_hops",
    "replay_cache_full",
]
REASONS: tuple[str, ...] = get_args(Reason)

Purpose = Literal["sureroute", "parent"]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Method = Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
Time = Annotated[float, msgspec.Meta(ge=0.0, le=2.0**40)]  # finite, not before 1970
Hops = Annotated[int, msgspec.Meta(ge=0, le=255)]
Nonce = Annotated[bytes, msgspec.Meta(min_length=NONCE, max_length=NONCE)]


class TunnelRefused(Exception):
    """Why a tunnel request is refused; `reason` is one of `REASONS`."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason)
        self.reason: Reason = reason


class Grant(msgspec.Struct, frozen=True):
    customer: Name
    method: Method
    target: str  # path and query, as the receiving edge will request them
    sender: Name  # machine id of the edge that sealed the grant
    hops: Hops  # tunnel hops allowed after this one; 0: fetch from the origin
    issued: Time  # wall clock, seconds
    expires: Time
    nonce: Nonce
    purpose: Purpose


class _Wire(msgspec.Struct, array_like=True, frozen=True):
    customer: Name
    method: Method
    target_hash: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    sender: Name
    hops: Hops
    issued: Time
    expires: Time
    nonce: Nonce
    purpose: Purpose


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(_Wire)
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_SALT = b"akacdn tunnel"
_INFO = b"akacdn tunnel v1"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _target_hash(target: str) -> bytes:
    return hashlib.sha256(target.encode("utf-8", "surrogatepass")).digest()


def _decode(body: bytes | memoryview) -> _Wire:
    """The fields, validated (bounds, a lifetime > 0); TunnelRefused("malformed") otherwise."""
    try:
        w = _dec.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):  # ValidationError is a DecodeError
        raise TunnelRefused("malformed") from None
    if not w.expires > w.issued:
        raise TunnelRefused("malformed")
    return w


def tunnel_key(message_key: bytes) -> bytes:
    """The tunnel key derived from one network message key (domain separation)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO).derive(message_key)


def issue(
    *,
    customer: str,
    method: str,
    target: str,
    sender: str,
    hops: int,
    purpose: Purpose,
    now: float,
    nonce: bytes,
    lifetime: float = LIFETIME,
) -> Grant:
    """A grant valid from `now` for `lifetime` seconds; `nonce`: 16 random bytes (a new one each time)."""
    return Grant(customer, method, target, sender, hops, now, now + lifetime, nonce, purpose)


class TunnelKeys:
    """The tunnel keys: one to seal with (by id), every one accepted (rotation). Built from the
    network message keys, in the shape `Keyring` takes them."""

    def __init__(self, keys: dict[int, bytes], send_id: int, *, skew: float = SKEW, max_hops: int = MAX_HOPS) -> None:
        if send_id not in keys:
            raise ValueError(f"no key with id {send_id}")
        if any(not 0 <= i <= 255 for i in keys):
            raise ValueError("key ids are 0..255")
        self.keys = {i: tunnel_key(k) for i, k in keys.items()}
        self.send_id = send_id
        self.skew = skew
        self.max_hops = max_hops
        self._prefix = bytes([send_id])
        self._send_key = self.keys[send_id]

    def seal(self, g: Grant) -> str:
        """The header value carrying `g`; ValueError when `g` could never open (fields out of bounds)."""
        th = _target_hash(g.target)
        body = _enc.encode(_Wire(g.customer, g.method, th, g.sender, g.hops, g.issued, g.expires, g.nonce, g.purpose))
        try:
            _decode(body)
        except TunnelRefused:
            raise ValueError(f"grant out of bounds: {g!r}") from None
        payload = self._prefix + body
        value = _b64(hmac.digest(self._send_key, payload, hashlib.sha256) + payload)
        assert len(value) <= MAX_HEADER  # by the fields' bounds
        return value

    def open(
        self,
        value: str,
        now: float,
        *,
        customer: str,
        method: str,
        target: str,
        purpose: Purpose | None,
        seen: SeenGrants | None,
        max_lifetime: float = MAX_LIFETIME,
    ) -> Grant:
        """The grant in a header value, if it allows this request (`customer`, `method`,
        `target`, `purpose`: the receiving edge's own view of it; a None `purpose` takes
        the grant's, which the caller then acts on) at `now`; and, unless
        `seen` is None, remembered there so it is good once. Raises only TunnelRefused."""
        if not isinstance(value, str) or not PREFIX < len(value) <= MAX_HEADER or not _B64URL.fullmatch(value):
            raise TunnelRefused("malformed")
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except ValueError:  # binascii.Error: a length of 4n+1
            raise TunnelRefused("malformed") from None
        if len(raw) <= PREFIX or _b64(raw) != value:  # one encoding per grant: no spare bits set
            raise TunnelRefused("malformed")
        key = self.keys.get(raw[TAG])
        if key is None:
            raise TunnelRefused("unknown_key")
        payload = memoryview(raw)[TAG:]
        if not hmac.compare_digest(raw[:TAG], hmac.digest(key, payload, hashlib.sha256)):
            raise TunnelRefused("bad_signature")
        w = _decode(payload[1:])
        if not now >= w.issued - self.skew:  # so written that a NaN `now` fails closed
            raise TunnelRefused("not_yet_valid")
        if not (now < w.expires and w.expires - w.issued <= max_lifetime):
            raise TunnelRefused("expired")  # a lifetime over the limit: expired as of now
        if w.customer != customer:
            raise TunnelRefused("wrong_customer")
        wrong_purpose = purpose is not None and w.purpose != purpose
        if w.method != method or wrong_purpose or w.target_hash != _target_hash(target):
            raise TunnelRefused("wrong_target")  # the request is method, target and purpose
        if w.hops > self.max_hops:
            raise TunnelRefused("too_many_hops")
        g = Grant(w.customer, w.method, target, w.sender, w.hops, w.issued, w.expires, w.nonce, w.purpose)
        if seen is not None:
            seen.check_and_remember(g, now)
        return g


class SeenGrants:
    """The grants accepted and not yet expired, by (sender, nonce): each is good once.

    An entry is kept until its grant's expiry plus the skew (a clock stepped back a little
    still refuses it), then forgotten: entries leave in expiry order (a heap), checked on
    every call, so the cost is amortised O(log n) and the size bounded by the grants of the
    last `max_lifetime + skew` seconds (what `TunnelKeys.open` accepts). When `max_entries`
    are kept it fails closed: TunnelRefused("replay_cache_full"), never forgetting a nonce
    that could still be replayed."""

    def __init__(self, max_entries: int = MAX_SEEN, *, skew: float = SKEW) -> None:
        self.max_entries = max_entries
        self.skew = skew
        self._until: dict[tuple[str, bytes], float] = {}
        self._heap: list[tuple[float, str, bytes]] = []

    def __len__(self) -> int:
        return len(self._until)

    def forget_expired(self, now: float) -> None:
        heap, until = self._heap, self._until
        while heap and heap[0][0] <= now:
            _, sender, nonce = heapq.heappop(heap)
            del until[(sender, nonce)]

    def check_and_remember(self, g: Grant, now: float) -> None:
        """Remember `g`; TunnelRefused("replayed") if it was seen, ("replay_cache_full") if full."""
        self.forget_expired(now)
        key = (g.sender, g.nonce)
        if key in self._until:
            raise TunnelRefused("replayed")
        if len(self._until) >= self.max_entries:
            raise TunnelRefused("replay_cache_full")
        until = g.expires + self.skew
        if not math.isfinite(until):
            raise TunnelRefused("malformed")
        self._until[key] = until
        heapq.heappush(self._heap, (until, g.sender, g.nonce))
