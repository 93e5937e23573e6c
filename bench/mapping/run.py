"""Mapping benchmark: how fast the maps follow failures, with the default timing.

    python -m bench.mapping.run [--trials 20] [--skip edge] ...

Theory of operation (root only; `bench/mapping/lab.py`): two mapping centers, three
relays, a TLNS and two regions of an LLNS and two edges, each daemon a real process in
network namespaces, with the default `[timing]` and `[election]` (damping off: the
same edges are killed over and over on purpose). Every time is read from the daemons'
own `/events` (wall clock; one machine, one clock), from just before the fault:

  1. leader killed (SIGKILL): until every nameserver has accepted a map of a newer term;
     the old leader is restarted (it follows) before the next trial;
  2. leader cut off (nftables drops `--loss` % of what it exchanges with every relay;
     100: cut off; its process lives on): until every nameserver is on a newer term;
     then healed (it follows) before the next trial;
  3. edge killed (no region agent): until every LLNS has accepted a map built after the
     leader saw the edge dead (it is then absent from every LLNS answer: checked with
     dig); the edge is restarted before the next trial.

Prints the table (median, p95, p99, max per fault), writes bench/results/mapping.json
and mapping.png; always stops everything it started and deletes its namespaces.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.dns.system import machine_info

from ..common import add_common_args, csv_arg, measure_guarded, stop_on_sigterm, write_results
from .lab import NAMESERVERS, OTHERS, MappingLab

FAULTS = ("leader_kill", "leader_cutoff", "edge_kill")
EDGES = [m for m, (role, _, _) in OTHERS.items() if role == "edge"]
LLNS = [m for m in NAMESERVERS if OTHERS[m][0] == "llns"]


def say(msg: str) -> None:
    print(f"bench-mapping: {msg}", flush=True)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def _accepted_after(lab: MappingLab, machine: str, since: float, newer: Any) -> float | None:
    """The wall time `machine` first accepted a map for which `newer(term, seq)` holds, after `since`."""
    times = [e["ts"] for e in lab.events(machine)
             if e["event"] == "map_accepted" and e["ts"] >= since and newer(e["term"], e["seq"])]  # fmt: skip
    return min(times) if times else None


def _everyone(lab: MappingLab, machines: list[str], since: float, newer: Any, timeout: float) -> float:
    """Seconds from `since` until every one of `machines` accepted a map `newer` says is."""

    def done() -> list[float] | None:
        got = [_accepted_after(lab, m, since, newer) for m in machines]
        return None if None in got else got  # type: ignore[return-value]

    got = lab.wait("every nameserver to take the new maps", done, timeout, every=0.3)
    return max(got) - since


def stable(lab: MappingLab) -> str:
    """Wait until one center leads and every nameserver is on its term; the leader."""

    def ok() -> str | None:
        leader = lab.leader()
        if leader is None:
            return None
        term = lab.metric(leader, "akacdn_center_term")
        return leader if set(lab.terms().values()) == {term} else None

    return lab.wait("one leader and every nameserver on its maps", ok, 60)


def leader_kill(lab: MappingLab) -> dict[str, float]:
    leader = stable(lab)
    term = lab.metric(leader, "akacdn_center_term") or 0
    t0 = lab.kill(leader)
    took = _everyone(lab, list(NAMESERVERS), t0, lambda t, s: t > term, 30)
    lab.start(leader)
    lab.wait(f"{leader} back, following", lambda: lab.metric(leader, "akacdn_center_leader") == 0, 30)
    return {"seconds": took}


def leader_cutoff(lab: MappingLab, loss: int) -> dict[str, float]:
    leader = stable(lab)
    term = lab.metric(leader, "akacdn_center_term") or 0
    t0 = time.time()
    lab.cut_off(leader, ["relay1", "relay2", "relay3"], loss)
    took = _everyone(lab, list(NAMESERVERS), t0, lambda t, s: t > term, 60)
    resigned = [e["ts"] for e in lab.events(leader) if e["event"] == "election_resigned" and e["ts"] >= t0]
    lab.heal(leader)
    lab.wait(f"{leader} following", lambda: lab.metric(leader, "akacdn_center_leader") == 0, 60)
    return {"seconds": took, "resigned_after": (min(resigned) - t0) if resigned else float("nan")}


def edge_kill(lab: MappingLab, edge: str) -> dict[str, float]:
    leader = stable(lab)
    t0 = lab.kill(edge)

    def built() -> tuple[int, int] | None:
        seen = False
        for e in lab.events(leader):
            if e["ts"] < t0:
                continue
            if e["event"] == "live_set_changed" and edge in e["down"]:
                seen = True
            elif seen and e["event"] == "map_built" and e["map"] == "low":
                return e["term"], e["seq"]
        return None

    version = lab.wait(f"{leader} to build a map without {edge}", built, 30, every=0.3)
    took = _everyone(lab, LLNS, t0, lambda t, s: (t, s) >= version, 30)
    address = lab.ip(edge)
    absent = all(address not in lab.answers(m) for m in LLNS)
    lab.start(edge)
    lab.wait(f"{edge} back in a map", lambda: all(lab.answers(m) for m in LLNS) and built_back(lab, leader, edge), 30)
    return {"seconds": took, "absent": float(absent)}


def built_back(lab: MappingLab, leader: str, edge: str) -> bool:
    events = [e for e in lab.events(leader) if e["event"] == "live_set_changed"]
    return bool(events) and edge in events[-1]["up"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.mapping.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=20, help="per fault (default 20)")
    p.add_argument("--faults", type=csv_arg(str, FAULTS), default=list(FAULTS))
    p.add_argument("--loss", type=int, default=100, help="%% lost between the leader and every relay (default 100)")
    add_common_args(p, "mapping", "nothing", 60.0)
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    if os.geteuid() != 0:
        say("needs root (network namespaces, nftables)")
        return 2
    stop_on_sigterm()
    tmp = Path(tempfile.mkdtemp(prefix="akacdn-bench-mapping-"))
    lab = MappingLab(tmp / "lab")
    doc: dict[str, Any] = {"machine": machine_info(), "args": {k: str(v) for k, v in vars(a).items()}, "faults": {}}

    def steps() -> None:
        lab.build()
        lab.write_config({"mapping": {"damping": False}})
        lab.start_all()
        for fault in a.faults:
            rows: list[dict[str, float]] = []
            for i in range(a.trials):
                if fault == "leader_kill":
                    row = leader_kill(lab)
                elif fault == "leader_cutoff":
                    row = leader_cutoff(lab, a.loss)
                else:
                    row = edge_kill(lab, EDGES[i % len(EDGES)])
                rows.append(row)
                say(f"{fault} {i + 1}/{a.trials}: {row['seconds']:.2f} s")
            secs = [r["seconds"] for r in rows]
            doc["faults"][fault] = {
                "trials": rows,
                "median": statistics.median(secs),
                "p95": pct(secs, 0.95),
                "p99": pct(secs, 0.99),
                "max": max(secs),
            }
        from . import report

        print(report.table(doc))
        write_results(a.out, "mapping", doc, lambda path: report.chart(doc, path), say)

    return measure_guarded(steps, lab, tmp, a.keep, say)


if __name__ == "__main__":
    sys.exit(main())
