"""The benchmark's table (text, also Markdown-friendly) and chart (PNG, matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path

ORDER = {"NSD": 0, "Knot": 1, "akacdn LLNS": 2, "akacdn TLNS": 2}


def medians(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """One row per server, zone, query mix and round: with repeats, the run with the
    median answers per CPU-second (its other columns come with it), and `samples` lists
    every run's answers per CPU-second."""
    groups: dict[tuple[object, ...], list[dict[str, object]]] = {}
    for r in rows:
        groups.setdefault((r["server"], r["group"], r["variant"], r["round"]), []).append(r)
    out = []
    for runs in groups.values():
        ok = sorted((r for r in runs if r["answers_per_cpu_s"]), key=lambda r: r["answers_per_cpu_s"])  # type: ignore[arg-type,return-value]
        pick = dict(ok[(len(ok) - 1) // 2] if ok else runs[0])
        pick["samples"] = [r["answers_per_cpu_s"] for r in runs]
        pick["notes"] = sorted({n for r in runs for n in r["notes"]})  # type: ignore[attr-defined]
        out.append(pick)
    return out


def add_ratios(rows: list[dict[str, object]]) -> None:
    """ratio_to_nsd: answers per server CPU-second over NSD's, same group, query variant
    and round (process count)."""
    nsd = {
        (r["group"], r["variant"], r["round"]): r["answers_per_cpu_s"]
        for r in rows
        if r["kind"] == "nsd" and r["answers_per_cpu_s"]
    }
    for r in rows:
        base = nsd.get((r["group"], r["variant"], r["round"]))
        mine = r["answers_per_cpu_s"]
        r["ratio_to_nsd"] = round(mine / base, 3) if base and mine else None  # type: ignore[operator]


def _ms(x: object) -> str:
    return f"{x * 1000:.2f}" if isinstance(x, float) else "-"


def _num(x: object, fmt: str = ",.0f") -> str:
    return format(x, fmt) if isinstance(x, int | float) else "-"


def one_line(r: dict[str, object]) -> str:
    return (
        f"{_num(r['qps'])} q/s, avg {_ms(r['avg_latency'])} ms, p99 {_ms(r['p99_latency'])} ms, "
        f"server CPU {_num(r['server_cpu'], '.2f')} s ({_num(r['server_cores'], '.2f')} cores), "
        f"{_num(r['answers_per_cpu_s'])} answers/CPU-s" + (f"  [{'; '.join(r['notes'])}]" if r["notes"] else "")  # type: ignore[arg-type]
    )


COLUMNS = (
    ("zone", "group"),
    ("queries", "variant"),
    ("server", "server"),
    ("procs", "processes"),
    ("queries/s", "qps"),
    ("avg ms", "avg_latency"),
    ("p99 ms", "p99_latency"),
    ("max ms", "max_latency"),
    ("server CPU s", "server_cpu"),
    ("cores", "server_cores"),
    ("other cores", "other_cores"),
    ("answers/CPU-s", "answers_per_cpu_s"),
    ("× NSD", "ratio_to_nsd"),
)


def _cell(key: str, v: object) -> str:
    if key == "group":
        return {"llns": "g (LLNS)", "tlns": "base (TLNS)"}.get(str(v), str(v))
    if key.endswith("latency"):
        return _ms(v)
    if key in ("server_cpu", "server_cores", "other_cores"):
        return _num(v, ".2f")
    if key == "ratio_to_nsd":
        return _num(v, ".2f")
    if key in ("qps", "answers_per_cpu_s"):
        return _num(v)
    return str(v)


def sorted_rows(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    return sorted(
        rows, key=lambda r: (r["round"], r["group"] != "llns", r["variant"] != "plain", ORDER.get(str(r["server"]), 9))
    )


def table(rows: list[dict[str, object]]) -> str:
    """A Markdown table (readable as plain text too)."""
    head = [c for c, _ in COLUMNS]
    body = [[_cell(k, r.get(k)) for _, k in COLUMNS] for r in sorted_rows(rows)]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    right = {i for i, (_, k) in enumerate(COLUMNS) if k not in ("group", "variant", "server")}

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(head), sep, *(line(b) for b in body)])


def chart(rows: list[dict[str, object]], path: Path, doc: dict[str, object]) -> None:
    """Grouped bars of answers per server CPU-second: one group per (zone, queries,
    process count), one bar per server, each labelled with its ratio to NSD."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted_rows(rows)
    groups: list[tuple[object, object, object]] = []
    for r in rows:
        g = (r["round"], r["group"], r["variant"])
        if g not in groups:
            groups.append(g)
    kinds = ["nsd", "knot", "akacdn"]
    colors = {"nsd": "#4c72b0", "knot": "#55a868", "akacdn": "#c44e52"}
    names = {"nsd": "NSD", "knot": "Knot DNS", "akacdn": "akacdn (LLNS / TLNS)"}
    width = 0.8 / len(kinds)
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(groups)), 5.5), dpi=110)
    for k, kind in enumerate(kinds):
        xs, ys, labels = [], [], []
        for i, g in enumerate(groups):
            for r in rows:
                if (r["round"], r["group"], r["variant"]) == g and r["kind"] == kind and r["answers_per_cpu_s"]:
                    xs.append(i + (k - (len(kinds) - 1) / 2) * width)
                    ys.append(float(r["answers_per_cpu_s"]) / 1000)  # type: ignore[arg-type]
                    ratio = r.get("ratio_to_nsd")
                    label = f"{ratio:.2f}×" if isinstance(ratio, float) else ""
                    if r["processes"] != r["round"]:
                        label += f"\n({r['processes']} proc)"
                    labels.append(label)
        if xs:
            bars = ax.bar(xs, ys, width, label=names[kind], color=colors[kind])
            ax.bar_label(bars, labels=labels, fontsize=7, padding=2)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(
        [f"{'g zone' if grp == 'llns' else 'base zone'}\n{var}\n{rnd} proc" for rnd, grp, var in groups], fontsize=8
    )
    ax.set_ylabel("answers per server CPU-second (thousands)")
    m = doc["machine"]
    v = doc["versions"]
    ax.set_title(
        "DNS answers per server CPU-second (label: ratio to NSD, same zone, queries, process count)\n"
        f"{m['cpu_model']}, {m['nproc']} cores, {m['date']}; NSD {v['nsd']}, Knot {v['knot']}, dnsperf {v['dnsperf']}",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
