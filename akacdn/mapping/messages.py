"""The messages the mapping centers take and send (the contract with every daemon that
reports to them or listens to them), and their messaging topics.

In: `Heartbeat` (every edge and LLNS, topic `heartbeat`), `Report` (per-serial traffic
from the edges, `report`), `RegionReport` (region agents, `region`), purge requests
(`purge.request`, the edge's `Purge` as opaque bytes: journaled as they are).
Out: signed maps (`map.top`, `map.low`: `maps.SignedMap`), journal entries (`purge`:
`messaging.journal.Entry`), and `Announce` every map interval: what the center holds,
so a consumer that missed a map or a purge notices and fetches it over HTTP.
Between centers: `CenterStatus` (topic `center`): the election's status and, from the
leader, the operator's suspensions, the quarantines and the release in progress.
From every daemon: `RollNotice` (topic `roll`): rolls with their crash records, long
sleeps, requests failed in place.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from ..recovery.crash import CrashRecord
from .election import Status
from .faults import Quarantined

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
    bundle: str = ""  # the release bundle it runs ("": its local configuration)
    bundle_refused: str = ""  # "<bundle id>: why" when it refused the bundle it was told to run
    asleep_until: float = 0.0  # long-sleep (wall clock): out of the maps until then
    rolls: int = 0  # rolls within the roll window
    mode: str = ""  # "in_place" while it recovers in place instead of rolling


ROLL_TOPIC = "roll"  # daemons' rolls, long sleeps and in-place faults, to the centers


class RollNotice(msgspec.Struct, frozen=True):
    """A daemon rolled (with its crash record, when it wrote one), went to long-sleep, or
    failed one request in place (the network-wide in-place mode: `serial` faulted and
    maybe was disabled on this machine)."""

    machine: str
    component: str
    kind: Literal["rolled", "asleep", "in_place"]
    at: float  # wall clock
    rolls: int = 0  # rolls within the roll window
    sleep_until: float = 0.0
    crash: CrashRecord | None = None
    serial: int = 0  # in_place: the serial whose request failed
    disabled: bool = False  # in_place: the machine disabled that serial


REPORT_TOPIC = "report"  # per-serial traffic from the edges


class SerialReport(msgspec.Struct, frozen=True, array_like=True):
    serial: int
    requests: int
    hits: int  # served from the store (fresh or stale)
    misses: int  # went to the origin
    errors: int  # answered 5xx
    bytes: int
    # (later fields default: older edges send without them)
    origin: int = 0  # requests this edge sent to the origin (directly or through a SureRoute tunnel)
    tunneled: int = 0  # of `requests`, those another edge sent (a child's miss at a parent; a detour)


PROBE_TOPIC = "probe"  # measured mapping: probe rounds from the edges


class ProbeResult(msgspec.Struct, frozen=True, array_like=True):
    """One round's probes to one client network's targets (`target` its prefix) or to one
    region's LLNSes (`target` the region id)."""

    target: str
    sent: int
    lost: int
    rtt_ms: float = -1.0  # median RTT of the replies (-1: none came back)


class ProbeReport(msgspec.Struct, frozen=True):
    machine: str
    region: str
    at: float  # wall clock
    networks: tuple[ProbeResult, ...] = ()
    regions: tuple[ProbeResult, ...] = ()


class Report(msgspec.Struct, frozen=True):
    machine: str
    region: str
    interval: float  # seconds the counts cover
    serials: list[SerialReport]
    clients: dict[str, int] = {}  # requests per configured client network (prefix) in the interval


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
    journals by name: (journal id, head sequence). The leader's (`term` > 0) also carries
    the network's orders: the recovery mode ("" rolling, "in_place") and the release order
    (`mapping.rollout.Order`, msgpack; empty: none); every daemon follows the newest term's."""

    center: str
    maps: dict[str, tuple[int, int]]
    journals: dict[str, tuple[str, int]]
    term: int = 0
    mode: str = ""
    release: bytes = b""


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
    quarantines_version: tuple[int, int] = (0, 0)
    quarantines: list[Quarantined] = []
    release: bytes = b""  # the leader's release in progress (`mapping.rollout.Release`, msgpack)
