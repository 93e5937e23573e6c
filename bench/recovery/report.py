"""The recovery benchmark's summaries, table and chart (pure, but for the chart's matplotlib)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

NAMESERVER_GOAL = 0.3  # seconds: a rolled nameserver answers again within this (p95)
SUCCESS_GOAL = 0.999  # the other serials' requests that succeed across a storm

SERVING = {
    "tlns": "DNS answer (akacdn.test SOA)",
    "llns": "DNS answer (a123.g.akacdn.test A)",
    "edge": "HTTP 200 (www.demo.example /)",
    "relay": "/readyz 200",
    "mapper": "/readyz 200 (incl. the dead_after warm-up)",
    "mapper alive": "/healthz 200",
}


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def summarize(values: list[float]) -> dict[str, Any]:
    """Median, p95 and max of the trials that finished (NaN: timed out, counted apart)."""
    done = [v for v in values if not math.isnan(v)]
    return {
        "n": len(values),
        "timeouts": len(values) - len(done),
        "median": statistics.median(done) if done else float("nan"),
        "p95": pct(done, 0.95),
        "max": max(done) if done else float("nan"),
    }


def restart_doc(trials: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Per daemon kind: its trials and their summary; the mapping center's alive time as
    its own line."""
    out: dict[str, Any] = {}
    for kind, rows in trials.items():
        out[kind] = {"trials": rows, **summarize([r["seconds"] for r in rows])}
        if rows and "alive" in rows[0]:
            out[f"{kind} alive"] = {"trials": [{"seconds": r["alive"]} for r in rows],
                                    **summarize([r["alive"] for r in rows])}  # fmt: skip
    return out


def verdict(kind: str, p95: float) -> tuple[str, str]:
    """(goal, verdict) of a restart line: nameservers only."""
    if not kind.startswith(("tlns", "llns")):
        return "", ""
    return f"< {NAMESERVER_GOAL:g} s", ("meets" if p95 < NAMESERVER_GOAL else "MISSES")


def _s(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.3f}"


def table(doc: dict[str, Any]) -> str:
    out: list[str] = []
    if doc.get("restart"):
        out += ["", "Restart to serving (SIGKILL; spawned at once, or `supervised`: restarted by the devnet's "
                "supervisor, timed from the kill)", "",
                "| daemon | serving means | trials | median s | p95 s | max s | goal (p95) | verdict |",
                "|:---|:---|---:|---:|---:|---:|:---|:---|"]  # fmt: skip
        for kind, r in doc["restart"].items():
            goal, ok = verdict(kind, r["p95"])
            n = f"{r['n']}" + (f" ({r['timeouts']} timed out)" if r["timeouts"] else "")
            what = SERVING.get(kind.replace(" (supervised)", ""), "")
            out.append(f"| {kind} | {what} | {n} | {_s(r['median'])} | {_s(r['p95'])} | {_s(r['max'])} "
                       f"| {goal} | {ok} |")  # fmt: skip
    q = doc.get("quarantine")
    if q:
        out += ["", "From the first request of death to quarantine", "",
                "| until | trials | median s | p95 s | max s |", "|:---|---:|---:|---:|---:|"]  # fmt: skip
        for key, label in (("listed", "the leader's /v1/status lists it"),
                           ("confined", "every LLNS answers only the quarantine set")):  # fmt: skip
            r = q[key]
            out.append(f"| {label} | {r['n']} | {_s(r['median'])} | {_s(r['p95'])} | {_s(r['max'])} |")
    s = doc.get("storm")
    if s:
        out += ["", f"Demo requests across a {s['seconds']:g} s request-of-death storm ({s['clients']} clients, "
                f"a request of death every 0.2 s)", "",
                "| edges | requests | ok | success | goal | verdict |", "|:---|---:|---:|---:|:---|:---|"]  # fmt: skip
        for key, label in (("all", "every edge"), ("outside_set", "outside the quarantine set"),
                           ("outside_set_after", "outside the set, from 1 s after the quarantine")):  # fmt: skip
            r = s[key]
            if not r["requests"]:
                continue
            ok = "meets" if r["ratio"] >= SUCCESS_GOAL else "MISSES"
            out.append(f"| {label} | {r['requests']} | {r['ok']} | {100 * r['ratio']:.2f}% "
                       f"| >= {100 * SUCCESS_GOAL:g}% | {ok} |")  # fmt: skip
        rolls = sum(s["rolls"].values())
        out += ["", f"quarantined after {_s(s['quarantined_after'])} s to {', '.join(s['servers']) or '-'}; "
                f"rolls seen: {rolls} ({', '.join(f'{m} {n}' for m, n in s['rolls'].items()) or '-'}); "
                f"requests of death by status: {s['death_requests']}; "
                f"failures before the quarantine: {s['failures_before_quarantine']}"]  # fmt: skip
        if s["failures"]:
            out.append("failures by edge and status: " + ", ".join(f"{k}: {v}" for k, v in s["failures"].items()))
    return "\n".join(out)


def chart(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    kinds = list(doc.get("restart", {}))
    for i, kind in enumerate(kinds):
        secs = [t["seconds"] for t in doc["restart"][kind]["trials"] if not math.isnan(t["seconds"])]
        ax.scatter([i + (j % 7 - 3) * 0.04 for j in range(len(secs))], secs, s=12, alpha=0.7)
        ax.hlines(doc["restart"][kind]["median"], i - 0.3, i + 0.3, color="black")
    ax.axhline(NAMESERVER_GOAL, color="grey", ls=":", lw=0.8)
    ax.set_xticks(range(len(kinds)), [k.replace(" (", "\n(") for k in kinds], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("seconds to serving (log)")
    ax.set_title("Restart to serving (line: median; dotted: the 0.3 s nameserver goal)", fontsize=9)
    s = doc.get("storm")
    if s:
        secs = list(range(len(s["per_second"])))
        bx.bar(secs, [ok for ok, _ in s["per_second"]], color="tab:green", label="200")
        bx.bar(secs, [bad for _, bad in s["per_second"]], bottom=[ok for ok, _ in s["per_second"]],
               color="tab:red", label="failed")  # fmt: skip
        if not math.isnan(s["quarantined_after"]):
            bx.axvline(s["quarantined_after"], color="black", ls="--", lw=0.8, label="quarantined")
        bx.set_xlabel("second of the storm")
        bx.set_ylabel("demo requests")
        bx.set_title(f"Request-of-death storm: {100 * s['all']['ratio']:.2f}% ok "
                     f"({100 * s['outside_set']['ratio']:.2f}% outside the set)", fontsize=9)  # fmt: skip
        bx.legend(fontsize=8)
    else:
        bx.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
