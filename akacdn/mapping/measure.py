"""Measurements for mapping (pure): what the mapping center knows of every (client network,
region) path and of every client network's demand, from the edges' reports.

Theory of operation. Every probe round an edge sends a `ProbeReport`: per client network
(by prefix) and per other region, how many probes went, how many were lost, and the
median RTT of the replies. `Measurements.probed` believes a report only from a configured
edge about its own region, and only about configured client networks and regions; the
rest is refused with a reason (counted by the shell). Each (network, region) path keeps an
exponentially weighted moving average of RTT and of the loss fraction (`alpha`: the
weight of a new round); several edges of a region probe the same network (for
redundancy), and each round of each counts. A round that lost every probe moves the loss
towards 1 and leaves the RTT as it was. A path not measured within `stale` seconds is no
data: the allocator then falls back to the static route.

Demand: the edges' per-serial `Report` carries requests per configured client network
over its interval (a heartbeat interval); `demanded` keeps each edge's last rates (a
network missing from a report had none), and `demand` sums a network's rates over the
edges that reported within `demand_window` (an edge that served nothing sends no report:
its rates lapse then).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..config import Network
from .allocate import Path
from .messages import ProbeReport


class _Ewma:
    __slots__ = ("rtt", "loss", "at")

    def __init__(self) -> None:
        self.rtt = -1.0  # ms; -1 until a reply came back
        self.loss = 0.0
        self.at = 0.0


class Measurements:
    """Probe paths and demand per client network (time passed in)."""

    def __init__(self, net: Network) -> None:
        self._paths: dict[tuple[str, str], _Ewma] = {}  # (prefix, region) -> moving averages
        self._between: dict[tuple[str, str], _Ewma] = {}  # (from region, to region)
        self._demand: dict[str, tuple[dict[str, float], float]] = {}  # edge -> ({prefix: req/s}, at)
        self.configure(net)

    def configure(self, net: Network) -> None:
        """Take a (re)loaded config: paths of networks or regions no longer configured are forgotten."""
        self.alpha, self.stale = net.mapping.probe_ewma, net.mapping.probe_stale
        self.demand_window = max(2.0, 4 * net.timing.heartbeat_interval)
        self._edges = {m.id: m.region for m in net.by_role("edge")}
        self._regions = {r.id for r in net.regions}
        self._allowed = {c.prefix: frozenset(c.regions) for c in net.client_networks}
        self._paths = {k: v for k, v in self._paths.items() if k[0] in self._allowed and k[1] in self._regions}
        self._between = {k: v for k, v in self._between.items() if k[0] in self._regions and k[1] in self._regions}
        self._demand = {k: v for k, v in self._demand.items() if k in self._edges}

    def probed(self, sender: str, report: ProbeReport, now: float) -> str | None:
        """Take one probe round; returns a refusal reason, or None when taken."""
        region = self._edges.get(report.machine)
        if region is None or sender != report.machine:
            return "unknown_prober"
        if report.region != region:
            return "region_mismatch"
        for r in report.networks:
            allowed = self._allowed.get(r.target)
            if allowed is None or (allowed and region not in allowed):
                return "unknown_network"
        if any(r.target not in self._regions or r.target == region for r in report.regions):
            return "unknown_region"
        if any(r.sent < 1 or not 0 <= r.lost <= r.sent for r in (*report.networks, *report.regions)):
            return "bad_counts"
        for r in report.networks:
            self._update(self._paths, (r.target, region), r.sent, r.lost, r.rtt_ms, now)
        for r in report.regions:
            self._update(self._between, (region, r.target), r.sent, r.lost, r.rtt_ms, now)
        return None

    def _update(self, table: dict[tuple[str, str], _Ewma], key: tuple[str, str], sent: int, lost: int,
                rtt_ms: float, now: float) -> None:  # fmt: skip
        e = table.get(key)
        fresh = e is None or now - e.at > self.stale
        if e is None:
            e = table[key] = _Ewma()
        a = 1.0 if fresh else self.alpha
        e.loss += a * (lost / sent - e.loss)
        if rtt_ms >= 0 and lost < sent:
            e.rtt = rtt_ms if e.rtt < 0 or fresh else e.rtt + self.alpha * (rtt_ms - e.rtt)
        elif fresh:
            e.rtt = -1.0
        e.at = now

    def paths(self, now: float) -> dict[str, dict[str, Path]]:
        """prefix -> region -> the fresh measured path (a path that never answered has
        the loss it measured and no RTT: it is left out)."""
        out: dict[str, dict[str, Path]] = {}
        for (prefix, region), e in self._paths.items():
            if now - e.at <= self.stale and e.rtt >= 0:
                out.setdefault(prefix, {})[region] = Path(e.rtt, e.loss)
        return out

    def between(self, now: float) -> dict[tuple[str, str], Path]:
        """(from region, to region) -> the fresh measured path between them."""
        return {k: Path(e.rtt, e.loss) for k, e in self._between.items() if now - e.at <= self.stale and e.rtt >= 0}

    def demanded(self, edge: str, clients: Mapping[str, int], interval: float, now: float) -> None:
        """An edge's requests per client network over `interval` seconds (unknown prefixes ignored)."""
        if edge not in self._edges or interval <= 0:
            return
        rates = {p: n / interval for p, n in clients.items() if p in self._allowed and n >= 0}
        self._demand[edge] = (rates, now)

    def demand(self, now: float) -> dict[str, float]:
        """prefix -> requests per second over every edge (fresh reports only)."""
        out: dict[str, float] = {}
        for rates, at in self._demand.values():
            if now - at <= self.demand_window:
                for prefix, rate in rates.items():
                    out[prefix] = out.get(prefix, 0.0) + rate
        return out
