"""Per-serial traffic reports from the edges (pure): the mapping center's input for load
balancing and fault quarantine.

The edge counts, per serial, requests by cache outcome, bytes sent, errors (5xx it
answered), the requests it sent to the origin, and how many of its requests came from
other edges (tiered distribution, SureRoute detours), and publishes them every heartbeat
interval on the topic `report`. Origin offload per serial is then
1 - origin / (requests - tunneled), summed over the edges.

Demand per client network (measured mapping): each connection counts its requests, and
the edge adds them to `remotes` (per client address) before each report; a report folds
them onto the configured client networks (longest prefix) and carries requests per network
prefix.

The plain hit (`hit`) counts only on its stored answer; the edge adds those counts to the
answer's serial row (`add_plain_hits`) before each report, as `record` would have.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict

from ..mapping.messages import Report, SerialReport
from ..mapping.routing import PrefixTable

_ZERO = (0, 0, 0, 0, 0, 0, 0)  # requests, hits, misses, errors, bytes, origin, tunneled


class SerialCounts:
    """Counts since the last report."""

    def __init__(self) -> None:
        self._counts: defaultdict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0, 0])
        self.remotes: dict[str, int] = {}  # client address -> requests (the connections' counts, added)
        self._clients: dict[str, int] = {}  # client network prefix -> requests (workers' reports merged)

    def record(self, serial: int, x_cache: str, status: int, size: int, tunneled: bool = False) -> None:
        c = self._counts[serial]
        c[0] += 1
        if tunneled:
            c[6] += 1
        if x_cache in ("HIT", "STALE", "REVALIDATED"):
            c[1] += 1
        else:
            c[2] += 1
        if status >= 500:
            c[3] += 1
        c[4] += size

    def row(self, serial: int) -> list[int]:
        """A serial's counts, the same list for good (a report zeroes it in place): a plain
        hit's answer keeps it (`add_plain_hits`)."""
        return self._counts[serial]

    @staticmethod
    def add_plain_hits(row: list[int], hits: int, error: bool, size: int) -> None:
        """`hits` plain hits of one stored answer (`size` bytes of body; a stored 5xx is an
        `error`) into its serial's `row`: requests, hits, errors, bytes, as `record` would."""
        row[0] += hits
        row[1] += hits
        if error:
            row[3] += hits
        row[4] += hits * size

    def origin(self, serial: int) -> None:
        """This edge sent a request of `serial` to its origin."""
        self._counts[serial][5] += 1

    def drain(
        self, machine: str, region: str, interval: float, networks: PrefixTable[str] | None = None
    ) -> Report | None:
        """The report for the interval just ended (None when nothing was served), and reset.
        `networks`: the client networks (prefix -> prefix) the requests are counted by."""
        self._fold(networks)
        serials = [SerialReport(s, *c) for s, c in sorted(self._counts.items()) if any(c)]
        if not serials and not self._clients:
            return None
        clients = dict(sorted(self._clients.items()))
        for c in self._counts.values():
            c[:] = _ZERO  # (in place: plain hits hold the rows)
        self._clients.clear()
        return Report(machine, region, interval, serials, clients)

    def _fold(self, networks: PrefixTable[str] | None) -> None:
        if networks is not None and not networks.empty:
            clients = self._clients
            for addr, n in self.remotes.items():
                try:
                    prefix, _ = networks.lookup(ipaddress.ip_address(addr))
                except ValueError:  # (a Unix socket, an unparsable peer)
                    continue
                if prefix is not None:
                    clients[prefix] = clients.get(prefix, 0) + n
        self.remotes.clear()

    def merge(self, report: Report) -> None:
        """Add a worker process's counts (its drained report) to these."""
        for prefix, n in report.clients.items():
            self._clients[prefix] = self._clients.get(prefix, 0) + n
        for s in report.serials:
            c = self._counts[s.serial]
            for i, v in enumerate((s.requests, s.hits, s.misses, s.errors, s.bytes, s.origin, s.tunneled)):
                c[i] += v
