"""Part 3: the other serials' requests across a request-of-death storm.

From a clean start (no quarantine, every edge live), for `seconds`: `clients` threads
fetch the demo customer's `/` (Host www.demo.example) from every edge in turn (each
from a different first edge), while one more thread sends the request of death to every
edge in turn every 0.2 s. The first two crash their edges and the serial is
quarantined; from then on most edges refuse it (503) and the quarantine set's edges
crash and roll each time it comes round to them. Every demo request's outcome is kept
(200: success; anything else, connection errors included: failure), with the time and
the edge; the rolls are the supervisor's restarts during the storm.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from akacdn.devnet.supervisor import Devnet

from . import net

DEATH_EVERY = 0.2
SETTLE = 1.0  # an edge the request of death crashed just before the quarantine is back within this


class Storm:
    def __init__(self, dn: Devnet, seconds: float, clients: int) -> None:
        self.dn, self.seconds, self.clients = dn, seconds, clients
        self.edges = [m.id for m in dn.net.by_role("edge")]
        self.results: list[tuple[float, str, int]] = []  # (seconds from the start, edge, status)
        self.death: Counter[int] = Counter()  # status of each request of death (0: the connection died)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.t0 = 0.0

    def _client(self, first: int) -> None:
        i = first
        while not self._stop.is_set():
            edge = self.edges[i % len(self.edges)]
            i += 1
            code = net.edge_status(self.dn.net.machine(edge).address, timeout=2.0)
            with self._lock:
                self.results.append((time.monotonic() - self.t0, edge, code))
            if code == 0:
                time.sleep(0.005)  # a refused port fails at once: do not spin

    def _deaths(self) -> None:
        i = 0
        while not self._stop.wait(DEATH_EVERY):
            edge = self.edges[i % len(self.edges)]
            i += 1
            code = net.edge_status(self.dn.net.machine(edge).address, net.DEATH_HOST, "/death", timeout=2.0)
            with self._lock:
                self.death[code] += 1

    def run(self, say: Callable[[str], None]) -> dict[str, Any]:
        dn = self.dn
        restarts_before = len(dn.restarts)
        self.t0 = time.monotonic()
        threads = [threading.Thread(target=self._client, args=(k * 2,), daemon=True) for k in range(self.clients)]
        threads.append(threading.Thread(target=self._deaths, daemon=True))
        for t in threads:
            t.start()
        quarantined_at, servers = float("nan"), []
        try:
            while time.monotonic() - self.t0 < self.seconds:
                if not servers:
                    q = net.quarantine_of(net.status(dn))
                    if q:
                        quarantined_at, servers = time.monotonic() - self.t0, list(q["servers"])
                        say(f"storm: serial {net.DEATH_SERIAL} quarantined to {','.join(servers)} "
                            f"after {quarantined_at:.2f} s")  # fmt: skip
                time.sleep(0.25)
        finally:
            self._stop.set()
            for t in threads:
                t.join(10)
        rolls = Counter(name for _, name, _ in dn.restarts[restarts_before:])
        return {
            "seconds": self.seconds,
            "clients": self.clients,
            "quarantined_after": quarantined_at,
            "servers": servers,
            "death_requests": {str(k): v for k, v in sorted(self.death.items())},
            "rolls": dict(sorted(rolls.items())),
            **tally(self.results, servers, quarantined_at, self.seconds),
        }


def tally(
    results: list[tuple[float, str, int]], servers: list[str], quarantined_at: float, seconds: float
) -> dict[str, Any]:
    """Success counts over all edges, over the edges outside the quarantine set, and over
    those from `SETTLE` after the leader listed the quarantine (when the edges it crashed
    before are back); the failures per edge and status, how many came before the
    quarantine, and the outcomes per second."""
    outside = [r for r in results if r[1] not in servers]
    after = [r for r in outside if r[0] >= quarantined_at + SETTLE]  # none when never quarantined (NaN)
    failed = [r for r in results if r[2] != 200]

    def ratio(rows: list[tuple[float, str, int]]) -> dict[str, Any]:
        ok = sum(1 for r in rows if r[2] == 200)
        return {"requests": len(rows), "ok": ok, "ratio": ok / len(rows) if rows else float("nan")}

    before = sum(1 for r in failed if not r[0] >= quarantined_at)  # NaN (never quarantined): all before
    return {
        "all": ratio(results),
        "outside_set": ratio(outside),
        "outside_set_after": ratio(after),
        "failures": {f"{edge} {code}": n for (edge, code), n in sorted(Counter((r[1], r[2]) for r in failed).items())},
        "failures_before_quarantine": before,
        "per_second": per_second([r for r in results if r[0] < seconds]),
    }


def per_second(results: list[tuple[float, str, int]]) -> list[list[int]]:
    """[successes, failures] in each second of the storm."""
    out: list[list[int]] = []
    for t, _, code in results:
        i = int(t)
        while len(out) <= i:
            out.append([0, 0])
        out[i][0 if code == 200 else 1] += 1
    return out
