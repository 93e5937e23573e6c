"""Retransmission (pure): the recent datagrams a sender or relay can resend, and the
budget that limits how much it resends.

`History` keeps the sealed bytes of recent DATA datagrams by (stream, seq, part),
bounded in bytes and age: past either bound the oldest go first. A NACK names a
message and part ranges (none: every part); `lookup` returns what is still held.

`Budget` is the limit on "limited retransmission" (after Spines' real-time links):
per destination, each datagram sent to it earns `share` of a credit, each repair costs
one, and credit is capped at `cap`. So repairs stay under `share` of the traffic (20 %
by default) however lossy a path is, a destination we never sent to gets nothing (a
forged NACK from a spoofed address is not a reflector), and a new destination starts
with `start` credits so the first losses of a burst are repaired. Both tables are
bounded; nothing here raises on input.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable

Stream = tuple[str, str, int]  # (sender, topic, epoch)


class History:
    def __init__(self, max_bytes: int, max_age: float) -> None:
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.bytes = 0
        self._parts: dict[tuple[Stream, int], dict[int, bytes]] = {}
        self._order: deque[tuple[float, Stream, int, int, int]] = deque()  # (at, stream, seq, part, size)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._order)

    def add(self, now: float, stream: Stream, seq: int, part: int, data: bytes) -> None:
        if self.max_bytes <= 0 or self.max_age <= 0:
            return
        parts = self._parts.setdefault((stream, seq), {})
        if part in parts:
            return
        parts[part] = data
        self.bytes += len(data)
        self._order.append((now, stream, seq, part, len(data)))
        self.expire(now)

    def expire(self, now: float) -> None:
        """Drop what is older than `max_age`, then the oldest while over `max_bytes`."""
        order = self._order
        while order and (self.bytes > self.max_bytes or now - order[0][0] > self.max_age):
            _, stream, seq, part, size = order.popleft()
            parts = self._parts.get((stream, seq))
            if parts is not None and parts.pop(part, None) is not None:
                self.bytes -= size
                if not parts:
                    del self._parts[(stream, seq)]

    def lookup(self, stream: Stream, seq: int, ranges: Iterable[tuple[int, int]]) -> list[bytes]:
        """The held datagrams of one message: the parts in `ranges`, or all if none given."""
        parts = self._parts.get((stream, seq))
        wanted = list(ranges)
        if parts is None:
            self.misses += max(1, sum(b - a for a, b in wanted))
            return []
        if not wanted:
            found = [parts[p] for p in sorted(parts)]
        else:
            found = []
            for a, b in wanted:
                if b - a > len(parts):  # a huge range: walk what we hold, not the range
                    found.extend(parts[p] for p in sorted(parts) if a <= p < b)
                    self.misses += (b - a) - sum(1 for p in parts if a <= p < b)
                    continue
                for p in range(a, b):
                    got = parts.get(p)
                    if got is None:
                        self.misses += 1
                    else:
                        found.append(got)
        self.hits += len(found)
        return found


class Budget:
    def __init__(self, share: float = 0.2, cap: float = 100.0, start: float = 10.0, max_destinations: int = 8192):
        self.share, self.cap, self.start = share, cap, start
        self.max_destinations = max_destinations
        self._credit: OrderedDict[Hashable, float] = OrderedDict()

    def earn(self, dest: Hashable, datagrams: int = 1) -> None:
        """`datagrams` were sent to `dest`."""
        c = self._credit.get(dest)
        if c is None:
            if len(self._credit) >= self.max_destinations:
                self._credit.popitem(last=False)
            c = self.start
        else:
            self._credit.move_to_end(dest)
        self._credit[dest] = min(self.cap, c + self.share * datagrams)

    def spend(self, dest: Hashable) -> bool:
        """Take one repair's credit; False when `dest` has none left (or is unknown)."""
        c = self._credit.get(dest)
        if c is None or c < 1.0:
            return False
        self._credit[dest] = c - 1.0
        return True

    def credit(self, dest: Hashable) -> float:
        return self._credit.get(dest, 0.0)
