"""The failover benchmark's pure part: the probe's lines, the numbers taken from them
and from the agents' /events, and their statistics. No I/O here (unit-tested).

Times are CLOCK_MONOTONIC seconds throughout (the probe's, the runner's kill and restore
times, the agents' `at` and `first_arp` fields), so they subtract directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Answer:
    start: float  # the request's connect began
    end: float  # its answer's header block was in (or it failed)
    address: str
    who: str | None  # X-Served-By; None: no answer
    reason: str = ""  # why not ("connect-timeout", "refused", ...)

    @property
    def ok(self) -> bool:
        return self.who is not None


def parse_line(line: str) -> Answer | None:
    """One probe line (`<start> <end> <address> <machine>|!<reason>`); None if it is not one."""
    parts = line.split()
    if len(parts) != 4:
        return None
    try:
        start, end = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    who = parts[3]
    if who.startswith("!"):
        return Answer(start, end, parts[2], None, who[1:])
    return Answer(start, end, parts[2], who)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default)."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """n, median, p95, max, min, mean of the values that are there (None skipped)."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"n": 0, "median": None, "p95": None, "max": None, "min": None, "mean": None}
    return {
        "n": len(xs),
        "median": percentile(xs, 50),
        "p95": percentile(xs, 95),
        "max": max(xs),
        "min": min(xs),
        "mean": sum(xs) / len(xs),
    }


def of(answers: Iterable[Answer], address: str) -> list[Answer]:
    """The answers about one address, in order of completion."""
    return sorted((a for a in answers if a.address == address), key=lambda a: a.end)


def first_answer_from(answers: Sequence[Answer], address: str, who: str, after: float) -> Answer | None:
    """The first answer (by completion) on `address` served by `who` completing after `after`."""
    for a in of(answers, address):
        if a.end > after and a.who == who:
            return a
    return None


def steady_since(answers: Sequence[Answer], address: str, who: str, after: float, k: int) -> float | None:
    """The completion time of the k-th of k answers in a row (failures break the run) on
    `address`, all served by `who` and all started after `after`; None if not yet."""
    run = 0
    for a in of(answers, address):
        if a.start <= after:
            continue
        run = run + 1 if a.who == who else 0
        if run >= k:
            return a.end
    return None


def gaps(answers: Sequence[Answer], address: str, start: float, end: float) -> dict[str, Any]:
    """What a client saw on `address` between `start` and `end`: the longest time between
    two answers in a row (counting from the last answer before `start`), the failed
    requests, how often the answering machine changed, and the slowest answer."""
    xs = of(answers, address)
    before = [a for a in xs if a.ok and a.end <= start]
    inside = [a for a in xs if start < a.end <= end]
    good = ([before[-1]] if before else []) + [a for a in inside if a.ok]
    longest = max((b.end - a.end for a, b in zip(good, good[1:], strict=False)), default=None)
    changes = sum(1 for a, b in zip(good, good[1:], strict=False) if a.who != b.who)
    return {
        "max_gap": longest,
        "failed": sum(1 for a in inside if not a.ok),
        "answered": sum(1 for a in inside if a.ok),
        "changes": changes,
        "served": sorted({a.who for a in inside if a.who}),
        # a gap with no failed request but slow answers is the answering machine (or this one) stalling
        "slowest_answer": max((a.end - a.start for a in inside if a.ok), default=None),
    }


def outage(answers: Sequence[Answer], address: str, buddy: str, victim: str, t_kill: float) -> dict[str, Any]:
    """Kill to the first answer from the buddy on the victim's address, and what the client
    saw before it: failed requests, and answers still from the victim (in flight at the kill)."""
    first = first_answer_from(answers, address, buddy, t_kill)
    until = first.end if first else math.inf
    window = [a for a in of(answers, address) if t_kill < a.end < until]
    return {
        "outage": first.end - t_kill if first else None,
        "first_buddy_answer": first.end if first else None,
        "failed": sum(1 for a in window if not a.ok),
        "late_victim_answers": sum(1 for a in window if a.who == victim),
        "reasons": sorted({a.reason for a in window if not a.ok}),
    }


def first_event(events: Iterable[dict[str, Any]], kind: str, after: float, **match: str) -> dict[str, Any] | None:
    """The earliest /events record of `kind` whose time (`at`, or `first_arp`) is after
    `after` and whose fields equal `match`."""
    best: dict[str, Any] | None = None
    for e in events:
        if e.get("event") != kind or any(e.get(k) != v for k, v in match.items()):
            continue
        t = _time(e)
        if t is not None and t > after and (best is None or t < _time(best)):  # type: ignore[operator]
            best = e
    return best


def _time(e: dict[str, Any]) -> float | None:
    t = e.get("at", e.get("first_arp"))
    return float(t) if isinstance(t, int | float) else None


def takeover_breakdown(
    events: Iterable[dict[str, Any]], t_kill: float, victim: str, address: str
) -> dict[str, float | None]:
    """The buddy agent's steps after the kill, in seconds after it: the victim declared
    dead, the address taken (the decision), added (netlink acknowledged), its first
    gratuitous ARP sent."""
    evs = list(events)
    dead = first_event(evs, "declared_dead", t_kill, subject=victim)
    took = first_event(evs, "took", t_kill, subject=address)
    added = first_event(evs, "address_added", t_kill, address=address)
    arp = first_event(evs, "announced", t_kill, address=address)
    return {
        "declared_dead": dead["at"] - t_kill if dead else None,
        "took": took["at"] - t_kill if took else None,
        "address_added": added["at"] - t_kill if added else None,
        "first_arp": arp["first_arp"] - t_kill if arp else None,
    }


def return_breakdown(
    buddy_events: Iterable[dict[str, Any]], victim_events: Iterable[dict[str, Any]], t_restore: float, address: str
) -> dict[str, float | None]:
    """The hand-back after the victim's restore, in seconds after it: the buddy decides to
    release and removes the address; the victim adds it and sends its first gratuitous
    ARP. `dual_hold`: how long both had it on their interfaces (buddy removal minus
    victim add; <= 0: never both)."""
    bev, vev = list(buddy_events), list(victim_events)
    released = first_event(bev, "released", t_restore, subject=address)
    removed = first_event(bev, "address_released", t_restore, address=address)
    added = first_event(vev, "address_added", t_restore, address=address)
    arp = first_event(vev, "announced", t_restore, address=address)

    def rel(e: dict[str, Any] | None, key: str = "at") -> float | None:
        return e[key] - t_restore if e else None

    return {
        "buddy_releases": rel(released),
        "buddy_removed": rel(removed),
        "victim_added": rel(added),
        "victim_first_arp": rel(arp, "first_arp"),
        "dual_hold": removed["at"] - added["at"] if removed and added else None,
    }


def false_takeovers(events: Iterable[dict[str, Any]], foreign: str, peer: str, t0: float, t1: float) -> dict[str, int]:
    """In one agent's /events between t0 and t1: takeovers of the `foreign` address (a
    live peer's), the adds that carried them out, and how often it declared `peer` dead."""
    evs = [e for e in events if (t := _time(e)) is not None and t0 <= t <= t1]
    return {
        "took": sum(1 for e in evs if e.get("event") == "took" and e.get("subject") == foreign),
        "address_added": sum(1 for e in evs if e.get("event") == "address_added" and e.get("address") == foreign),
        "declared_dead": sum(1 for e in evs if e.get("event") == "declared_dead" and e.get("subject") == peer),
        "unhealthy": sum(1 for e in evs if e.get("event") == "unhealthy"),
    }


def metric(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """A sample's value from Prometheus text exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted((labels or {}).items()))
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        key, _, value = line.rpartition(" ")
        metric_name, _, rest = key.partition("{")
        got = ",".join(sorted(x for x in rest.rstrip("}").split(",") if x))
        if metric_name == name and got == want:
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 0.0


def vrrp_master_entries(log: str, instance: str) -> int:
    """How often keepalived's log says `(instance) Entering MASTER STATE`."""
    return sum(1 for line in log.splitlines() if f"({instance}) Entering MASTER STATE" in line)
