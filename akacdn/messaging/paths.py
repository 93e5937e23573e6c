"""Path choice (pure): which relays carry a publisher's datagrams.

Every datagram goes through `k` relays (`[messaging] paths`) in distinct regions, so
no single relay or region loss stops a message: the receivers de-duplicate. The choice
is stable per publisher (rendezvous hashing of publisher and relay ids), so each chosen
relay sees the whole of the publisher's streams (it can then recover its own losses
from the publisher) and publishers spread over the relays. Relays of the publisher's
own region rank first (the shortest first hop). A relay that has stopped answering is
passed over while others are alive; if fewer than `k` are alive, the rest of the list
fills in, dead ones last, so something is always sent.

`RelayHealth` is what the client knows of each relay: when it last answered (an ACK of
our subscription renewals, or any datagram from it). A relay never heard from is given
`grace` from our start before it counts as dead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple


class Relay(NamedTuple):
    id: str
    region: str  # "" : a site of its own
    address: tuple[str, int]


def _rank(publisher: str, relay: Relay) -> bytes:
    return hashlib.blake2b(f"{publisher}|{relay.id}".encode(), digest_size=8).digest()


def choose(relays: Sequence[Relay], alive: set[str], publisher: str, region: str, k: int) -> list[Relay]:
    """The `k` relays for `publisher` (in region `region`): alive first, distinct regions
    first, own region first, then by rendezvous rank."""
    ranked = sorted(relays, key=lambda r: (r.id not in alive, not region or r.region != region, _rank(publisher, r)))
    chosen: list[Relay] = []
    regions: set[str] = set()
    for relay in ranked:  # alive relays of distinct regions
        if len(chosen) == k or relay.id not in alive:
            break
        site = relay.region or relay.id
        if site not in regions:
            chosen.append(relay)
            regions.add(site)
    for relay in ranked:  # then any alive, then the rest
        if len(chosen) == k:
            break
        if relay not in chosen:
            chosen.append(relay)
    return chosen


class RelayHealth:
    def __init__(self, start: float, dead_after: float, grace: float) -> None:
        self.start, self.dead_after, self.grace = start, dead_after, grace
        self._heard: dict[str, float] = {}

    def heard(self, relay: str, now: float) -> bool:
        """Record an answer; True when the relay was not counted alive before."""
        was = self.is_alive(relay, now)
        self._heard[relay] = now
        return not was

    def is_alive(self, relay: str, now: float) -> bool:
        at = self._heard.get(relay)
        if at is None:
            return now - self.start < self.grace
        return now - at <= self.dead_after

    def alive(self, relays: Sequence[Relay], now: float) -> set[str]:
        return {r.id for r in relays if self.is_alive(r.id, now)}
