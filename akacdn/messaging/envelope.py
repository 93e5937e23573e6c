"""The wire format of every messaging datagram, and its authentication.

Wire format (one UDP datagram)::

    0      32 bytes   HMAC-SHA256 tag over everything after it
    32     1 byte     key id: which network message key made the tag (rotation)
    33     ...        msgpack array: [kind, sender, topic, epoch, seq, part, parts,
                                      size, sent_at, body]

- `kind`: DATA (a chunk of a message), STATE (the last sequence a stream sent: how a
  receiver notices a lost tail), NACK (what a receiver misses, to the upstream it heard
  the stream from), SUBSCRIBE (topics, to a relay) and ACK (a relay's answer to one).
- A **stream** is (sender, topic, epoch): the epoch is the sender's start time in ns,
  so a restarted sender is a new stream; `seq` numbers its messages from 1.
- A message larger than one datagram is cut into `parts` chunks of at most
  `chunk_bytes` (1,200 by default: ~1,300 bytes on the wire, no IP fragmentation);
  `part` is this chunk's index and `size` the whole message's length.
- `sent_at` is the sender's wall clock when the message was first sent: datagrams older
  than `max_age` are refused (with the per-stream de-duplication, this stops replays).

The tag covers the whole array, so relays forward the sender's datagram unchanged and a
receiver checks the original sender's tag; a relay's own NACK and ACK carry its tag.
NACK bodies are `Nack` (msgpack), SUBSCRIBE bodies a list of topics.

`open_datagram` raises only `EnvelopeError`; its `reason` names the counter to bump.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

import msgspec

TAG = 32
HEADER = TAG + 1
MAX_DATAGRAM = 8192  # on receipt; DATA is cut far below (`chunk_bytes`)

DATA, STATE, NACK, SUBSCRIBE, ACK = 0, 1, 2, 3, 4
KINDS = ("data", "state", "nack", "subscribe", "ack")

Name = Annotated[str, msgspec.Meta(max_length=64)]
U64 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class Datagram(msgspec.Struct, array_like=True, frozen=True):
    kind: Annotated[int, msgspec.Meta(ge=0, le=4)]
    sender: Name
    topic: Name
    epoch: U64
    seq: U64
    part: Annotated[int, msgspec.Meta(ge=0, le=65535)]
    parts: Annotated[int, msgspec.Meta(ge=0, le=65535)]
    size: Annotated[int, msgspec.Meta(ge=0, le=2**31)]
    sent_at: float
    body: bytes


Ranges = list[tuple[int, int]]  # [start, end) part ranges; empty: every part


class Want(msgspec.Struct, array_like=True, frozen=True):
    seq: U64
    parts: list[tuple[Annotated[int, msgspec.Meta(ge=0, le=65535)], Annotated[int, msgspec.Meta(ge=0, le=65536)]]]


class Nack(msgspec.Struct, array_like=True, frozen=True):
    """A NACK's body: the stream (its sender, topic, epoch) and what is missing of it."""

    sender: Name
    topic: Name
    epoch: U64
    wants: Annotated[list[Want], msgspec.Meta(max_length=512)]


class EnvelopeError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(Datagram)
_nack_dec = msgspec.msgpack.Decoder(Nack)
_topics_dec = msgspec.msgpack.Decoder(Annotated[list[Name], msgspec.Meta(max_length=64)])


class Keyring:
    """The message keys: one to send with (by id), every one accepted (rotation)."""

    def __init__(self, keys: dict[int, bytes], send_id: int) -> None:
        if send_id not in keys:
            raise ValueError(f"no key with id {send_id}")
        self.keys = dict(keys)
        self.send_id = send_id
        self._prefix = bytes([send_id])
        self._send_key = keys[send_id]

    def seal(self, d: Datagram) -> bytes:
        """Encode and authenticate one datagram with the sending key."""
        payload = self._prefix + _enc.encode(d)
        return hmac.digest(self._send_key, payload, hashlib.sha256) + payload

    def open(self, data: bytes) -> Datagram:
        """Check the tag and decode; forged, truncated or malformed datagrams raise EnvelopeError."""
        if len(data) <= HEADER or len(data) > MAX_DATAGRAM:
            raise EnvelopeError("size")
        key = self.keys.get(data[TAG])
        if key is None:
            raise EnvelopeError("unknown_key")
        payload = memoryview(data)[TAG:]
        if not hmac.compare_digest(data[:TAG], hmac.digest(key, payload, hashlib.sha256)):
            raise EnvelopeError("bad_mac")
        try:
            return _dec.decode(payload[1:])
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            raise EnvelopeError("malformed") from None


def decode_nack(body: bytes) -> Nack:
    """A NACK's body; EnvelopeError when it is malformed."""
    try:
        return _nack_dec.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        raise EnvelopeError("malformed") from None


def decode_topics(body: bytes) -> list[str]:
    """A SUBSCRIBE's body; EnvelopeError when it is malformed."""
    try:
        return _topics_dec.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        raise EnvelopeError("malformed") from None


def encode(obj: object) -> bytes:
    return _enc.encode(obj)


def stale(d: Datagram, now: float, max_age: float) -> str | None:
    """Why a datagram's times are not believable, or None: its send time must be within
    `max_age` of our clock (either way), and its epoch (the sender's start) not after its
    send time, so no stream can claim an epoch from the future and shut out the real one."""
    if abs(now - d.sent_at) > max_age:
        return "too_old"
    if d.epoch > (d.sent_at + 1.0) * 1e9:
        return "bad_epoch"
    return None
