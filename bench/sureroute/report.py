"""The SureRoute benchmark's tables and chart (pure, but for the chart's matplotlib)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

SUCCESS_GOAL = 0.999  # misses of a SureRoute customer that succeed across a peering failure


def _pc(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.2f}%"


def _s(x: float, digits: int = 3) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def peering_table(p: dict[str, Any]) -> list[str]:
    out = ["", f"Misses through {p['edge']} ({p['rate']:g} req/s per customer, {p['duration']:g} s), "
           f"{p['region']}'s peering to the origin cut from {p['cut_at']:g} s to {p['heal_at']:g} s", "",
           "| customer | SureRoute | requests | ok | success | in the cut | p50 s cut | p99 s cut | max s cut "
           "| via another region | goal | verdict |",
           "|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|:---|:---|"]  # fmt: skip
    for name, c in p["customers"].items():
        a, w = c["all"], c["cut"]
        goal, verdict = "", ""
        if c["sureroute"]:
            ok = a["success"] >= SUCCESS_GOAL and w["success"] >= SUCCESS_GOAL
            goal, verdict = f">= {100 * SUCCESS_GOAL:g}%", "meets" if ok else "MISSES"
        out.append(f"| {name} | {'on' if c['sureroute'] else 'off'} | {a['requests']} | {a['ok']} "
                   f"| {_pc(a['success'])} | {_pc(w['success'])} | {_s(w['p50'])} | {_s(w['p99'])} "
                   f"| {_s(w['max'])} | {a['detoured']} | {goal} | {verdict} |")  # fmt: skip
    out.append("")
    for name, c in p["customers"].items():
        fails = ", ".join(f"{k}: {v}" for k, v in c["all"]["failures"].items()) or "none"
        line = f"- {name}: failures by outcome {fails}"
        if c["sureroute"]:
            line += (f"; first answer through another region {_s(c['first_detour'], 2)} s after the cut, "
                     f"last one due {_s(c['last_detour'], 2)} s after the heal")  # fmt: skip
        after = c["after_heal"]
        line += f"; after the heal {_pc(after['success'])} ok, p99 {_s(after['p99'])} s"
        if c.get("waited_for_a_slot"):
            line += f"; {c['waited_for_a_slot']} found all {p['cap']} client slots taken"
        out.append(line)
    changes = ", ".join(f"{t:g} s {path}" for t, path in p["primary"]) or "-"
    out.append(f"- demo's primary on {p['edge']} (polled every 0.5 s): {changes}")
    events = p.get("events", [])
    races = [e for e in events if e["event"] == "sureroute_race"]
    out.append(f"- demo's races on {p['edge']} ({len(races)}; ms per path, None: failed): "
               + (", ".join(f"{e['t']:g} s {e.get('ms')}" for e in races) or "-"))  # fmt: skip
    for e in events:
        if e["event"] != "sureroute_race" and e.get("previous") != e.get("primary"):
            out.append(f"  - {e['t']:g} s {e['event']}: {e.get('previous')} -> {e.get('primary')}: {e.get('reason')}")
    attempts = p["edge_counters"].get("akacdn_edge_upstream_attempts_total", {})
    shown = ", ".join(f"{k.replace('kind=', '').replace('outcome=', '').replace(chr(34), '')} {v:g}"
                      for k, v in sorted(attempts.items()) if v)  # fmt: skip
    out.append(f"- {p['edge']}'s upstream attempts during the run: {shown or '-'}")
    return out


def per_second_table(p: dict[str, Any]) -> list[str]:
    names = list(p["customers"])
    head = "| s | " + " | ".join(f"{n} req | {n} ok | {n} p50 s | {n} p99 s | {n} detour" for n in names) + " |"
    out = ["", "Per second (by when each request was due; times include failures at their time to fail)", "",
           head, "|---:|" + "---:|" * (5 * len(names))]  # fmt: skip
    rows = [p["customers"][n]["per_second"] for n in names]
    for s in range(len(rows[0]) if rows else 0):
        mark = " cut" if p["cut_at"] <= s < p["heal_at"] else ""
        cells = []
        for r in (rs[s] for rs in rows):
            cells.append(f"{r['requests']} | {r['ok']} | {_s(r['p50'])} | {_s(r['p99'])} | {r['detoured']}")
        out.append(f"| {s}{mark} | " + " | ".join(cells) + " |")
    return out


def offload_table(o: dict[str, Any]) -> list[str]:
    out = ["", f"Origin offload: {o['requests']} requests, Zipf {o['exponent']:g} over {o['objects']} objects "
           f"({o['distinct_objects']} asked for), seed {o['seed']}, round-robin over {len(o['children'])} child "
           f"edges, {o['concurrency']} at once", "",
           "| customer | parents | requests | ok | origin requests | ideal | offload | ideal offload "
           "| via a parent | seconds |",
           "|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, c in o["customers"].items():
        out.append(f"| {name} | {', '.join(c['parents']) or '-'} | {c['requests']} | {c['ok']} | {c['origin']} "
                   f"| {c['ideal_origin']} | {_pc(c['offload'])} | {_pc(c['ideal_offload'])} "
                   f"| {c['through_parent']} | {c['seconds']:.1f} |")  # fmt: skip
    for name, c in o["customers"].items():
        bad = {k: v for k, v in c["outcomes"].items() if k != "200"}
        if bad:
            out.append(f"- {name}: failures by outcome " + ", ".join(f"{k}: {v}" for k, v in bad.items()))
    return out


def table(doc: dict[str, Any]) -> str:
    out: list[str] = []
    if doc.get("peering"):
        out += peering_table(doc["peering"]) + per_second_table(doc["peering"])
    if doc.get("offload"):
        out += offload_table(doc["offload"])
    return "\n".join(out)


def chart(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 6.5))
    grid = fig.add_gridspec(2, 2, width_ratios=[3, 1])
    ax, lx, bx = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[:, 1])
    p = doc.get("peering")
    if p:
        lx.sharex(ax)
        for a in (ax, lx):
            a.axvspan(p["cut_at"], p["heal_at"], color="tab:red", alpha=0.1, label="peering cut")
        for name, c in p["customers"].items():
            rows = c["per_second"]
            xs = [r["second"] + 0.5 for r in rows]
            label = f"{name} (SureRoute {'on' if c['sureroute'] else 'off'})"
            ax.plot(xs, [100 * r["success"] for r in rows], marker=".", label=label)
            lx.plot(xs, [r["p99"] for r in rows], marker=".", label=label)
        ax.axhline(100 * SUCCESS_GOAL, color="grey", ls=":", lw=0.8)
        ax.set_ylabel("success per second (%)")
        ax.set_ylim(-3, 103)
        ax.set_title(f"Misses through {p['edge']} while {p['region']}'s peering to the origin is cut", fontsize=9)
        ax.legend(fontsize=8, loc="lower left")
        lx.set_yscale("log")
        lx.set_ylabel("p99 latency (s, log)")
        lx.set_xlabel("second of the run (by when the request was due)")
        lx.legend(fontsize=8, loc="upper left")
    else:
        ax.axis("off")
        lx.axis("off")
    o = doc.get("offload")
    if o:
        names = list(o["customers"])
        vals = [100 * o["customers"][n]["offload"] for n in names]
        ideal = [100 * o["customers"][n]["ideal_offload"] for n in names]
        labels = [f"{n}\n(parents: {', '.join(o['customers'][n]['parents']) or 'none'})" for n in names]
        bars = bx.bar(labels, vals, color=["tab:grey", "tab:green"][: len(names)])
        bx.scatter(labels, ideal, marker="_", s=600, color="black", label="a perfect cache", zorder=3)
        for b, v in zip(bars, vals, strict=True):
            bx.text(b.get_x() + b.get_width() / 2, v + 1, f"{v:.1f}%", ha="center", fontsize=9)
        bx.set_ylim(0, 105)
        bx.set_ylabel("origin offload (%)")
        bx.set_title(f"Offload: {o['requests']} Zipf requests, {len(o['children'])} child edges", fontsize=9)
        bx.legend(fontsize=8, loc="upper left")
    else:
        bx.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
