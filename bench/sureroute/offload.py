"""Part 2: origin offload of a Zipf request mix, without and with a parent tier.

One Zipf sequence (`objects`, `exponent`, `requests`, `seed`) is sent twice: for `flat`
(no parents: each child edge that misses asks the origin) and for `tiered`
(`parent_regions = ["r3"]`: a child's miss asks the r3 edge the object's key hashes to,
which asks the origin once for all children). Each customer has its own object names
(`/img/photo-2.png?zipf=<customer>-<object>`), so neither warms the other's caches.
Request i goes to child edge i mod 6 (r1-e1..3, r2-e1..3), `concurrency` at once. The
origin's `/_origin/stats` gives the requests that reached it per customer.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp

from akacdn.devnet.origin import COLOURS, png

from . import analysis
from .net import HOSTS, LAYOUT, PARENT_REGION, BenchNet

OBJECT = "/img/photo-2.png"
BODY = png(64, 64, COLOURS["photo-2"])
CHILD_REGIONS = ("r1", "r2")
CUSTOMERS = {"flat": False, "tiered": True}  # name: has a parent tier


def marker(customer: str) -> str:
    return f"zipf={customer}-"


async def _drive(
    addresses: list[str], customer: str, requests: list[tuple[int, int]], concurrency: int, timeout: float
) -> dict[str, Any]:
    """Send `requests` ((edge index, object) each) for `customer`: outcomes and the Via counts."""
    outcomes: Counter[str] = Counter()
    through: Counter[str] = Counter()  # answers whose Via names an edge of the parent region
    todo = iter(requests)
    limit = aiohttp.ClientTimeout(total=timeout)

    async def worker(s: aiohttp.ClientSession) -> None:
        for edge, obj in todo:
            url = f"http://{addresses[edge]}:{LAYOUT.http_port}{OBJECT}?{marker(customer)}{obj}"
            try:
                async with s.get(url, headers={"Host": HOSTS[customer]}, timeout=limit) as r:
                    body = await r.read()
                    outcome = str(r.status) if r.status != 200 else ("200" if body == BODY else "body")
                    vias = r.headers.getall("Via", [])
            except TimeoutError:
                outcome, vias = "timeout", []
            except (aiohttp.ClientError, OSError):
                outcome, vias = "error", []
            outcomes[outcome] += 1
            if any(h.startswith(f"{PARENT_REGION}-") for h in analysis.via_hops(vias)):
                through["parent"] += 1

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as s:
        await asyncio.gather(*(worker(s) for _ in range(concurrency)))
    return {"outcomes": dict(sorted(outcomes.items())), "through_parent": through["parent"]}


def run(
    bench: BenchNet, settings: dict[str, float], say: Callable[[str], None], timeout: float = 10.0
) -> dict[str, Any]:
    """The part's document: the mix's settings, and per customer requests, failures,
    origin requests, the ideal (a perfect cache), offload and its ideal."""
    children = [e for r in CHILD_REGIONS for e in bench.edges(r)]
    addresses = [bench.address(e) for e in children]
    n, exponent = int(settings["objects"]), settings["exponent"]
    count, seed, concurrency = int(settings["requests"]), int(settings["seed"]), int(settings["concurrency"])
    objects = analysis.zipf_sample(n, exponent, count, seed)
    requests = analysis.spread(objects, len(children))
    out: dict[str, Any] = {"objects": n, "exponent": exponent, "requests": count, "seed": seed,
                           "concurrency": concurrency, "children": children, "parent_region": PARENT_REGION,
                           "distinct_objects": len(set(objects)), "customers": {}}  # fmt: skip
    for customer, tiered in CUSTOMERS.items():
        say(f"offload: {count} Zipf requests for {customer} over {len(children)} child edges")
        t = time.monotonic()
        got = asyncio.run(_drive(addresses, customer, requests, concurrency, timeout))
        seconds = time.monotonic() - t
        origin = analysis.origin_requests(bench.origin_counts(), marker(customer))
        ideal = analysis.ideal_origin(requests, tiered)
        ok = got["outcomes"].get("200", 0)
        out["customers"][customer] = {
            "parents": [PARENT_REGION] if tiered else [],
            "requests": count,
            "ok": ok,
            **got,
            "seconds": seconds,
            "origin": origin,
            "ideal_origin": ideal,
            "offload": analysis.offload(count, origin),
            "ideal_offload": analysis.offload(count, ideal),
        }
    return out
