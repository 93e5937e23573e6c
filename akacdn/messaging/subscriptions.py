"""A relay's subscription table (pure): who wants which topic, until when.

Subscribers re-announce every few seconds; an entry not renewed within its lease is
forgotten, so a dead subscriber costs nothing for long. The table is bounded: past
`max_subscribers` new subscribers are refused (counted by the relay).
"""

from __future__ import annotations

Addr = tuple[str, int]


class SubscriptionTable:
    def __init__(self, max_subscribers: int = 4096, max_topics: int = 64) -> None:
        self.max_subscribers = max_subscribers
        self.max_topics = max_topics
        self._subs: dict[Addr, tuple[frozenset[str], float]] = {}

    def subscribe(self, addr: Addr, topics: list[str], now: float, lease: float) -> bool:
        """Record or renew a lease; False when the table is full or the request too big."""
        if len(topics) > self.max_topics:
            return False
        if addr not in self._subs and len(self._subs) >= self.max_subscribers:
            self.expire(now)
            if len(self._subs) >= self.max_subscribers:
                return False
        self._subs[addr] = (frozenset(topics), now + lease)
        return True

    def topics_of(self, addr: Addr) -> frozenset[str] | None:
        """What `addr` subscribes to (None: nothing, or not known)."""
        got = self._subs.get(addr)
        return got[0] if got is not None else None

    def targets(self, topic: str, now: float) -> list[Addr]:
        """Live subscribers of a topic."""
        return [a for a, (ts, until) in self._subs.items() if until >= now and topic in ts]

    def expire(self, now: float) -> int:
        dead = [a for a, (_, until) in self._subs.items() if until < now]
        for a in dead:
            del self._subs[a]
        return len(dead)

    def __len__(self) -> int:
        return len(self._subs)
