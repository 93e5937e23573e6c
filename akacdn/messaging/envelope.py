"""The wire envelope of every message: sender, topic, sequence, time, body, and an HMAC.

Wire format: 32-byte HMAC-SHA256 tag, then a msgpack array
``[sender, topic, seq, sent_at, body]``. The tag covers the whole array, so a relay
forwards the datagram unchanged and the receiver checks the original sender's tag.
`open_envelope` raises only `EnvelopeError`; its `reason` names the counter to bump.
"""

from __future__ import annotations

import hashlib
import hmac

import msgspec

MAX_DATAGRAM = 65000
TAG = 32
SUBSCRIBE = "_subscribe"  # control topic: body is a msgpack list of topics


class Envelope(msgspec.Struct, array_like=True, frozen=True):
    sender: str
    topic: str
    seq: int
    sent_at: float
    body: bytes


class EnvelopeError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(Envelope)


def seal(key: bytes, env: Envelope) -> bytes:
    """Encode and authenticate one message."""
    payload = _enc.encode(env)
    if len(payload) + TAG > MAX_DATAGRAM:
        raise ValueError(f"message of {len(payload)} bytes exceeds one datagram")
    return hmac.digest(key, payload, hashlib.sha256) + payload


def open_envelope(key: bytes, datagram: bytes) -> Envelope:
    """Check the tag and decode; forged, truncated or malformed datagrams raise EnvelopeError."""
    if len(datagram) <= TAG or len(datagram) > MAX_DATAGRAM:
        raise EnvelopeError("size")
    tag, payload = datagram[:TAG], datagram[TAG:]
    if not hmac.compare_digest(tag, hmac.digest(key, payload, hashlib.sha256)):
        raise EnvelopeError("bad_mac")
    try:
        return _dec.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise EnvelopeError("malformed") from None
