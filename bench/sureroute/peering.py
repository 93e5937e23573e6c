"""Part 1: misses through one r1 edge while r1's peering to the origin is cut and healed.

For `duration` seconds, per customer (`demo` with SureRoute, `plain` without), a request
is due every 1/`rate` s (open loop: it is sent when due whatever the earlier ones are
doing, at most `cap` in flight per customer, a later one waiting for a slot). Every
request is a miss: `/img/photo-1.png?sr=<customer>-<n>` is a new cache key each time, so
the edge goes upstream for each. Its time runs from when it was due until its body was
read, or it failed; it gives up `timeout` s after it was due (a wait for a slot
included: no request outlives its timeout by queueing). It succeeds on a 200 with the demo
origin's whole photo-1 body. Its Via fields (all of them) say whether an edge of
another region carried it.

At `cut_at` the r1 edges' packets to the origin's HTTP port start being dropped
(`BenchNet.cut`), at `heal_at` the rule goes (`heal`, also on any exit). Meanwhile the
edge's `/upstreams` (management port) is polled every 0.5 s for demo's primary path;
afterwards its `/events` give every race and route change of demo, with the reason.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp

from akacdn.devnet.origin import COLOURS, png

from . import analysis
from .analysis import Result
from .net import HOSTS, LAYOUT, BenchNet

OBJECT = "/img/photo-1.png"
BODY = png(64, 64, COLOURS["photo-1"])  # what the demo origin answers for OBJECT
METRICS = ("akacdn_edge_upstream_attempts_total", "akacdn_edge_sureroute_races_total")


class Peering:
    def __init__(self, bench: BenchNet, edge: str, customers: list[str], settings: dict[str, float]) -> None:
        self.bench, self.edge, self.customers = bench, edge, customers
        self.rate = settings["rate"]
        self.duration = settings["duration"]
        self.cut_at, self.heal_at = settings["cut_at"], settings["heal_at"]
        self.cap, self.timeout = int(settings["cap"]), settings["timeout"]
        self.address = bench.address(edge)
        self.region_of = bench.region_of()
        self.region = self.region_of[edge]
        self.results: list[Result] = []
        self.polls: list[tuple[float, str]] = []
        self.waited: Counter[str] = Counter()  # requests that found every slot taken (`cap` in flight)
        self.marks: dict[str, float] = {}  # when the cut and the heal really happened (s from the start)
        self.t0 = self.wall0 = 0.0

    # -- one request ------------------------------------------------------------------------
    async def _one(self, s: aiohttp.ClientSession, sem: asyncio.Semaphore, customer: str, n: int, due: float) -> None:
        loop = asyncio.get_running_loop()
        url = f"http://{self.address}:{LAYOUT.http_port}{OBJECT}?sr={customer}-{n}"
        vias: list[str] = []
        if sem.locked():
            self.waited[customer] += 1
        try:
            async with asyncio.timeout_at(due + self.timeout), sem:  # a slot's wait counts against the timeout
                async with s.get(url, headers={"Host": HOSTS[customer]}) as r:
                    body = await r.read()
                    vias = r.headers.getall("Via", [])
                    outcome = str(r.status) if r.status != 200 else ("200" if body == BODY else "body")
        except TimeoutError:
            outcome = "timeout"
        except (aiohttp.ClientError, OSError):
            outcome = "error"
        detour = bool(analysis.other_regions(vias, self.region, self.region_of))
        self.results.append(Result(due - self.t0, customer, outcome == "200", loop.time() - due, outcome, detour))

    async def _customer(self, s: aiohttp.ClientSession, customer: str, offset: float) -> None:
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(self.cap)
        tasks = []
        for n in range(int(self.rate * self.duration)):
            due = self.t0 + offset + n / self.rate
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            tasks.append(asyncio.create_task(self._one(s, sem, customer, n, due)))
        await asyncio.gather(*tasks)

    # -- the cut and the watch --------------------------------------------------------------
    async def _control(self, say: Callable[[str], None]) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, self.t0 + self.cut_at - loop.time()))
        await asyncio.to_thread(self.bench.cut, self.region)
        self.marks["cut"] = loop.time() - self.t0
        say(f"peering: {self.region}'s peering to the origin cut at {self.marks['cut']:.2f} s")
        await asyncio.sleep(max(0.0, self.t0 + self.heal_at - loop.time()))
        await asyncio.to_thread(self.bench.heal)
        self.marks["heal"] = loop.time() - self.t0
        say(f"peering: healed at {self.marks['heal']:.2f} s")

    async def primary(self, s: aiohttp.ClientSession) -> dict[str, Any] | None:
        """demo's route on the edge (its `/upstreams`), None when it does not answer."""
        assert self.bench.dn is not None
        url = f"http://{self.address}:{self.bench.dn.net.ports.management}/upstreams"
        try:
            async with s.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                doc = json.loads(await r.read())
            return doc["routes"].get("demo")  # type: ignore[no-any-return]
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
            return None

    async def _watch(self, s: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            route = await self.primary(s)
            self.polls.append((round(loop.time() - self.t0, 2), route["primary"] if route else "?"))
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                pass

    async def _ready(self, s: aiohttp.ClientSession, timeout: float = 30.0) -> None:
        """Until demo's route has raced, knows other regions and is direct, and both
        customers answer through the edge."""
        deadline = time.monotonic() + timeout
        probe = f"http://{self.address}:{LAYOUT.http_port}{OBJECT}?sr=ready"
        while True:
            route = await self.primary(s)
            route = route or {}
            vias = len([p for p in route.get("paths", {}) if p.startswith("via ")])
            raced = route.get("last_race", route.get("last_race_ago")) is not None  # the key's name changed
            good = raced and route.get("primary") == "direct" and vias > 0
            for c in self.customers if good else ():
                try:
                    async with s.get(probe, headers={"Host": HOSTS[c]}, timeout=aiohttp.ClientTimeout(total=5)) as r:
                        good = good and r.status == 200 and await r.read() == BODY
                except (aiohttp.ClientError, TimeoutError):
                    good = False
            if good:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"demo's route on {self.edge} not ready after {timeout:g} s: {route}")
            await asyncio.sleep(0.3)

    async def _run(self, say: Callable[[str], None]) -> None:
        loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as s:
            await self._ready(s)
            self.t0, self.wall0 = loop.time(), time.time()
            stop = asyncio.Event()
            watch = asyncio.create_task(self._watch(s, stop))
            control = asyncio.create_task(self._control(say))
            try:
                step = 1.0 / self.rate / max(1, len(self.customers))  # the customers' requests interleave
                await asyncio.gather(*(self._customer(s, c, i * step) for i, c in enumerate(self.customers)))
                await control
            finally:
                stop.set()
                control.cancel()
                await asyncio.gather(watch, control, return_exceptions=True)
                self.bench.heal()

    def run(self, say: Callable[[str], None]) -> dict[str, Any]:
        """The part's document: settings, per customer (whole run, the cut window, per
        second, route times), demo's primary path's changes, the edge's counters' deltas."""
        dn = self.bench.dn
        assert dn is not None
        say(f"peering: {len(self.customers)} x {self.rate:g} req/s through {self.edge} for {self.duration:g} s, "
            f"cut {self.cut_at:g}-{self.heal_at:g} s")  # fmt: skip
        before = {m: _samples(dn, self.edge, m) for m in METRICS}
        try:
            asyncio.run(self._run(say))
        finally:
            self.bench.heal()
        after = {m: _samples(dn, self.edge, m) for m in METRICS}
        status, body = dn.management(self.edge, "/events")
        events = analysis.route_events(json.loads(body) if status == 200 else [], "demo", self.wall0)
        seconds = int(self.duration)
        cut, heal = self.marks.get("cut", self.cut_at), self.marks.get("heal", self.heal_at)
        out: dict[str, Any] = {}
        for c in self.customers:
            out[c] = {
                "sureroute": any(x.sureroute for x in dn.net.customers if x.name == c),
                "all": analysis.window(self.results, c, 0.0, self.duration),
                "cut": analysis.window(self.results, c, self.cut_at, self.heal_at),
                "after_heal": analysis.window(self.results, c, self.heal_at, self.duration),
                "waited_for_a_slot": self.waited[c],
                **analysis.route_times(self.results, c, cut, heal),
                "per_second": analysis.per_second(self.results, c, seconds),
            }
        counters = {m: {k: after[m].get(k, 0.0) - before[m].get(k, 0.0) for k in after[m]} for m in METRICS}
        return {"edge": self.edge, "region": self.region, "rate": self.rate, "duration": self.duration,
                "cut_at": self.cut_at, "heal_at": self.heal_at, "cut_marks": self.marks, "cap": self.cap,
                "timeout": self.timeout, "customers": out, "primary": analysis.primary_changes(self.polls),
                "events": events, "edge_counters": counters}  # fmt: skip


def _samples(dn: Any, machine: str, name: str) -> dict[str, float]:
    """One metric's samples on a machine, by their label text (`kind="direct",outcome="ok"`)."""
    _, body = dn.management(machine, "/metrics")
    out: dict[str, float] = {}
    for line in body.decode().splitlines():
        head, _, value = line.rpartition(" ")
        metric, _, labels = head.partition("{")
        if metric == name:
            out[labels.rstrip("}")] = float(value)
    return out
