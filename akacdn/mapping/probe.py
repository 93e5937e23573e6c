"""Measured mapping's probes, the pure part: what an edge probes, how fast, and what it
reports (the asyncio shell that sends them is `mapping.prober`).

Theory of operation. Every round (`[probing] interval`) an edge measures RTT and loss to
the probe targets of the client networks its region may serve (`[[client_networks]]`
`probes`, by DNS query or TCP connect) and, with `[probing] regions`, to the other
regions' LLNSes (a DNS query to their DNS port). It never probes an address that is not
in the config.

Responsibility is shared among a region's live edges: a key (a network's prefix, or a
region id) is probed by the `[probing] probers` edges of the region with the highest
rendezvous score `score(key, machine)` among the live edges of the current low map (and
the machine itself, which is alive to ask). So with 3 live edges and probers = 2 each key
is probed by 2 of them; an edge that dies moves only its keys; before any map every edge
probes everything (more probes for a round, never a blind spot).

`Pacer` is a token bucket (burst: one second's worth) that spaces the probes; `Tally`
gathers a round's results into one `ProbeReport`: per key the probes sent, lost, and the
median RTT of the replies.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Literal, NamedTuple

from ..config import Machine, Network, probe_target
from .assign import score
from .messages import ProbeReport, ProbeResult

DEFAULT_PORTS = {"dns": 53, "tcp": 80}


class Target(NamedTuple):
    kind: Literal["network", "region"]
    key: str  # the client network's prefix, or the region id
    address: str
    port: int
    method: Literal["dns", "tcp"]


def responsible(key: str, machine_id: str, live_edges: Sequence[str] | None, probers: int) -> bool:
    """Whether `machine_id` is among the `probers` edges that probe `key`: the top scores of
    `live_edges` and itself (None: no map yet, every edge probes every key)."""
    if live_edges is None:
        return True
    candidates = set(live_edges)
    candidates.add(machine_id)
    mine = score(key, machine_id)
    # ties are as good as impossible (64-bit hashes); break them by id so all edges agree
    above = sum(1 for m in candidates if m != machine_id and (score(key, m), m) > (mine, machine_id))
    return above < probers


def plan(net: Network, machine: Machine, live_edges: Sequence[str] | None, regions: bool = True) -> list[Target]:
    """The targets `machine` (an edge) probes this round, in config order: the probe
    targets of the client networks its region may serve, then the other regions' LLNSes
    (with `[probing] regions`, and `regions`: a round that includes them), each key only
    when this machine is responsible for it."""
    probers = net.probing.probers
    out: list[Target] = []
    for c in net.client_networks:
        if c.regions and machine.region not in c.regions:
            continue
        if not c.probes or not responsible(c.prefix, machine.id, live_edges, probers):
            continue
        for text in c.probes:
            address, port = probe_target(text, DEFAULT_PORTS[c.probe])  # checked when the config loaded
            out.append(Target("network", c.prefix, address, port, c.probe))
    if net.probing.regions and regions:
        by_region: dict[str, list[Machine]] = {}
        for m in net.by_role("llns"):
            if m.region != machine.region:
                by_region.setdefault(m.region, []).append(m)
        for region, llnses in by_region.items():
            if responsible(region, machine.id, live_edges, probers):
                out.extend(Target("region", region, m.address, net.ports.dns, "dns") for m in llnses)
    return out


class Pacer:
    """A token bucket: `rate` probes a second, bursts of up to one second's worth.
    `delay(now)` is how long to wait before the next probe may go; 0 takes the token.

    Kept as GCRA (the bucket's "theoretical arrival time"): one number, no refill
    arithmetic to round, so waiting exactly the delay returned always lets the probe go."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = max(1.0, float(rate))
        self._spacing = 1.0 / self.rate
        self._slack = (self.burst - 1.0) * self._spacing  # how far ahead of the rate a burst may run
        self._tat: float | None = None  # when the bucket is full again, less one spacing

    def delay(self, now: float) -> float:
        tat = now if self._tat is None else max(self._tat, now)  # (a clock stepping back refills nothing)
        allowed = tat - self._slack
        if now + self._spacing * 1e-9 >= allowed:  # (sums of spacings round: a billionth of one is no rate)
            self._tat = tat + self._spacing
            return 0.0
        return allowed - now


class _Key:
    __slots__ = ("sent", "lost", "rtts")

    def __init__(self) -> None:
        self.sent = 0
        self.lost = 0
        self.rtts: list[float] = []


class Tally:
    """One round's results, by (kind, key)."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], _Key] = {}

    def add(self, target: Target, rtt_s: float | None) -> None:
        """One probe's outcome: its RTT in seconds, or None when it was lost."""
        k = self._keys.get((target.kind, target.key))
        if k is None:
            k = self._keys[(target.kind, target.key)] = _Key()
        k.sent += 1
        if rtt_s is None:
            k.lost += 1
        else:
            k.rtts.append(rtt_s)

    @property
    def sent(self) -> int:
        return sum(k.sent for k in self._keys.values())

    @property
    def lost(self) -> int:
        return sum(k.lost for k in self._keys.values())

    def report(self, machine: str, region: str, at: float) -> ProbeReport:
        """The round as a `ProbeReport` (`at`: wall clock), networks and regions by key."""

        def results(kind: str) -> tuple[ProbeResult, ...]:
            keys = sorted(key for kd, key in self._keys if kd == kind)
            return tuple(_result(key, self._keys[(kind, key)]) for key in keys)

        return ProbeReport(machine, region, at, results("network"), results("region"))


def _result(key: str, k: _Key) -> ProbeResult:
    rtt_ms = round(statistics.median(k.rtts) * 1000, 3) if k.rtts else -1.0
    return ProbeResult(key, k.sent, k.lost, rtt_ms)
