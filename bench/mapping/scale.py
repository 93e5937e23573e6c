"""Mapping at the paper's scale: probe data in, signed maps out, in one process.

    python -m bench.mapping.scale [--networks 10000] [--regions 1100] [--servers 15000]
                                  [--serials 10000] [--paths 20] [--repeat 5] [--profile]

Theory of operation (`bench/mapping/README.md`, "Scale"): no daemon runs and nothing
goes on the network. A synthetic network is written as TOML (regions on a ring, dealt
over a few ISPs and sites, `--servers` edges with `max_rps` spread over them, an LLNS per
region, `--serials` customers, `--networks` client /24s) and loaded with
`akacdn.config.load_network`. Each client network has about `--paths` measured regions:
the nearest ones on the ring, RTT growing with the distance plus noise, some loss. Then,
`--repeat` times, with a new `Steering` (a center that just started):

  0. intake: one probe round (two probing edges per region, each a `ProbeReport` over
     every network it measures) decoded from msgpack and fed to `Measurements.probed`,
     and a round of region-to-region probes (`[probing] regions`, on by default);
  1. an allocation cycle from scratch (`Steering.assign`), then, a hold plus a cycle
     later, after two more rounds with 1% of the paths changed, the steady-state cycle;
  2. `build()` of the top and low maps with the routes and each region's defaults;
  3. versioning (`MapBook.update`) and signing + encoding (`maps.sign`): the signed sizes;
  4. an LLNS taking the low map (`LowLevelZone.use_map`) and answering `servers_for` for
     every serial, for clients spread over the networks: cold (after the map) and warm;
  5. the whole "probe data to signed maps" (1 + 2 + 3), against the 1 s goal.

Prints the table (median and max over the repeats), writes bench/results/mapping_scale.json
(and mapping_scale.png). `--profile`: one more repeat under cProfile (not counted), the
top functions of each step that took more than `--profile-min` seconds. `--gc off` or
`freeze`: the garbage collector disabled, or everything made before frozen, during the
steps; `--no-between`: no region-to-region round.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import ipaddress
import json
import pstats
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from akacdn.config import Network, load_network
from akacdn.dns.lowlevel import LowLevelZone
from akacdn.dns.wire import Client
from akacdn.mapping.builder import MapBook, build
from akacdn.mapping.maps import AnyMap, LowMap, TopMap, sign
from akacdn.mapping.messages import Heartbeat, ProbeReport, ProbeResult
from akacdn.mapping.steering import Steering
from bench.dns.system import machine_info

from ..common import RESULTS, stop_on_sigterm, write_results

GOAL = 1.0  # seconds: probe data to signed maps
ISPS = 8  # regions are dealt over this many networks (ISPs / ASes)
REGIONS_PER_SITE = 3
MACHINE_BASE = int(ipaddress.IPv4Address("127.94.0.1"))  # config only: nothing is sent to them
CLIENT_BASE = int(ipaddress.IPv4Address("10.0.0.0"))  # client /24s (config only)
ORIGIN = "http://127.94.255.250:8080"
MAX_RPS = 1000.0  # per edge
PROBE_TARGETS = 2  # per client network: a round sends this many probes per network and prober
PROBERS = 2  # edges of a region that probe each network (`[probing] probers`, the default)
CHANGED = 0.01  # of the paths, changed before the steady-state cycle
SIGNER = "mc1"


def say(msg: str) -> None:
    print(f"bench-mapping-scale: {msg}", flush=True)


# the synthetic network ------------------------------------------------------------------
def region_id(i: int) -> str:
    return f"r{i:04d}"


def client_prefix(j: int) -> str:
    return f"{ipaddress.IPv4Address(CLIENT_BASE + 256 * j)}/24"


def client_address(j: int, host: int = 53) -> str:
    return str(ipaddress.IPv4Address(CLIENT_BASE + 256 * j + host))


def edges_of(i: int, regions: int, servers: int) -> int:
    """Edges of region i: `servers` dealt as evenly as they go."""
    return servers // regions + (1 if i < servers % regions else 0)


def documents(a: argparse.Namespace, mapper_pub: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """network.toml and customers.toml, as dicts."""
    addr = iter(range(MACHINE_BASE, MACHINE_BASE + 10**7))

    def ip() -> str:
        return str(ipaddress.IPv4Address(next(addr)))

    R = a.regions
    regions = [
        {
            "id": region_id(i),
            "fallback": [region_id((i + 1) % R), region_id((i - 1) % R)] if R > 2 else [],
            "network": f"as{64500 + i % ISPS}",
            "site": f"site{i // REGIONS_PER_SITE}",
        }
        for i in range(R)
    ]
    machines: list[dict[str, Any]] = [{"id": f"tlns{i}", "role": "tlns", "address": ip()} for i in range(1, 5)]
    machines += [{"id": f"relay{i}", "role": "relay", "region": region_id(i % R), "address": ip()} for i in range(1, 4)]
    machines.append({"id": SIGNER, "role": "mapper", "address": ip(), "public_key": mapper_pub,
                     "key_file": f"keys/{SIGNER}.key"})  # fmt: skip
    for i in range(R):
        rid = region_id(i)
        machines.append({"id": f"{rid}-llns", "role": "llns", "region": rid, "address": ip()})
        for e in range(1, edges_of(i, R, a.servers) + 1):
            machines.append({"id": f"{rid}-e{e}", "role": "edge", "region": rid, "address": ip(), "max_rps": MAX_RPS})
    nets = [
        {"prefix": client_prefix(j), "probes": [client_address(j, h) for h in range(1, PROBE_TARGETS + 1)]}
        for j in range(a.networks)
    ]
    network = {
        "base_domain": "akacdn.test",
        "customers": "customers.toml",
        "state_dir": "state",
        "keys": {"message_key": secrets.token_hex(32)},
        "regions": regions,
        "machines": machines,
        "client_networks": nets,
    }
    customers = {
        "customers": [
            {"name": f"c{n}", "serial": n, "hostnames": [f"www{n}.scale.example"], "origin": ORIGIN}
            for n in range(1, a.serials + 1)
        ]
    }
    return network, customers


def write_network(directory: Path, a: argparse.Namespace) -> tuple[Path, Ed25519PrivateKey]:
    """The TOML files and the mapping center's key; the network file's path and the key."""
    (directory / "keys").mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    (directory / "keys" / f"{SIGNER}.key").write_text(raw.hex() + "\n")
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    network, customers = documents(a, pub)
    (directory / "customers.toml").write_text(tomli_w.dumps(customers))
    path = directory / "network.toml"
    path.write_text(tomli_w.dumps(network))
    return path, key


@dataclass
class World:
    """The measured paths, per region: (client network index, RTT ms, loss fraction)."""

    net: Network
    by_region: dict[str, list[tuple[int, float, float]]] = field(default_factory=dict)
    probers: dict[str, list[str]] = field(default_factory=dict)  # region -> its probing edges

    @property
    def paths(self) -> int:
        return sum(len(v) for v in self.by_region.values())


def make_world(net: Network, a: argparse.Namespace, rng: random.Random) -> World:
    """Each network j sits on the ring near region j*R/N and measures the `--paths`
    regions around it: RTT = access (2-30 ms) + 1.5 ms per region of distance + 0-4 ms
    noise; 5% of the paths lose 0.5-5%."""
    R, N = len(net.regions), len(net.client_networks)
    ids = [r.id for r in net.regions]
    w = World(net, {rid: [] for rid in ids})
    for rid in ids:
        w.probers[rid] = []
    for m in net.by_role("edge"):
        if len(w.probers[m.region]) < PROBERS:
            w.probers[m.region].append(m.id)
    count = min(a.paths, R)
    for j in range(N):
        center = j * R // N
        access = rng.uniform(2.0, 30.0)
        for d in range(-(count // 2), count - count // 2):
            rtt = access + 1.5 * abs(d) + rng.uniform(0.0, 4.0)
            loss = rng.uniform(0.005, 0.05) if rng.random() < 0.05 else 0.0
            w.by_region[ids[(center + d) % R]].append((j, round(rtt, 3), loss))
    return w


def probe_round(w: World, at: float, rng: random.Random, changed: float = 0.0) -> list[tuple[str, bytes]]:
    """One probe round as the center receives it: (sender, msgpack ProbeReport) per probing
    edge. `changed`: the share of paths whose RTT triples (or that lose 30%) this round."""
    prefixes = [c.prefix for c in w.net.client_networks]
    out = []
    for rid, entries in w.by_region.items():
        for edge in w.probers[rid]:
            results = []
            for j, rtt, loss in entries:
                if changed and rng.random() < changed:
                    if rng.random() < 0.5:
                        rtt *= 3.0
                    else:
                        loss = 0.3
                lost = sum(1 for _ in range(PROBE_TARGETS) if loss and rng.random() < loss)
                sample = -1.0 if lost == PROBE_TARGETS else round(rtt + rng.uniform(-0.5, 0.5), 3)
                results.append(ProbeResult(prefixes[j], PROBE_TARGETS, lost, sample))
            results.sort(key=lambda r: r.target)
            report = ProbeReport(edge, rid, at, tuple(results))
            out.append((edge, msgspec.msgpack.encode(report)))
    return out


def between_round(w: World, at: float, rng: random.Random) -> list[tuple[str, bytes]]:
    """One round of `[probing] regions` (the default): every other region's LLNS probed by
    `PROBERS` edges of each region (every edge takes a share), RTT by ring distance."""
    ids = [r.id for r in w.net.regions]
    R = len(ids)
    edges: dict[str, list[str]] = {rid: [] for rid in ids}
    for m in w.net.by_role("edge"):
        edges[m.region].append(m.id)
    out = []
    for i, rid in enumerate(ids):
        mine = edges[rid]
        shares: dict[str, list[ProbeResult]] = {e: [] for e in mine}
        for k, other in enumerate(ids):
            if other == rid:
                continue
            d = min((k - i) % R, (i - k) % R)
            for p in range(min(PROBERS, len(mine))):
                rtt = round(1.0 + 1.5 * d * 20 / max(1, R // 2) + rng.uniform(0.0, 2.0), 3)
                shares[mine[(k + p) % len(mine)]].append(ProbeResult(other, 1, 0, rtt))
        for edge, results in shares.items():
            if results:
                out.append((edge, msgspec.msgpack.encode(ProbeReport(edge, rid, at, regions=tuple(results)))))
    return out


def live_set(net: Network, rng: random.Random) -> dict[str, Heartbeat]:
    """A heartbeat from every edge (load 20-40% of its max_rps) and every LLNS."""
    live = {}
    for m in net.machines:
        if m.role == "edge":
            live[m.id] = Heartbeat(m.id, m.role, m.region, True, round(m.max_rps * rng.uniform(0.2, 0.4), 1))
        elif m.role == "llns":
            live[m.id] = Heartbeat(m.id, m.role, m.region, True, round(rng.uniform(100, 1000), 1))
    return live


# the measured steps ---------------------------------------------------------------------
_decode = msgspec.msgpack.Decoder(ProbeReport)


def intake(s: Steering, reports: list[tuple[str, bytes]], now: float) -> int:
    """The center's `on_probe`: decode, then `Measurements.probed`; the refusals."""
    refused = 0
    for sender, body in reports:
        if s.measurements.probed(sender, _decode.decode(body), now) is not None:
            refused += 1
    return refused


class Timer:
    """Seconds per step; with a profiler, each step's own profile."""

    def __init__(self, profile: bool = False) -> None:
        self.seconds: dict[str, float] = {}
        self.profiles: dict[str, pstats.Stats] = {}
        self.profile = profile

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        prof = cProfile.Profile() if self.profile else None
        start = time.perf_counter()
        if prof is not None:
            prof.enable()
        try:
            yield
        finally:
            if prof is not None:
                prof.disable()
            self.seconds[name] = time.perf_counter() - start
            if prof is not None:
                self.profiles[name] = pstats.Stats(prof)


def version_and_sign(
    book: MapBook, key: Ed25519PrivateKey, fresh: list[AnyMap], t: Timer, phase: str
) -> dict[str, int]:
    """Step 3: `MapBook.update`, then `sign` (encode + Ed25519) of every changed map; sizes."""
    with t.step(f"version_{phase}"):
        changed = book.update(fresh)
    sizes = {}
    with t.step(f"sign_{phase}"):
        for m in changed:
            sizes[m.key] = len(sign(key, SIGNER, m))
    return sizes


def one_repeat(net: Network, world: World, key: Ed25519PrivateKey, t: Timer, seed: int,
               between: list[tuple[str, bytes]], gc_mode: str = "on") -> dict[str, Any]:  # fmt: skip
    """Every step once, for a center that just started; returns what is not a time.
    `between`: a region-to-region round, taken after the first network round (empty: none);
    `gc_mode`: "on" (as the center runs), "off" (disabled during the steps), "freeze"
    (everything made before the steps moved to the permanent generation)."""
    rng = random.Random(seed)
    live = live_set(net, rng)
    first = probe_round(world, 1.0, rng)
    _, steady_at = schedule(net)
    again = probe_round(world, steady_at - net.probing.interval, rng)
    changed = probe_round(world, steady_at, rng, CHANGED)
    results = sum(len(_decode.decode(b).networks) for _, b in first)
    gc.collect()
    if gc_mode == "freeze":
        gc.freeze()
    elif gc_mode == "off":
        gc.disable()
    try:
        return _steps(net, key, t, live, (first, again, changed), between, results)
    finally:
        gc.enable()
        if gc_mode == "freeze":
            gc.unfreeze()


def schedule(net: Network) -> tuple[float, float]:
    """When the first cycle runs (a round after the first probes, at 1.0), and the steady
    one: a hold and a cycle later, so every network is out of its hold."""
    t0 = 1.0 + net.probing.interval
    return t0, t0 + net.mapping.hold + net.mapping.assign_interval


def _steps(net: Network, key: Ed25519PrivateKey, t: Timer, live: dict[str, Heartbeat],
           rounds: tuple[list[tuple[str, bytes]], ...], between: list[tuple[str, bytes]],
           results: int) -> dict[str, Any]:  # fmt: skip
    first, again, changed = rounds
    t0, steady_at = schedule(net)
    s = Steering(net)
    book = MapBook(term=1)
    with t.step("intake"):
        refused = intake(s, first, 1.0)
    if between:
        with t.step("intake_between"):
            refused += intake(s, between, 1.0)
    with t.step("assign_scratch"):
        alloc = s.assign(t0, live, ())
    moves_scratch = len(alloc.moves)
    with t.step("build_scratch"):
        defaults = s.defaults(live, ())
        top, lows = build(net, live, time.time(), (), (), s.routes, defaults)
    assert top is not None and lows, "nothing built"
    version_and_sign(book, key, [top, *lows], t, "scratch")

    intake(s, again, steady_at - net.probing.interval)  # (untimed: the same paths again)
    if between:
        intake(s, between, steady_at - net.probing.interval)  # (and the regions again)
    with t.step("intake_steady"):
        refused += intake(s, changed, steady_at)
    with t.step("assign_steady"):
        alloc = s.assign(steady_at, live, ())
    moves = {}
    for mv in alloc.moves:
        moves[mv.why] = moves.get(mv.why, 0) + 1
    with t.step("build_steady"):
        defaults = s.defaults(live, ())
        top, lows = build(net, live, time.time(), (), (), s.routes, defaults)
    assert top is not None and lows
    sizes = version_and_sign(book, key, [top, *lows], t, "steady")
    low = book.maps["low"]
    assert isinstance(low, LowMap) and isinstance(book.maps["top"], TopMap)
    full = {k: len(sign(key, SIGNER, mp)) for k, mp in book.maps.items()}

    llns = next(x for x in net.by_role("llns"))
    zone = LowLevelZone(net, llns.region)
    with t.step("llns_use_map"):
        zone.use_map(low)
    N = len(net.client_networks)
    serials = [c.serial for c in net.customers]
    clients = [Client(client_address((i * 7919) % N), None) for i in range(len(serials))]
    empty = 0
    for phase in ("cold", "warm"):
        with t.step(f"llns_answers_{phase}"):
            for serial, client in zip(serials, clients, strict=True):
                got, _ = zone.servers_for(serial, client)
                if not got:
                    empty += 1
    sec = t.seconds
    sec["total_scratch"] = sec["assign_scratch"] + sec["build_scratch"] + sec["version_scratch"] + sec["sign_scratch"]
    sec["total_steady"] = sec["assign_steady"] + sec["build_steady"] + sec["version_steady"] + sec["sign_steady"]
    return {
        "probe_results": results,
        "refused_reports": refused,
        "moves_scratch": moves_scratch,
        "moves_steady": moves,
        "routes": len(low.routes),
        "changed_steady": sorted(sizes),
        "bytes": full,
        "answers": len(serials),
        "empty_answers": empty,
        "servers_in_map": sum(len(r.servers) for r in low.regions),
        "serving_regions": sum(1 for r in low.regions if r.serving),
    }


STEPS = [  # (key, label)
    ("write", "config written (TOML, once)"),
    ("load", "config loaded (load_network)"),
    ("intake", "0 intake: a probe round (decode + Measurements.probed)"),
    ("intake_steady", "0 intake: a round with 1% of the paths changed"),
    ("intake_between", "0 intake: a region-to-region round ([probing] regions)"),
    ("assign_scratch", "1 allocation cycle from scratch (Steering.assign)"),
    ("assign_steady", "1 allocation cycle, steady state"),
    ("build_scratch", "2 build top + low maps (defaults + build), scratch"),
    ("build_steady", "2 build top + low maps, steady"),
    ("version_scratch", "3 versioning (MapBook.update), scratch"),
    ("version_steady", "3 versioning (MapBook.update), steady"),
    ("sign_scratch", "3 signing + encoding (sign), scratch"),
    ("sign_steady", "3 signing + encoding (sign), steady"),
    ("llns_use_map", "4 LLNS takes the low map (use_map)"),
    ("llns_answers_cold", "4 LLNS servers_for, every serial, cold"),
    ("llns_answers_warm", "4 LLNS servers_for, every serial, warm"),
    ("total_scratch", "5 probe data -> signed maps, scratch (1+2+3)"),
    ("total_steady", "5 probe data -> signed maps, steady (1+2+3)"),
]


def summarize(samples: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for key in samples[0]:
        vals = [s[key] for s in samples if key in s]
        out[key] = {"median": statistics.median(vals), "max": max(vals), "samples": vals}
    return out


def table(doc: dict[str, Any]) -> str:
    st, info = doc["steps"], doc["info"]
    answers = info["answers"] or 1
    notes = {
        "load": f"{doc['settings']['machines']} machines, {doc['settings']['networks']} networks, "
        f"{doc['settings']['serials']} customers",
        "intake": f"{info['probe_results']} results in {info['reports']} reports",
        "intake_between": f"{info.get('between_results', 0)} results in {info.get('between_reports', 0)} reports, "
        f"{info.get('between_bytes', 0) / 1e6:.1f} MB",
        "assign_scratch": f"{info['moves_scratch']} moves",
        "assign_steady": ", ".join(f"{v} {k}" for k, v in sorted(info["moves_steady"].items())) or "no moves",
        "sign_steady": f"low {info['bytes']['low']:,} B, top {info['bytes']['top']:,} B signed",
        "llns_use_map": f"{info['routes']} routes, {info['servers_in_map']} edges",
        "total_scratch": f"goal < {GOAL:g} s",
        "total_steady": f"goal < {GOAL:g} s",
    }
    out = ["", "| step | median s | max s | notes |", "|:---|---:|---:|:---|"]
    for key, label in STEPS:
        if key not in st:
            continue
        med, mx = st[key]["median"], st[key]["max"]
        note = notes.get(key, "")
        if key.startswith("llns_answers"):
            note = f"{1e6 * med / answers:.1f} µs per answer (max {1e6 * mx / answers:.1f})"
        if key.startswith("total"):
            note += ": " + ("meets" if mx < GOAL else "median meets, max not" if med < GOAL else "MISSES")
        out.append(f"| {label} | {med:.4f} | {mx:.4f} | {note} |")
    return "\n".join(out)


def chart(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [(k, lbl) for k, lbl in STEPS if k in doc["steps"] and k not in ("write",)]
    fig, ax = plt.subplots(figsize=(11, 0.35 * len(keys) + 1.5))
    ys = range(len(keys))
    med = [doc["steps"][k]["median"] for k, _ in keys]
    mx = [doc["steps"][k]["max"] for k, _ in keys]
    ax.barh(ys, med, color=["tab:red" if k.startswith("total") else "tab:blue" for k, _ in keys])
    ax.scatter(mx, ys, marker="|", color="black", s=80, label="max")
    ax.axvline(GOAL, color="grey", ls=":", lw=0.8)
    ax.set_yticks(list(ys), [lbl for _, lbl in keys], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds (bar: median; tick: max; dotted: the 1 s goal)")
    s = doc["settings"]
    ax.set_title(f"Mapping at scale: {s['networks']} networks x {s['regions']} regions x {s['servers']} edges "
                 f"x {s['serials']} serials", fontsize=9)  # fmt: skip
    ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.33, right=0.98, top=0.94, bottom=0.08)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def top_functions(stats: pstats.Stats, count: int) -> list[str]:
    """The `count` functions with the most own time: 'own s, cumulative s, calls, where'."""
    rows = []
    for (file, line, fn), (_, calls, own, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(file).name}:{line}({fn})" if file != "~" else fn
        rows.append((own, cum, calls, where))
    rows.sort(reverse=True)
    return [f"{own:.3f} s own, {cum:.3f} s cum, {calls} calls: {where}" for own, cum, calls, where in rows[:count]]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.mapping.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--networks", type=int, default=10000, help="client networks (default 10000)")
    p.add_argument("--regions", type=int, default=1100, help="regions, one LLNS each (default 1100)")
    p.add_argument("--servers", type=int, default=15000, help="edges, spread over the regions (default 15000)")
    p.add_argument("--serials", type=int, default=10000, help="customers, one serial each (default 10000)")
    p.add_argument("--paths", type=int, default=20, help="measured regions per network (default 20)")
    p.add_argument("--repeat", type=int, default=5, help="times each step runs (default 5)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-between", action="store_true", help="no region-to-region probe round (taken by default)")
    p.add_argument("--gc", choices=("on", "off", "freeze"), default="on",
                   help="the garbage collector during the steps: on (as the center runs), off, freeze")  # fmt: skip
    p.add_argument("--profile", action="store_true", help="one more repeat under cProfile: where the time goes")
    p.add_argument("--profile-min", type=float, default=0.1, help="profile steps over this many seconds (0.1)")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"where mapping_scale.json goes (default {RESULTS})")
    p.add_argument("--no-chart", action="store_true", help="no PNG")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (the TOML files)")
    return p


def check(a: argparse.Namespace) -> None:
    if not 1 <= a.networks <= 65536:
        raise SystemExit("--networks: 1 .. 65536 (client /24s in 10.0.0.0/8)")
    if a.regions < 1 or a.servers < 2 * a.regions:
        raise SystemExit("need --regions >= 1 and --servers >= 2 x --regions (a region serves with 2 live edges)")
    if not 1 <= a.serials <= 999999 or a.paths < 1 or a.repeat < 1:
        raise SystemExit("--serials 1 .. 999999; --paths and --repeat at least 1")


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    check(a)
    stop_on_sigterm()
    tmp = Path(tempfile.mkdtemp(prefix="akacdn-bench-scale-"))
    try:
        return run(a, tmp)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if a.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(a: argparse.Namespace, tmp: Path) -> int:
    doc: dict[str, Any] = {"machine": machine_info(), "python": sys.version.split()[0],
                           "args": {k: str(v) for k, v in vars(a).items()}}  # fmt: skip
    say(f"writing {a.networks} networks x {a.regions} regions x {a.servers} edges x {a.serials} serials in {tmp}")
    start = time.perf_counter()
    path, key = write_network(tmp, a)
    wrote = time.perf_counter() - start
    samples: list[dict[str, float]] = []
    info: dict[str, Any] = {}
    between: list[tuple[str, bytes]] = []
    net: Network | None = None
    world: World | None = None
    for i in range(a.repeat):
        t = Timer()
        t.seconds["write"] = wrote
        with t.step("load"):
            net = load_network(path)
        if world is None:
            world = make_world(net, a, random.Random(a.seed))
            if not a.no_between:
                between = between_round(world, 1.0, random.Random(a.seed))
        info = one_repeat(net, world, key, t, a.seed + i, between, a.gc)
        samples.append(t.seconds)
        say(f"repeat {i + 1}/{a.repeat}: scratch {t.seconds['total_scratch']:.3f} s, "
            f"steady {t.seconds['total_steady']:.3f} s (load {t.seconds['load']:.2f} s)")  # fmt: skip
    assert net is not None and world is not None
    info["reports"] = sum(len(v) for v in world.probers.values())
    info["paths"] = world.paths
    info["between_reports"] = len(between)
    info["between_results"] = sum(len(_decode.decode(b).regions) for _, b in between)
    info["between_bytes"] = sum(len(b) for _, b in between)
    info["network_round_bytes"] = sum(len(b) for _, b in probe_round(world, 1.0, random.Random(a.seed)))
    doc["settings"] = {"networks": a.networks, "regions": a.regions, "servers": a.servers, "serials": a.serials,
                       "paths_per_network": a.paths, "paths": world.paths, "repeat": a.repeat,
                       "machines": len(net.machines), "mapping": msgspec.to_builtins(net.mapping),
                       "probing": msgspec.to_builtins(net.probing), "changed_share": CHANGED,
                       "probe_targets_per_network": PROBE_TARGETS, "probers": PROBERS,
                       "between": not a.no_between, "gc": a.gc}  # fmt: skip
    doc["steps"] = summarize(samples)
    doc["info"] = info
    doc["goal_seconds"] = GOAL
    if a.profile:
        say("profiling one more repeat (cProfile; not counted)")
        t = Timer(profile=True)
        one_repeat(net, world, key, t, a.seed + a.repeat, between, a.gc)
        doc["profile"] = {
            name: top_functions(stats, 12) for name, stats in t.profiles.items() if t.seconds[name] >= a.profile_min
        }
    print(table(doc))
    for name, lines in doc.get("profile", {}).items():
        print(f"\nprofile of {name} (cProfile, top own time):")
        for line in lines:
            print(f"  {line}")
    if a.no_chart:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "mapping_scale.json").write_text(json.dumps(doc, indent=2) + "\n")
        say(f"wrote {a.out / 'mapping_scale.json'}")
    else:
        write_results(a.out, "mapping_scale", doc, lambda p: chart(doc, p), say)
    return 0


if __name__ == "__main__":
    sys.exit(main())
