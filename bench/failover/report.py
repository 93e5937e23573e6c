"""The failover benchmark's summary, tables (Markdown, readable as text) and chart (PNG,
matplotlib Agg). `summarize` and the tables are pure (unit-tested)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .analysis import summary

LABEL = {"akacdn": "akacdn agent", "keepalived": "keepalived VRRPv3"}
STEPS = (  # the akacdn buddy's steps after the kill, from its /events
    ("declared_dead", "declared dead"),
    ("address_added", "address added"),
    ("first_arp", "first gratuitous ARP"),
)
RETURN_STEPS = (
    ("victim_added", "owner re-adds"),
    ("buddy_removed", "buddy removed"),
    ("victim_first_arp", "owner's first ARP"),
    ("dual_hold", "both held it"),
)


def _get(row: dict[str, Any], *path: str) -> Any:
    for k in path:
        if not isinstance(row, dict):
            return None
        row = row.get(k)  # type: ignore[assignment]
    return row


def summarize(trials: dict[str, list[dict[str, Any]]], args: argparse.Namespace | None = None) -> dict[str, Any]:
    """Per system: statistics (seconds) over its trials."""
    out: dict[str, Any] = {}
    for system, rows in trials.items():
        if not rows:
            continue
        s: dict[str, Any] = {
            "label": LABEL.get(system, system),
            "trials": len(rows),
            "taken_over": sum(1 for r in rows if r.get("outage") is not None),
            "outage": summary(r.get("outage") for r in rows),
            "failed_requests_in_outage": summary(r.get("failed") for r in rows),
            "return_max_gap": summary(_get(r, "return", "max_gap") for r in rows),
            "return_failed_requests": summary(_get(r, "return", "failed") for r in rows),
            "return_failed_total": sum(_get(r, "return", "failed") or 0 for r in rows),
            "return_flapping_trials": sum(1 for r in rows if (_get(r, "return", "changes") or 0) > 1),
            "baseline_max_gap": summary(_get(r, "baseline", "max_gap") for r in rows),
            "back_after": summary(r.get("back_after") for r in rows),
            "stale_address_dropped": sum(1 for r in rows if r.get("stale_address_dropped")),
        }
        if any("breakdown" in r for r in rows):
            s["breakdown"] = {k: summary(_get(r, "breakdown", k) for r in rows) for k, _ in STEPS}
            client = [
                r["outage"] - b["first_arp"]
                for r in rows
                if r.get("outage") is not None and (b := r.get("breakdown")) and b.get("first_arp") is not None
            ]
            s["breakdown"]["arp_to_answer"] = summary(client)
        if any("return_breakdown" in r for r in rows):
            s["return_breakdown"] = {k: summary(_get(r, "return_breakdown", k) for r in rows) for k, _ in RETURN_STEPS}
        if args is not None:
            s["interval"] = args.interval
        out[system] = s
    return out


def _ms(x: object, fmt: str = ".0f") -> str:
    return format(x * 1000, fmt) if isinstance(x, int | float) else "-"


def _row(cells: list[str], widths: list[int], right: set[int]) -> str:
    padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    return "| " + " | ".join(padded) + " |"


def markdown(head: list[str], rows: list[list[str]], left: int = 1) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    right = set(range(left, len(head)))
    sep = "|" + "|".join(("-" * (w + 2)) if i < left else ("-" * (w + 1) + ":") for i, w in enumerate(widths)) + "|"
    return "\n".join([_row(head, widths, right), sep, *(_row(r, widths, right) for r in rows)])


def table(s: dict[str, Any]) -> str:
    head = [
        "system",
        "trials",
        "outage median ms",
        "p95 ms",
        "max ms",
        "failed in outage (median)",
        "return gap median ms",
        "max ms",
        "failed on return (all trials)",
        "flapping returns",
        "steady gap ms",
        "back after s",
    ]
    rows = []
    for v in s.values():
        rows.append(
            [
                f"{v['label']} ({_ms(v.get('interval'), 'g')} ms)",
                f"{v['taken_over']}/{v['trials']}",
                _ms(v["outage"]["median"]),
                _ms(v["outage"]["p95"]),
                _ms(v["outage"]["max"]),
                f"{v['failed_requests_in_outage']['median']:.0f}" if v["failed_requests_in_outage"]["n"] else "-",
                _ms(v["return_max_gap"]["median"]),
                _ms(v["return_max_gap"]["max"]),
                str(v["return_failed_total"]),
                str(v["return_flapping_trials"]),
                _ms(v["baseline_max_gap"]["median"]),
                f"{v['back_after']['median']:.1f}" if v["back_after"]["median"] is not None else "-",
            ]
        )
    return markdown(head, rows)


def breakdown_table(s: dict[str, Any]) -> str:
    """akacdn's steps, medians (and max) in ms after the kill / after the restore."""
    rows = []
    for v in s.values():
        b = v.get("breakdown")
        if b:
            for k, name in (*STEPS, ("arp_to_answer", "first ARP -> first buddy answer")):
                rows.append(
                    [
                        f"{v['label']}: kill -> {name}" if k != "arp_to_answer" else f"{v['label']}: {name}",
                        _ms(b[k]["median"]),
                        _ms(b[k]["p95"]),
                        _ms(b[k]["max"]),
                    ]
                )
            rows.append(
                [
                    f"{v['label']}: kill -> first buddy answer (outage)",
                    _ms(v["outage"]["median"]),
                    _ms(v["outage"]["p95"]),
                    _ms(v["outage"]["max"]),
                ]
            )
        rb = v.get("return_breakdown")
        if rb:
            for k, name in RETURN_STEPS:
                label = f"{v['label']}: restore -> {name}" if k != "dual_hold" else f"{v['label']}: {name} (ms)"
                rows.append([label, _ms(rb[k]["median"]), _ms(rb[k]["p95"]), _ms(rb[k]["max"])])
    if not rows:
        return ""
    return markdown(["step", "median ms", "p95 ms", "max ms"], rows)


def soak_table(soaks: dict[str, dict[str, Any]]) -> str:
    head = [
        "system",
        "seconds",
        "stress-ng --cpu per machine",
        "false takeovers",
        "peer declared dead",
        "wrong-machine answers",
        "failed requests",
        "machine busy",
        "load average (1 min) at end",
    ]
    rows = []
    for system, r in soaks.items():
        dead = "-"
        if system == "akacdn":
            dead = str(_get(r, "buddy", "declared_dead") + _get(r, "victim", "declared_dead"))
        rows.append(
            [
                LABEL.get(system, system),
                f"{r['seconds']:g}",
                str(r["stress_cpus_per_machine"]),
                str(r["false_takeovers"]),
                dead,
                str(r["wrong_machine"]),
                f"{r['failed']}/{r['requests']}",
                f"{r['machine_busy'] * 100:.0f}%" if isinstance(r.get("machine_busy"), int | float) else "-",
                f"{r['loadavg_during'][0]:.1f}",
            ]
        )
    return markdown(head, rows)


def trial_line(r: dict[str, Any]) -> str:
    b = r.get("breakdown") or {}
    parts = [f"outage {_ms(r.get('outage'))} ms ({r.get('failed', 0)} failed requests)"]
    if b:
        parts.append(
            "dead/added/ARP at " + "/".join(_ms(b.get(k)) for k in ("declared_dead", "address_added", "first_arp"))
        )
    ret = r.get("return") or {}
    parts.append(f"return gap {_ms(ret.get('max_gap'))} ms, {ret.get('changes', '-')} change(s)")
    rb = r.get("return_breakdown") or {}
    if rb.get("dual_hold") is not None:
        parts.append(f"dual hold {_ms(rb['dual_hold'])} ms")
    parts.append(f"back after {r.get('back_after', 0):.1f}s")
    if r.get("note"):
        parts.append(r["note"])
    return "; ".join(parts)


def soak_line(r: dict[str, Any]) -> str:
    s = f"{r['false_takeovers']} false takeover(s), {r['wrong_machine']} wrong-machine answers, "
    s += f"{r['failed']}/{r['requests']} failed requests, load {r['loadavg_during'][0]:.1f}"
    return s + (f"; {r['note']}" if r.get("note") else "")


def header(doc: dict[str, Any]) -> str:
    m, v, st = doc["machine"], doc["versions"], doc["settings"]
    load0 = " ".join(f"{x:.2f}" for x in m["loadavg_at_start"])
    load1 = " ".join(f"{x:.2f}" for x in m.get("loadavg_at_end", ()))
    return (
        f"machine: {m['nproc']} cores ({m['cpu_model']}), {m['os']}, kernel {m['kernel']}, {m['date']}; "
        f"load average {load0} at the start, {load1} at the end\n"
        f"keepalived {v['keepalived']}, stress-ng {v['stress-ng']}, {v['python']}; "
        f"interval {st['interval'] * 1000:g} ms (akacdn [agent] interval, misses {st['misses']}, recover_after "
        f"{st['recover_after']:g}; keepalived advert_int), probe every {st['probe_every'] * 1000:g} ms, "
        f"connect timeout {st['connect_timeout'] * 1000:g} ms, {st['trials']} trials"
    )


def notes(doc: dict[str, Any]) -> list[str]:
    st = doc["settings"]
    out = [
        "outage = kill -> first answer from the buddy (its completion time); the probe starts a request every "
        f"{st['probe_every'] * 1000:g} ms, so it adds 0-{st['probe_every'] * 1000:g} ms of its own",
        "return gap = longest time between two answers (any machine) from the restore until the owner served "
        f"{20} answers in a row; steady gap = the same in the second before the kill (what no disruption looks like "
        "on this machine); flapping = the answering machine changed more than once",
    ]
    for system, s in doc["summary"].items():
        if s["stale_address_dropped"]:
            out.append(
                f"{system}: the killed victim still had its service address in {s['stale_address_dropped']} of "
                f"{s['trials']} trials; it was removed before the link came back (as a reboot would)"
            )
    return out


def chart(trials: dict[str, list[dict[str, Any]]], s: dict[str, Any], path: Path, doc: dict[str, Any]) -> None:
    """Outage per trial (points, median line), akacdn's steps per trial (stacked), and the
    longest gap at the owner's return per trial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = [k for k in trials if trials[k]]
    colors = {"akacdn": "#c44e52", "keepalived": "#4c72b0"}
    fig, (ax, ax_steps, ax2) = plt.subplots(1, 3, figsize=(14, 5), dpi=110, gridspec_kw={"width_ratios": [2, 3, 2]})

    def strip(axis: Any, i: int, seconds: list[float], median: float | None, color: str) -> None:
        """One system's trials as a jittered column of dots (ms), with its median marked."""
        ys = [x * 1000 for x in seconds]
        axis.scatter([i + (j % 7 - 3) * 0.04 for j in range(len(ys))], ys, s=14, color=color, alpha=0.8, zorder=3)
        if median is not None:
            axis.hlines(median * 1000, i - 0.3, i + 0.3, color="black", lw=1.5, zorder=4)
            axis.annotate(f"{median * 1000:.0f}", (i + 0.32, median * 1000), fontsize=7, va="center")

    for i, system in enumerate(systems):
        color = colors.get(system, "grey")
        outages = [r["outage"] for r in trials[system] if r.get("outage") is not None]
        strip(ax, i, outages, s[system]["outage"]["median"], color)
        gaps = [r["return"]["max_gap"] for r in trials[system] if _get(r, "return", "max_gap") is not None]
        strip(ax2, i, gaps, s[system]["return_max_gap"]["median"], color)
        base = s[system]["baseline_max_gap"]["median"]
        if base is not None:
            ax2.hlines(base * 1000, i - 0.3, i + 0.3, color="grey", lw=1, ls=":", zorder=2)
    for a in (ax, ax2):
        a.set_xticks(range(len(systems)))
        a.set_xticklabels([LABEL.get(x, x) for x in systems], fontsize=8)
        a.set_xlim(-0.6, len(systems) - 0.4)
        a.set_ylim(bottom=0)
        a.grid(axis="y", alpha=0.3)
    # akacdn's steps, trial by trial: kill -> declared dead -> address added -> first ARP -> first answer
    rows = [r for r in trials.get("akacdn", []) if r.get("outage") is not None and r.get("breakdown")]
    parts = (
        ("declared_dead", None, "silence until declared dead", "#dd8452"),
        ("first_arp", "declared_dead", "dead -> address added + first ARP", "#55a868"),
        ("outage", "first_arp", "first ARP -> first answer at the client", "#8172b3"),
    )
    bottom = [0.0] * len(rows)
    for key, prev, name, color in parts:
        vals = []
        for r in rows:
            b = r["breakdown"]
            end = r["outage"] if key == "outage" else b.get(key)
            start = 0.0 if prev is None else b.get(prev)
            v = (end - start) * 1000 if end is not None and start is not None else 0.0
            vals.append(max(v, 0.0))
        ax_steps.bar(range(1, len(rows) + 1), vals, bottom=bottom, color=color, label=name, width=0.7)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    st, m = doc["settings"], doc["machine"]
    ax_steps.set_xlabel("akacdn trial", fontsize=8)
    ax_steps.set_ylabel("ms after the kill")
    ax_steps.legend(fontsize=7, loc="upper left")
    ax_steps.xaxis.get_major_locator().set_params(integer=True)
    ax_steps.margins(y=0.3)
    ax_steps.grid(axis="y", alpha=0.3)
    ax_steps.set_title(
        f"akacdn: the buddy's steps ([agent] interval {st['interval'] * 1000:g} ms x misses {st['misses']})",
        fontsize=8,
    )
    ax.set_ylabel("ms from kill to the buddy's first answer")
    ax.set_title(
        f"outage per trial (line: median), interval {st['interval'] * 1000:g} ms\n"
        f"{m['cpu_model']}, {m['nproc']} cores, load {m['loadavg_at_start'][0]:.1f}, {m['date'][:16]}",
        fontsize=8,
    )
    ax2.set_ylabel("ms, longest gap between answers")
    ax2.set_title("owner's return: longest gap per trial\n(dotted: the same just before the kill)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
