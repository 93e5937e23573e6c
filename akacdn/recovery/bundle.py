"""Release bundles: what `akacdn release` submits and every machine applies.

A bundle is a customer configuration (a customers file), a system configuration (the
runtime-tunable sections of the network file: `[ttl]`, `[dns]`, `[edge]`), or a
software release (its version: metadata, judged like the others). It is signed with
Ed25519 by one of the network's `keys.release_signers`; its id is the SHA-256 of the
signed bytes (content-addressed: a relay's cache of it can never be stale).

`open_bundle(...)` and `validate(...)` raise only `BundleError(reason)`: a bad
signature, an unknown signer, an unknown release type, or a configuration the network
would refuse never reaches phase one.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..config import (
    ConfigError,
    DnsSettings,
    EdgeSettings,
    Network,
    TTLs,
    check_customers_fit,
    check_tls,
    decode_toml,
    load_customers,
)

TYPES = ("customer", "system", "software")


class BundleError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Bundle(msgspec.Struct, frozen=True):
    type: str  # "customer", "system" or "software"
    version: str  # an operator's label, or the software version
    created_at: float
    signer: str
    content: bytes = b""  # customer: a customers file; system: TOML of [ttl], [dns], [edge]; software: none


class _Signed(msgspec.Struct, frozen=True, array_like=True):
    body: bytes
    signature: bytes


class SystemConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What a system-configuration bundle may change at run time."""

    ttl: TTLs | None = None
    dns: DnsSettings | None = None
    edge: EdgeSettings | None = None


_enc = msgspec.msgpack.Encoder()
_signed = msgspec.msgpack.Decoder(_Signed)
_body = msgspec.msgpack.Decoder(Bundle)


def bundle_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def make(key: Ed25519PrivateKey, signer: str, type: str, content: bytes, version: str = "") -> bytes:
    """A signed bundle (what `akacdn release` sends)."""
    body = _enc.encode(Bundle(type, version, time.time(), signer, content))
    return _enc.encode(_Signed(body, key.sign(body)))


def open_bundle(signers: dict[str, bytes], data: bytes) -> tuple[str, Bundle]:
    """(id, bundle) of signed bytes whose signature a configured signer made."""
    try:
        s = _signed.decode(data)
        b = _body.decode(s.body)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        raise BundleError("malformed bundle") from None
    pub = signers.get(b.signer)
    if pub is None:
        raise BundleError(f"unknown signer {b.signer!r} (not in keys.release_signers)")
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(s.signature, s.body)
    except (InvalidSignature, ValueError):
        raise BundleError("bad signature") from None
    if b.type not in TYPES:
        raise BundleError(f"unknown release type {b.type!r} (one of {', '.join(TYPES)})")
    return bundle_id(data), b


def validate(net: Network, b: Bundle) -> Network:
    """The network as it runs with the bundle applied; BundleError when it would be refused."""
    try:
        if b.type == "customer":
            customers = load_customers("bundle:customers.toml", b.content)
            regions = {r.id for r in net.regions}
            check_customers_fit("bundle:customers.toml", customers, net.base_domain, net.map_subzones,
                                net.faults.enabled, regions)  # fmt: skip
            check_tls("bundle:customers.toml", Path(net.path).parent, customers, net.edge)
            return msgspec.structs.replace(net, customers=customers)
        if b.type == "system":
            sysconf = decode_toml("bundle:system.toml", b.content, SystemConfig)  # type: ignore[arg-type]
            assert isinstance(sysconf, SystemConfig)
            new = net
            if sysconf.ttl is not None:
                new = msgspec.structs.replace(new, ttl=sysconf.ttl)
            if sysconf.dns is not None:
                if sysconf.dns.workers != net.dns.workers:
                    raise BundleError("dns.workers changes only with a restart: not a release")
                new = msgspec.structs.replace(new, dns=sysconf.dns)
            if sysconf.edge is not None:
                if sysconf.edge.workers != net.edge.workers:
                    raise BundleError("edge.workers changes only with a restart: not a release")
                check_tls("bundle:system.toml", Path(net.path).parent, net.customers, sysconf.edge)
                new = msgspec.structs.replace(new, edge=sysconf.edge)
            return new
        return net  # software: a version to report; the binaries are the operator's to install
    except ConfigError as e:
        raise BundleError(f"bad {b.type} configuration: {e}") from None
