"""SureRoute benchmark: misses across a cut peering with SureRoute on and off, and the
origin offload of a parent tier.

    python -m bench.sureroute.run [--duration 45] [--cut-at 10] [--heal-at 30] [--rate 40]
                                  [--requests 6000] [--objects 2000] [--skip peering,offload] ...

Theory of operation (`bench/sureroute/README.md`): one devnet on loopback (127.92.x.y,
DNS port 15392, HTTP port 18092: never another devnet's) with short `[sureroute]`
timings and four customers on the demo origin: `demo` (SureRoute), `plain` (none),
`flat` (no parents) and `tiered` (parent region r3). Two parts:

  1. peering (`peering.py`): misses at a fixed rate per customer through r1-e1; r1's
     edges' packets to the origin are dropped (nftables, a table of this run's own) from
     `--cut-at` to `--heal-at`: success and latency per second, through which region;
  2. offload (`offload.py`): one Zipf mix over the six r1/r2 edges, for `flat` and for
     `tiered`: the origin's requests, offload = 1 - origin/requests.

Needs root (nftables). Prints the tables, writes bench/results/sureroute.json and
sureroute.png; always removes the nftables table and stops the devnet.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.dns.system import machine_info

from ..common import add_common_args, csv_arg, measure_guarded, stop_on_sigterm, write_results
from . import offload, report
from .net import TIMINGS, BenchNet
from .peering import Peering

PARTS = ("peering", "offload")
EDGE = "r1-e1"


def say(msg: str) -> None:
    print(f"bench-sureroute: {msg}", flush=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.sureroute.run", description=__doc__.split("\n\n")[0])
    g = p.add_argument_group("peering failure")
    g.add_argument("--duration", type=float, default=45.0, help="seconds of traffic (default 45)")
    g.add_argument("--cut-at", type=float, default=10.0, help="second the peering is cut (default 10)")
    g.add_argument("--heal-at", type=float, default=30.0, help="second it heals (default 30)")
    g.add_argument("--rate", type=float, default=40.0, help="requests per second per customer (default 40)")
    g.add_argument("--cap", type=int, default=512, help="requests in flight per customer at most (default 512)")
    g.add_argument("--timeout", type=float, default=10.0, help="a request's timeout once sent (default 10 s)")
    t = p.add_argument_group("[sureroute] timings of the network")
    for key, value in TIMINGS.items():
        t.add_argument(f"--{key.replace('_', '-')}", type=float, default=value, help=f"(default {value:g} s)")
    o = p.add_argument_group("origin offload")
    o.add_argument("--objects", type=int, default=2000, help="objects in the Zipf mix (default 2000)")
    o.add_argument("--exponent", type=float, default=1.0, help="Zipf exponent (default 1.0)")
    o.add_argument("--requests", type=int, default=6000, help="requests per customer (default 6000)")
    o.add_argument("--seed", type=int, default=1, help="the mix's random seed (default 1)")
    o.add_argument("--concurrency", type=int, default=16, help="requests at once (default 16)")
    p.add_argument("--skip", type=csv_arg(str, PARTS), default=[], help="parts to skip: peering,offload")
    add_common_args(p, "sureroute", "nothing", 60.0)
    return p


def check(a: argparse.Namespace) -> None:
    if not 0 <= a.cut_at < a.heal_at <= a.duration:
        raise SystemExit("need 0 <= --cut-at < --heal-at <= --duration")
    if a.rate <= 0 or a.cap < 1 or a.timeout <= 0 or a.objects < 1 or a.requests < 1 or a.concurrency < 1:
        raise SystemExit("--rate, --cap, --timeout, --objects, --requests and --concurrency must be positive")


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    check(a)
    stop_on_sigterm()
    timings = {k: getattr(a, k) for k in TIMINGS}
    tmp = Path(tempfile.mkdtemp(prefix="akacdn-bench-sureroute-"))
    bench = BenchNet(tmp / "devnet", timings)
    doc: dict[str, Any] = {"machine": machine_info(), "args": {k: str(v) for k, v in vars(a).items()},
                           "sureroute": timings}  # fmt: skip

    def steps() -> None:
        say(f"starting the devnet in {tmp}")
        dn = bench.start(a.start_timeout)
        dn.supervise()
        if "peering" not in a.skip:
            settings = {"rate": a.rate, "duration": a.duration, "cut_at": a.cut_at, "heal_at": a.heal_at,
                        "cap": a.cap, "timeout": a.timeout}  # fmt: skip
            doc["peering"] = Peering(bench, EDGE, ["demo", "plain"], settings).run(say)
        if "offload" not in a.skip:
            settings = {"objects": a.objects, "exponent": a.exponent, "requests": a.requests, "seed": a.seed,
                        "concurrency": a.concurrency}  # fmt: skip
            doc["offload"] = offload.run(bench, settings, say, a.timeout)
        doc["restarts"] = [{"at": t, "process": name, "code": code} for t, name, code in dn.restarts]
        print(report.table(doc))
        if dn.restarts:
            say(f"devnet processes restarted during the run: {doc['restarts']}")
        write_results(a.out, "sureroute", doc, lambda path: report.chart(doc, path), say)

    return measure_guarded(steps, bench, tmp, a.keep, say)


if __name__ == "__main__":
    sys.exit(main())
