"""The SureRoute benchmark's pure parts: the Zipf request mix, the Via chain's reading,
per-second aggregation and the run's summaries, offload arithmetic. No I/O."""

from __future__ import annotations

import bisect
import itertools
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple


class Result(NamedTuple):
    """One client request of the peering part."""

    t: float  # when it was due, seconds from the start of the run (its second: int(t))
    customer: str
    ok: bool  # 200 and the whole, expected body
    seconds: float  # from when it was due until the answer was read, or the failure (a timeout at its timeout)
    outcome: str  # "200", another status ("502"), "body" (200 but not the expected body), "timeout", "error"
    detour: bool  # the answer's Via chain names an edge of another region than the client's edge


# -- the request mix ------------------------------------------------------------------------
def zipf_weights(n: int, exponent: float) -> list[float]:
    """P(rank k) ∝ 1 / k^exponent for k = 1..n, normalized (exponent 0: uniform)."""
    if n < 1:
        raise ValueError("need at least one object")
    raw = [1.0 / (k**exponent) for k in range(1, n + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def zipf_sample(n: int, exponent: float, count: int, seed: int) -> list[int]:
    """`count` object indexes in 0..n-1 (0: the most popular), Zipf-distributed, the same
    list for the same arguments (its own seeded generator)."""
    cum = list(itertools.accumulate(zipf_weights(n, exponent)))
    rng = random.Random(seed)
    return [min(bisect.bisect_left(cum, rng.random() * cum[-1]), n - 1) for _ in range(count)]


def spread(objects: Sequence[int], edges: int) -> list[tuple[int, int]]:
    """(edge index, object) per request: the requests dealt round-robin over `edges`."""
    return [(i % edges, o) for i, o in enumerate(objects)]


def ideal_origin(requests: Sequence[tuple[int, int]], tiered: bool) -> int:
    """Origin requests if every cache did its job perfectly: one per object and child
    edge without a parent tier, one per object with it."""
    return len({o for _, o in requests}) if tiered else len(set(requests))


def offload(requests: int, origin: int) -> float:
    """1 - origin/requests: the share of requests the network answered without the origin
    (NaN without requests; negative when the origin saw more requests than the clients sent)."""
    return 1.0 - origin / requests if requests else float("nan")


def origin_requests(counts: Mapping[str, int], marker: str) -> int:
    """Requests the origin counted (per path+query, `/_origin/stats`) whose target contains `marker`."""
    return sum(n for target, n in counts.items() if marker in target)


# -- Via ------------------------------------------------------------------------------------
# one Via element: protocol, received-by, optional comment ("1.1 r1-e1 (akacdn)")
_VIA = re.compile(r"\s*([^\s,]+)\s+([^\s,()]+)(?:\s+\([^)]*\))?\s*(?:,|$)")


def via_hops(values: Iterable[str]) -> list[str]:
    """The received-by names of every Via field (repeated fields and comma lists alike), in order."""
    out: list[str] = []
    for v in values:
        out += [m.group(2) for m in _VIA.finditer(v)]
    return out


def other_regions(values: Iterable[str], own: str, region_of: Mapping[str, str]) -> list[str]:
    """The regions other than `own` whose edges the Via chain names (unknown names are ignored)."""
    regions = (region_of.get(h) for h in via_hops(values))
    return list(dict.fromkeys(r for r in regions if r is not None and r != own))


# -- per second and summaries ---------------------------------------------------------------
def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (NaN for no values)."""
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def ratio(ok: int, n: int) -> float:
    return ok / n if n else float("nan")


def per_second(results: Iterable[Result], customer: str, seconds: int) -> list[dict[str, Any]]:
    """One row per second of the run (by when each request was due) for one customer:
    requests, ok, success, detoured answers, p50/p99 of every request's time (failures
    at their time to fail)."""
    by: list[list[Result]] = [[] for _ in range(seconds)]
    for r in results:
        if r.customer == customer and 0 <= r.t < seconds:
            by[int(r.t)].append(r)
    rows = []
    for s, rs in enumerate(by):
        ok = sum(r.ok for r in rs)
        times = [r.seconds for r in rs]
        row = {"second": s, "requests": len(rs), "ok": ok, "success": ratio(ok, len(rs))}
        rows.append(row | {"detoured": sum(r.detour for r in rs), "p50": pct(times, 0.5), "p99": pct(times, 0.99)})
    return rows


def window(results: Iterable[Result], customer: str, start: float, end: float) -> dict[str, Any]:
    """Requests of `customer` due in [start, end): counts, success, detours, latency, failures by outcome."""
    rs = [r for r in results if r.customer == customer and start <= r.t < end]
    ok = sum(r.ok for r in rs)
    times = [r.seconds for r in rs]
    failures = Counter(r.outcome for r in rs if not r.ok)
    return {"requests": len(rs), "ok": ok, "success": ratio(ok, len(rs)), "detoured": sum(r.detour for r in rs),
            "p50": pct(times, 0.5), "p99": pct(times, 0.99), "max": max(times, default=float("nan")),
            "failures": dict(sorted(failures.items()))}  # fmt: skip


def route_times(results: Iterable[Result], customer: str, cut: float, heal: float) -> dict[str, float]:
    """When the route moved, seen from the answers (seconds, NaN: never):
    `first_detour`: from the cut until the first answer through another region arrived
    (of the requests due after the cut); `last_detour`: from the heal until the last
    request due that still went through another region (its answer came that late or later)."""
    rs = [r for r in results if r.customer == customer]
    arrivals = [r.t + r.seconds - cut for r in rs if r.t >= cut and r.ok and r.detour]
    late = [r.t - heal for r in rs if r.t >= heal and r.detour]
    return {"first_detour": min(arrivals, default=float("nan")), "last_detour": max(late, default=float("nan"))}


def primary_changes(polls: Iterable[tuple[float, str]]) -> list[tuple[float, str]]:
    """The polled primary path's changes: (time, new primary), the first poll included."""
    out: list[tuple[float, str]] = []
    for t, p in polls:
        if not out or out[-1][1] != p:
            out.append((t, p))
    return out


def route_events(events: Iterable[Mapping[str, Any]], customer: str, wall0: float) -> list[dict[str, Any]]:
    """An edge's SureRoute events (`/events`: races, route changes, failovers) of one
    customer, their wall-clock stamps turned into seconds from `wall0` (the run's start)."""
    out = []
    for e in events:
        if str(e.get("event", "")).startswith("sureroute_") and e.get("customer") == customer:
            rest = {k: v for k, v in e.items() if k not in ("ts", "customer")}
            out.append({"t": round(float(e["ts"]) - wall0, 2), **rest})
    return out
