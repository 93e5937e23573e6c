"""The messages the mapping centers take and send (the contract with every daemon that
reports to them or listens to them), and their messaging topics.

In: `Heartbeat` (every edge and LLNS, topic `heartbeat`), `Report` (per-serial traffic
from the edges, `report`), `RegionReport` (region agents, `region`), purge requests
(`purge.request`, the edge's `Purge` as opaque bytes: journaled as they are).
Out: signed maps (`map.top`, `map.low`: `maps.SignedMap`), journal entries (`purge`:
`messaging.journal.Entry`), and `Announce` every map interval: what the center holds,
so a consumer that missed a map or a purge notices and fetches it over HTTP.
Between centers: `CenterStatus` (topic `center`): the election's status and, from the
leader, the operator's suspensions.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from .election import Status

HEARTBEAT_TOPIC = "heartbeat"


class Heartbeat(msgspec.Struct, frozen=True):
    machine: str
    role: str
    region: str
    healthy: bool = True
    load: float = 0.0  # requests per second over the last interval
    detail: str = ""
    # nameservers: the maps they answer from, by key: (term, seq, made_at)
    maps: dict[str, tuple[int, int, float]] = {}


REPORT_TOPIC = "report"  # per-serial traffic from the edges


class SerialReport(msgspec.Struct, frozen=True, array_like=True):
    serial: int
    requests: int
    hits: int  # served from the store (fresh or stale)
    misses: int  # went to the origin
    errors: int  # answered 5xx
    bytes: int


class Report(msgspec.Struct, frozen=True):
    machine: str
    region: str
    interval: float  # seconds the counts cover
    serials: list[SerialReport]


REGION_TOPIC = "region"


class RegionReport(msgspec.Struct, frozen=True):
    """A region agent's view (`akacdn agent`): its peers alive and dead, what it holds."""

    machine: str
    region: str
    alive: list[str]
    dead: list[str]
    holds: list[str]


PURGE_REQUEST_TOPIC = "purge.request"  # an edge's purge, to the centers' journals
PURGE_TOPIC = "purge"  # journal entries, from the centers to every edge
ANNOUNCE_TOPIC = "announce"
CENTER_TOPIC = "center"  # the centers' statuses to each other (election, suspensions)


class Announce(msgspec.Struct, frozen=True):
    """A center's periodic note of what it holds: map versions by key (term, seq), and
    journals by name: (journal id, head sequence)."""

    center: str
    maps: dict[str, tuple[int, int]]
    journals: dict[str, tuple[str, int]]


class Suspension(msgspec.Struct, frozen=True):
    """An operator's order: this machine, or every machine of this region, out of the maps."""

    kind: Literal["machine", "region"]
    id: str
    reason: str
    at: float  # wall clock, when it was ordered


class CenterStatus(msgspec.Struct, frozen=True):
    """A center's status (election) and, from the leader, the suspensions in force with
    their version (leader term, change count): every center keeps the newest."""

    status: Status
    suspensions_version: tuple[int, int] = (0, 0)
    suspensions: list[Suspension] = []
