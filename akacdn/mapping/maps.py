"""The maps: the contract between the mapping centers and the nameservers.

A `TopMap` tells the TLNSes which low-level nameservers (LLNS) are live, by region.
A `LowMap` tells every LLNS which edge servers of each region are live and which
regions are serving, and which serials are quarantined to which few servers (the
LLNSes and the edges honour it). Both carry the client routes (client network -> best region)
that the nameservers use to choose for a resolver or an ECS client subnet. Each map
carries its version `(term, seq)`: the leader's term, then a sequence bumped when the
map's content changes. Maps travel as `SignedMap`: the msgpack body, the signing
mapping center, and its Ed25519 signature over the body.

`verify(keys, data)` raises only `MapError`; consumers keep their last accepted map
and take a new one only when `newer(new, current)`.
"""

from __future__ import annotations

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

Version = tuple[int, int]  # (leader term, sequence)


class NameServer(msgspec.Struct, frozen=True):
    machine: str
    region: str
    address: str


class Server(msgspec.Struct, frozen=True):
    machine: str
    region: str
    address: str
    capacity: int
    address6: str = ""


class ClientRoute(msgspec.Struct, frozen=True):
    prefix: str  # a client network, e.g. "198.18.2.0/24"
    region: str  # the region that serves it best


class Route(msgspec.Struct, frozen=True, array_like=True):
    """The mapping center's decision for one client network: its regions, best first.
    `weights` (same length, summing to 1) split the network's clients between them while a
    move ramps (by a hash of the client's /24 or /56); empty: all to the first serving one.
    An LLNS answers from the first region of the list that is serving (the weighted pick
    among those with weight first)."""

    prefix: str
    regions: tuple[str, ...]
    weights: tuple[float, ...] = ()


class RegionServers(msgspec.Struct, frozen=True):
    region: str
    servers: tuple[Server, ...]  # live edges
    serving: bool  # False: down or not fit to take clients (fewer than 2 live edges)


class Quarantine(msgspec.Struct, frozen=True):
    """A serial whose requests crash servers, constrained to a few edges per region: the
    LLNSes answer only these for it, and every other edge refuses it (503)."""

    serial: int
    servers: tuple[str, ...]  # machine ids, a few per region (shuffle-sharded by serial)
    until: float  # wall clock: it ends then unless extended
    reason: str


class TopMap(msgspec.Struct, frozen=True, tag="top"):
    version: Version
    made_at: float
    nameservers: tuple[NameServer, ...]
    clients: tuple[ClientRoute, ...] = ()

    @property
    def key(self) -> str:
        return "top"


class LowMap(msgspec.Struct, frozen=True, tag="low"):
    version: Version
    made_at: float
    regions: tuple[RegionServers, ...]
    clients: tuple[ClientRoute, ...] = ()
    quarantines: tuple[Quarantine, ...] = ()  # constraints per serial (recovery: a request of death)
    # measured mapping: the ranked regions per client network (longest prefix wins), and per
    # LLNS region the order for clients no route covers
    routes: tuple[Route, ...] = ()
    defaults: dict[str, tuple[str, ...]] = {}

    @property
    def key(self) -> str:
        return "low"


AnyMap = TopMap | LowMap


class SignedMap(msgspec.Struct, frozen=True, array_like=True):
    signer: str
    body: bytes
    signature: bytes


class MapError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_enc = msgspec.msgpack.Encoder()
_signed = msgspec.msgpack.Decoder(SignedMap)
_body = msgspec.msgpack.Decoder(AnyMap)


def sign(key: Ed25519PrivateKey, signer: str, m: AnyMap) -> bytes:
    """Encode a map and sign it as mapping center `signer`."""
    body = _enc.encode(m)
    return _enc.encode(SignedMap(signer, body, key.sign(body)))


def verify(keys: dict[str, bytes], data: bytes) -> AnyMap:
    """Decode a signed map and check its signature against the known centers' keys."""
    try:
        sm = _signed.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        raise MapError("malformed") from None
    pub = keys.get(sm.signer)
    if pub is None:
        raise MapError("unknown_signer")
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sm.signature, sm.body)
    except (InvalidSignature, ValueError):
        raise MapError("bad_signature") from None
    try:
        return _body.decode(sm.body)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        raise MapError("malformed_body") from None


def newer(new: Version, current: Version | None) -> bool:
    """True when a map of version `new` should replace one of version `current`."""
    return current is None or tuple(new) > tuple(current)


def topic(m: AnyMap) -> str:
    return f"map.{m.key}"
