"""What a mapping center will publish (pure): flap damping of machines, and the guard
against maps that would hurt more than the failure they describe.

`Damping` follows BGP route-flap damping (RFC 2439; the vendors' defaults scaled to a
CDN's seconds): every time a machine leaves the live set (BGP's withdrawal) adds
`penalty`; the penalty halves every `half_life`; above `suppress` the machine is held out of the maps
until it decays below `reuse`. The penalty is capped so that no machine stays out longer
than `max_suppress` after its last flap. A machine that fails and comes back once or
twice is never damped (two flaps are at most `suppress`); one that keeps flapping stops
moving the maps every time.

`MapGuard` (after Envoy's outlier detection, which never ejects more than a share of the
hosts): a low-level map that leaves no edge to serve some client is never published
(consumers keep the last, and an alarm is raised; while any edge lives, every client is
served: the LLNS falls back to any region with a live edge); one that removes more than `max_drop` of the capacity
of the last published map at once is held until the drop has lasted `confirm` (a
mapping center that lost its view of the network must not empty the maps; a real
failure of that size is published after the confirmation).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from .maps import LowMap


@dataclass(slots=True)
class _Flaps:
    penalty: float
    at: float
    suppressed: bool = False


class Damping:
    def __init__(
        self,
        penalty: float = 1000.0,
        suppress: float = 2000.0,
        reuse: float = 750.0,
        half_life: float = 30.0,
        max_suppress: float = 300.0,
    ) -> None:
        if not 0 < reuse < suppress or half_life <= 0 or max_suppress <= 0 or penalty <= 0:
            raise ValueError("need 0 < reuse < suppress, half_life, max_suppress and penalty > 0")
        self.penalty, self.suppress, self.reuse = penalty, suppress, reuse
        self.half_life = half_life
        # the ceiling from which the penalty decays to `reuse` in exactly max_suppress
        self.ceiling = reuse * 2 ** (max_suppress / half_life)
        self._m: dict[str, _Flaps] = {}

    def _decayed(self, f: _Flaps, now: float) -> float:
        return f.penalty * math.pow(0.5, max(0.0, now - f.at) / self.half_life)

    def changed(self, machine: str, now: float) -> bool:
        """A machine flapped (left the live set); True when it is (now) held out."""
        f = self._m.get(machine)
        value = self.penalty + (self._decayed(f, now) if f is not None else 0.0)
        f = self._m[machine] = _Flaps(min(value, self.ceiling), now, f.suppressed if f is not None else False)
        if f.penalty > self.suppress:
            f.suppressed = True
        return f.suppressed

    def damped(self, machine: str, now: float) -> bool:
        f = self._m.get(machine)
        if f is None or not f.suppressed:
            return False
        if self._decayed(f, now) < self.reuse:
            f.suppressed = False
            return False
        return True

    def penalty_of(self, machine: str, now: float) -> float:
        f = self._m.get(machine)
        return self._decayed(f, now) if f is not None else 0.0

    def forget(self, now: float) -> None:
        """Drop machines whose penalty has decayed to nothing (bounds the table)."""
        for m in [m for m, f in self._m.items() if not f.suppressed and self._decayed(f, now) < 1.0]:
            del self._m[m]


def capacity(low: LowMap) -> int:
    return sum(s.capacity for r in low.regions for s in r.servers)


class MapGuard:
    """Holds a low-level map that leaves no edge, or that drops more than `max_drop` of the
    capacity published within the last `confirm` seconds, until the drop has lasted
    `confirm`. The reference is the most capacity of that window, not the last map's: edges
    dying a few hundred ms apart (their last heartbeats were) would otherwise pass as
    several small drops."""

    def __init__(self, max_drop: float = 0.5, confirm: float = 10.0) -> None:
        self.max_drop, self.confirm = max_drop, confirm
        self._since: float | None = None  # a big drop first seen at
        self._recent: deque[tuple[float, int]] = deque()  # (when, capacity of the map then published)

    def check(self, now: float, new: LowMap, last: LowMap | None) -> str | None:
        """None when `new` may be published; else why it is held."""
        if not any(r.servers for r in new.regions):
            self._since = None
            return "no edge would be left to serve"
        if last is None:
            return None
        self._recent.append((now, capacity(last)))
        while self._recent and now - self._recent[0][0] > self.confirm:
            self._recent.popleft()
        before, after = max(c for _, c in self._recent), capacity(new)
        if before and after < (1.0 - self.max_drop) * before:
            if self._since is None:
                self._since = now
            if now - self._since < self.confirm:
                return f"capacity {after} is under {1 - self.max_drop:.0%} of the {before} published lately"
            return None  # the drop lasted: it is real
        self._since = None
        return None
