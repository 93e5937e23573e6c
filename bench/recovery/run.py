"""Recovery benchmark: how fast a rolled daemon serves again, how fast a request of death
is quarantined, and what the other serials see across a request-of-death storm.

    python -m bench.recovery.run [--trials 20] [--quarantine-trials 5] [--storm 30]
                                 [--clients 4] [--skip restart,quarantine,storm] ...

Theory of operation (`bench/recovery/README.md`): one devnet on loopback (127.91.x.y,
DNS port 15391, HTTP port 18091: never another devnet's), fault injection on, a `death`
customer (serial 456) whose `/death*` requests crash the edge serving them, flap damping
off, and `[recovery]` settings that keep long-sleep and the in-place mode out of the
repeated trials (roll_limit and in_place_min_machines 1000). Three parts:

  1. restart to serving per daemon (`restart.py`): SIGKILL, spawn at once, time until it
     serves; and SIGKILL left to the devnet's supervisor (llns, edge), from the kill;
  2. first request of death to quarantine (`quarantine.py`): until the leader lists it,
     and until every LLNS answers only the quarantine set; lifted between trials;
  3. a request-of-death storm (`storm.py`): the demo customer's success ratio.

Prints the table, writes bench/results/recovery.json and recovery.png; always stops the
devnet.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.dns.system import machine_info

from ..common import add_common_args, csv_arg, measure_guarded, stop_on_sigterm, write_results
from . import quarantine, report, restart
from .net import BenchNet
from .storm import Storm

PARTS = ("restart", "quarantine", "storm")


def say(msg: str) -> None:
    print(f"bench-recovery: {msg}", flush=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.recovery.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=20, help="restart trials per daemon (default 20)")
    p.add_argument("--quarantine-trials", type=int, default=5, help="quarantine trials (default 5)")
    p.add_argument("--storm", type=float, default=30.0, help="seconds of request-of-death storm (default 30)")
    p.add_argument("--clients", type=int, default=4, help="demo client threads during the storm (default 4)")
    p.add_argument("--skip", type=csv_arg(str, PARTS), default=[], help="parts to skip: restart,quarantine,storm")
    add_common_args(p, "recovery", "nothing", 60.0)
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    stop_on_sigterm()
    tmp = Path(tempfile.mkdtemp(prefix="akacdn-bench-recovery-"))
    bench = BenchNet(tmp / "devnet")
    doc: dict[str, Any] = {"machine": machine_info(), "args": {k: str(v) for k, v in vars(a).items()}}

    def steps() -> None:
        say(f"starting the devnet in {tmp}")
        dn = bench.start(a.start_timeout)
        dn.supervise()
        if "restart" not in a.skip:
            doc["restart"] = report.restart_doc(restart.run(dn, a.trials, say))
        if "quarantine" not in a.skip:
            rows = quarantine.run(dn, a.quarantine_trials, say)
            doc["quarantine"] = {
                "trials": rows,
                "listed": report.summarize([r["listed"] for r in rows]),
                "confined": report.summarize([r["confined"] for r in rows]),
            }
        if "storm" not in a.skip:
            quarantine.clean(dn, say)
            doc["storm"] = Storm(dn, a.storm, a.clients).run(say)
        print(report.table(doc))
        write_results(a.out, "recovery", doc, lambda path: report.chart(doc, path), say)

    return measure_guarded(steps, bench, tmp, a.keep, say)


if __name__ == "__main__":
    sys.exit(main())
