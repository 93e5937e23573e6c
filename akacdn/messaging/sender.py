"""Sending streams (pure): sequence numbers, chunking, STATE notes, pacing.

An `Outbox` belongs to one sender (a daemon's messaging client). Each topic is a stream
(sender, topic, epoch): `message()` numbers the message in its topic's stream (from 1)
and cuts it into DATA datagrams of at most `chunk` bytes of payload, every one carrying
the whole message's size and part count so a receiver can reassemble in any order.
`states()` gives the STATE notes ("this stream has sent up to seq N") of the streams
that sent within their recovery deadline, so a receiver notices a lost tail; streams
of no-recovery topics never need them. A stream's notes come `state_interval` after its
last message, then at doubling intervals until its deadline (0.25, 0.5, 1, 2, 4, 8 s: six
notes for a map, not forty). N is the last message whose every datagram has
left (`flushed`): a note naming one still in the pacing queue would make receivers
ask for what is merely not sent yet.

`Pacer` spreads bursts: a token bucket of `rate` datagrams per second with `burst`
tokens, so a 1.3 MB map leaves as a steady stream rather than 1,100 datagrams at once
that would overflow the relays' socket buffers.
"""

from __future__ import annotations

from collections.abc import Callable

from .envelope import DATA, STATE, Datagram


class Outbox:
    def __init__(
        self, sender: str, epoch: int, chunk: int, policy: Callable[[str], float], state_interval: float = 0.25
    ) -> None:
        if chunk < 1:
            raise ValueError("chunk must be positive")
        self.sender, self.epoch, self.chunk = sender, epoch, chunk
        self.policy = policy
        self.state_interval = state_interval
        self._notes: dict[str, tuple[float, float]] = {}  # topic -> (next note at, gap after it)
        self._seq: dict[str, int] = {}
        self._flushed: dict[str, int] = {}  # the last message wholly handed to the socket
        self._sent_at: dict[str, float] = {}  # monotonic time of the topic's last message

    def message(self, topic: str, body: bytes, wall: float, now: float) -> list[Datagram]:
        """Number one message in its topic's stream and cut it into DATA datagrams."""
        seq = self._seq.get(topic, 0) + 1
        self._seq[topic] = seq
        self._sent_at[topic] = now
        self._notes[topic] = (now + self.state_interval, self.state_interval)
        size, chunk = len(body), self.chunk
        parts = max(1, -(-size // chunk))
        if parts > 65535:
            raise ValueError(f"a message of {size} bytes needs more than 65535 chunks")
        view = memoryview(body)
        return [
            Datagram(
                DATA,
                self.sender,
                topic,
                self.epoch,
                seq,
                i,
                parts,
                size,
                wall,
                bytes(view[i * chunk : (i + 1) * chunk]),
            )
            for i in range(parts)
        ]

    def states(self, wall: float, now: float) -> list[Datagram]:
        """STATE notes for the streams that may still be recovering a recent message."""
        out = []
        for topic, at in list(self._sent_at.items()):
            deadline = self.policy(topic)
            if not deadline or now - at > deadline:
                del self._sent_at[topic]
                continue
            due, gap = self._notes[topic]
            flushed = self._flushed.get(topic)
            if flushed and now >= due:
                out.append(Datagram(STATE, self.sender, topic, self.epoch, flushed, 0, 0, 0, wall, b""))
                self._notes[topic] = (now + 2 * gap, 2 * gap)
        return out

    def flushed(self, topic: str, seq: int) -> None:
        """The last datagram of message `seq` has left."""
        if seq > self._flushed.get(topic, 0):
            self._flushed[topic] = seq

    def last(self, topic: str) -> int:
        return self._seq.get(topic, 0)


class Pacer:
    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.at = now

    def take(self, now: float, n: int = 1) -> float:
        """Take `n` tokens if there are; 0.0 when sent may go now, else the seconds to wait."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate
