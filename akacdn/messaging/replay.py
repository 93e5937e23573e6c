"""Replay and duplicate filter (pure).

Multi-path delivery sends every message over several relays, so a receiver sees most
messages more than once; an attacker may also replay captured datagrams. A message is
accepted once: per sender we keep the highest sequence and the set of sequences seen
within a window below it. Senders start their sequence at boot time in microseconds, so
a restarted sender continues above its old numbers. Messages older than `max_age`
(by their send time) are refused outright. Both tables are bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

Verdict = Literal["ok", "duplicate", "stale", "too_old"]


class _Sender:
    __slots__ = ("highest", "seen")

    def __init__(self, seq: int) -> None:
        self.highest = seq
        self.seen = {seq}


class ReplayGuard:
    def __init__(self, window: int = 4096, max_age: float = 30.0, max_senders: int = 10000) -> None:
        self.window = window
        self.max_age = max_age
        self.max_senders = max_senders
        self._senders: OrderedDict[str, _Sender] = OrderedDict()

    def check(self, sender: str, seq: int, sent_at: float, now: float) -> Verdict:
        """Accept (and remember) or refuse one message."""
        if abs(now - sent_at) > self.max_age:
            return "too_old"
        s = self._senders.get(sender)
        if s is None:
            if len(self._senders) >= self.max_senders:
                self._senders.popitem(last=False)
            self._senders[sender] = _Sender(seq)
            return "ok"
        self._senders.move_to_end(sender)
        if seq > s.highest:
            s.highest = seq
            s.seen.add(seq)
            if len(s.seen) > self.window:
                floor = seq - self.window
                s.seen = {x for x in s.seen if x > floor}
            return "ok"
        if seq <= s.highest - self.window:
            return "stale"
        if seq in s.seen:
            return "duplicate"
        s.seen.add(seq)
        return "ok"
