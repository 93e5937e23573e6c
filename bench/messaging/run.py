"""Messaging benchmark: what the real-time network delivers, how fast, at what loss, over
how many paths, with and without limited retransmission; how long a 1.3 MB map takes to
reach every subscriber; and how many datagrams one relay process forwards.

    python -m bench.messaging.run [--loss 0,5,10,30] [--paths 1,2,3] [--count 300] ...

Theory of operation (root only: network namespaces and nftables; `bench/messaging/lab.py`):
  1. one L2 segment of namespaces: relays relay1..3 (regions r1..r3), the publisher, N
     subscribers (`--subscribers`, default 5); real `akacdn relay` processes and the
     daemons' own messaging client in the others (`bench.messaging.node`);
  2. delivery matrix: for each paths k, NACK on/off and loss L (% of the datagrams into
     and out of every relay dropped by nftables, so a one-relay path loses about 2L):
     restart relays and subscribers with `[messaging] paths = k, nack = ...`, publish
     `--count` messages at `--rate` per second (every 50th of 200 KB: 171 chunks, the
     rest 300 B), wait `--linger` s for recovery, then count what each subscriber got
     whole. Delivery ratio = messages received intact / messages sent (the mean and the
     worst subscriber); latency = receipt minus the publisher's send time (one machine,
     one clock), median and p99 over every delivery;
  3. map time: a 1.3 MB message (1,109 chunks) published alone, k = 2, NACK on, at 0 and
     10 % loss, `--map-repeat` times: from the publish to the last subscriber's delivery;
  4. relay rate: one relay, every subscriber on it, the publisher unpaced at
     `--relay-rate` messages per second of 300 B for `--relay-seconds`: datagrams in and
     out per second and per CPU-second of the relay process (utime+stime from /proc);
     then the same load through nats-server on a loopback address (`peers.nats_rate`),
     the best peer broker Debian has, for the "x nats-server" column;
  5. print the tables; write bench/results/messaging.json and messaging.png;
  6. always (also on Ctrl-C or SIGTERM) stop every process and delete its namespaces.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.dns.run import _machine_busy
from bench.dns.system import CLK_TCK, machine_info

from ..common import add_common_args, csv_arg, measure_guarded, stop_on_sigterm, write_results
from . import peers, report
from .lab import RELAYS, MessagingLab, tools_missing

MAP_BYTES = 1300 * 1024


def say(msg: str) -> None:
    print(f"bench-messaging: {msg}", flush=True)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def cpu_seconds(pid: int) -> float:
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def fresh_run(lab: MessagingLab, **messaging: Any) -> None:
    lab.procs.stop_all()
    lab.configure(**{**lab.defaults, **messaging})
    lab.set_loss(0)
    lab.start_relays()
    lab.start_subscribers()
    lab.wait_subscribed()


def delivery(lab: MessagingLab, a: argparse.Namespace, paths: int, nack: bool, loss: float) -> dict[str, Any]:
    fresh_run(lab, paths=paths, nack=nack)
    lab.set_loss(loss)
    dropped0 = lab.dropped()
    lab.publish(a.count, a.rate, big_every=50, linger=a.linger)
    dropped = lab.dropped() - dropped0
    lab.stop_subscribers()
    results = lab.results(a.count)
    ratios = [r.received / a.count for r in results]
    lat = [x for r in results for x in r.latencies]
    return {
        "paths": paths,
        "nack": nack,
        "loss": loss,
        "ratio_mean": statistics.fmean(ratios),
        "ratio_min": min(ratios),
        "latency_median_ms": pct(lat, 0.5) * 1000,
        "latency_p99_ms": pct(lat, 0.99) * 1000,
        "recovered": sum(r.recovered for r in results),
        "twice": sum(r.twice for r in results),
        "damaged": sum(r.damaged for r in results),
        "dropped_by_nft": dropped,
    }


def map_time(lab: MessagingLab, a: argparse.Namespace, loss: float) -> dict[str, Any]:
    fresh_run(lab, paths=2, nack=True)
    lab.set_loss(loss)
    times = []
    for _ in range(a.map_repeat):
        before = {s: len(_rows(lab, s)) for s in lab.subs}
        lab.publish(1, 1.0, size=MAP_BYTES, linger=a.map_wait)
        last = 0.0  # latency: receipt minus the publisher's send time (one clock)
        for s in lab.subs:
            got = [r for r in _rows(lab, s)[before[s] :] if r["ok"] and r["size"] == MAP_BYTES]
            last = max(last, got[0]["lat"]) if got and last != float("inf") else float("inf")
        times.append(last)
    done = [t for t in times if t != float("inf")]
    return {
        "loss": loss,
        "bytes": MAP_BYTES,
        "runs": len(times),
        "reached_all": len(done),
        "median_ms": statistics.median(done) * 1000 if done else float("nan"),
        "max_ms": max(done) * 1000 if done else float("nan"),
    }


def _rows(lab: MessagingLab, s: str) -> list[dict[str, Any]]:
    """What a running subscriber has written so far (whole lines)."""
    path = lab.sub_out[s]
    text = path.read_text() if path.exists() else ""
    return [json.loads(x) for x in text.splitlines() if x.endswith("}")]


def relay_rate(lab: MessagingLab, a: argparse.Namespace) -> dict[str, Any]:
    """One relay carries everything: paths 1 with relay2/relay3 stopped."""
    fresh_run(lab, paths=1, nack=True, pace=10**6, burst=10**5)
    for host, (rid, _) in RELAYS.items():
        if host != "a":
            lab.stop_relay(rid)
    pid = lab.procs.procs["relay1"].pid
    host, ip = "a", lab.ip("a")
    fwd0 = lab.metric(host, ip, "akacdn_relay_forwarded_total")
    in0 = lab.metric(host, ip, "akacdn_relay_datagrams_in_total", kind="data")
    cpu0, wall0 = cpu_seconds(pid), time.monotonic()
    count = int(a.relay_rate * a.relay_seconds)
    lab.publish(count, a.relay_rate, linger=1.0)
    cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - wall0
    forwarded = lab.metric(host, ip, "akacdn_relay_forwarded_total") - fwd0
    received = lab.metric(host, ip, "akacdn_relay_datagrams_in_total", kind="data") - in0
    dropped = lab.metric(host, ip, "akacdn_relay_dropped_total")
    lab.stop_subscribers()
    results = lab.results(count)
    return {
        "subscribers": len(lab.subs),
        "messages_offered": count,
        "datagrams_in": received,
        "datagrams_out": forwarded,
        "relay_cpu_s": cpu,
        "wall_s": wall,
        "in_per_cpu_s": received / cpu if cpu else float("nan"),
        "out_per_cpu_s": forwarded / cpu if cpu else float("nan"),
        "out_per_s": forwarded / wall,
        "relay_dropped": dropped,
        "delivered_ratio_min": min(r.received for r in results) / count,
    }


def peer_rate(a: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The relay-rate load through nats-server; a missing broker is a row, not a failed run."""
    say(f"relay: the same load through nats-server ({a.subscribers} subscribers)")
    try:
        return peers.nats_rate(workdir, a.subscribers, a.relay_rate, a.relay_seconds, install=not a.no_install)
    except RuntimeError as e:
        say(f"relay: no nats-server row: {e}")
        return {"error": str(e)}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.messaging.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--loss", type=csv_arg(float), default=[0.0, 5.0, 10.0, 30.0], help="%% per relay link")
    p.add_argument("--paths", type=csv_arg(int), default=[1, 2, 3], help="relays per datagram (default 1,2,3)")
    p.add_argument("--nack", type=csv_arg(str, ("on", "off")), default=["on", "off"])
    p.add_argument("--subscribers", type=int, default=5)
    p.add_argument("--count", type=int, default=300, help="messages per delivery run (default 300)")
    p.add_argument("--rate", type=float, default=100.0, help="messages per second (default 100)")
    p.add_argument("--linger", type=float, default=4.0, help="seconds for recovery after the last message")
    p.add_argument("--map-repeat", type=int, default=3)
    p.add_argument("--map-wait", type=float, default=6.0, help="seconds to wait for a map to arrive")
    p.add_argument("--relay-rate", type=float, default=8000.0, help="messages/s offered to the one relay")
    p.add_argument("--relay-seconds", type=float, default=10.0)
    p.add_argument("--pace", type=int, default=0, help="[messaging] pace for every run (0: the default)")
    p.add_argument("--only", type=csv_arg(str, ("delivery", "map", "relay")), default=["delivery", "map", "relay"])
    add_common_args(p, "messaging", "nats-server", 30.0)
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    if os.geteuid() != 0:
        say("needs root (network namespaces, nftables)")
        return 2
    if tools_missing():
        say(f"missing {tools_missing()} (apt-get install iproute2 nftables)")
        return 2
    stop_on_sigterm()
    tmp = Path(tempfile.mkdtemp(prefix="akacdn-bench-messaging-"))
    lab = MessagingLab(tmp / "lab", subscribers=a.subscribers)
    lab.defaults = {"pace": a.pace} if a.pace else {}
    doc: dict[str, Any] = {"machine": machine_info(), "args": {k: v for k, v in vars(a).items() if k != "out"}}
    doc["args"]["out"] = str(a.out)

    def steps() -> None:
        lab.build()
        busy0, t0 = _machine_busy(), time.monotonic()
        if "delivery" in a.only:
            rows = doc["delivery"] = []
            for paths in a.paths:
                for nack in a.nack:
                    for loss in a.loss:
                        say(f"delivery: paths {paths}, NACK {nack}, loss {loss:g}% per relay link")
                        row = delivery(lab, a, paths, nack == "on", loss)
                        rows.append(row)
                        say(report.delivery_line(row))
        if "map" in a.only:
            doc["map"] = []
            for loss in (0.0, 10.0):
                say(f"map: {MAP_BYTES} bytes, paths 2, NACK on, loss {loss:g}%")
                doc["map"].append(map_time(lab, a, loss))
        if "relay" in a.only:
            say(f"relay: {a.relay_rate:g} messages/s for {a.relay_seconds:g} s to {a.subscribers} subscribers")
            doc["relay"] = relay_rate(lab, a)
            lab.procs.stop_all()  # the idle relay out of nats-server's way
            doc["relay_peer"] = peer_rate(a, tmp / "nats")
        doc["machine_busy_fraction"] = (_machine_busy() - busy0) / (time.monotonic() - t0) / (os.cpu_count() or 1)
        print(report.tables(doc))
        write_results(a.out, "messaging", doc, lambda path: report.chart(doc, path), say)

    return measure_guarded(steps, lab, tmp, a.keep, say)


if __name__ == "__main__":
    sys.exit(main())
