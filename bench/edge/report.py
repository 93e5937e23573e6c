"""The edge benchmark's tables (Markdown, readable as text) and chart (PNG, matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path

ORDER = {"nginx": 0, "varnish": 1, "akacdn": 2}
LABEL = {"nginx": "nginx proxy_cache", "varnish": "Varnish", "akacdn": "akacdn edge"}
PEERS = ("nginx", "varnish")
# the rows in the order they are measured and shown (plain hits by size, then over HTTPS)
OBJECTS = ("1 KiB", "100 KiB", "1 MiB", "TLS 1 KiB", "TLS handshake")
# chart labels: what one request is in each
GROUP_LABEL = {"TLS 1 KiB": "TLS 1 KiB hits\n(keep-alive)", "TLS handshake": "TLS handshakes\n(+ a 1 KiB hit each)"}


def medians(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """One row per cache, object and round: with repeats, the run with the median
    requests per CPU-second (its other columns come with it); `samples` lists them all."""
    groups: dict[tuple[object, ...], list[dict[str, object]]] = {}
    for r in rows:
        groups.setdefault((r["kind"], r["object"], r["round"]), []).append(r)
    out = []
    for runs in groups.values():
        ok = sorted((r for r in runs if r.get("rps_per_cpu_s")), key=lambda r: r["rps_per_cpu_s"])  # type: ignore[arg-type,return-value]
        pick = dict(ok[(len(ok) - 1) // 2] if ok else runs[0])
        pick["samples"] = [r.get("rps_per_cpu_s") for r in runs]
        pick["notes"] = sorted({n for r in runs for n in r["notes"]})  # type: ignore[attr-defined]
        out.append(pick)
    return out


def add_ratios(rows: list[dict[str, object]]) -> None:
    """ratio_to_best_peer: requests per server CPU-second over the best of nginx and
    Varnish for the same object and round (process count)."""
    best: dict[tuple[object, object], float] = {}
    for r in rows:
        v = r.get("rps_per_cpu_s")
        if r["kind"] in PEERS and isinstance(v, int | float):
            k = (r["object"], r["round"])
            best[k] = max(best.get(k, 0.0), float(v))
    for r in rows:
        base = best.get((r["object"], r["round"]))
        mine = r.get("rps_per_cpu_s")
        r["ratio_to_best_peer"] = round(float(mine) / base, 3) if base and isinstance(mine, int | float) else None


def _num(x: object, fmt: str = ",.0f") -> str:
    return format(x, fmt) if isinstance(x, int | float) else "-"


def _ms(x: object) -> str:
    return f"{x * 1000:.2f}" if isinstance(x, int | float) else "-"


def procs_cell(r: dict[str, object]) -> str:
    """Processes as they ran: nginx workers, Varnish '1 (N pools)', akacdn edge processes."""
    if r["kind"] == "varnish":
        return f"1 ({r['round']} pool{'s' if r['round'] != 1 else ''})"
    n = r["processes"]
    return f"{n}" + ("*" if n != r["round"] else "")


COLUMNS = (
    ("cache", lambda r: LABEL.get(str(r["kind"]), str(r["kind"]))),
    ("object", lambda r: str(r["object"])),
    ("procs", procs_cell),
    ("requests/s", lambda r: str(r["not_measured"]) if r.get("not_measured") else _num(r.get("rps"))),
    ("p99 ms", lambda r: _ms(r.get("p99"))),
    ("server CPU s", lambda r: _num(r.get("server_cpu"), ".2f")),
    ("cores", lambda r: _num(r.get("server_cores"), ".2f")),
    ("other cores", lambda r: _num(r.get("other_cores"), ".2f")),
    ("requests/CPU-s", lambda r: _num(r.get("rps_per_cpu_s"))),
    ("× best peer", lambda r: _num(r.get("ratio_to_best_peer"), ".2f")),
)


def _object_order(r: dict[str, object]) -> int:
    return OBJECTS.index(str(r["object"])) if r["object"] in OBJECTS else len(OBJECTS)


def sorted_rows(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """By round, then object (OBJECTS' order, others after), size, cache."""
    return sorted(rows, key=lambda r: (r["round"], _object_order(r), r["size"], ORDER.get(str(r["kind"]), 9)))  # type: ignore[return-value,arg-type]


def _table(head: list[str], body: list[list[str]], left: set[int]) -> str:
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    sep = "|" + "|".join(("-" * (w + 2)) if i in left else ("-" * (w + 1) + ":") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(head), sep, *(line(b) for b in body)])


def table(rows: list[dict[str, object]]) -> str:
    head = [c for c, _ in COLUMNS]
    body = [[f(r) for _, f in COLUMNS] for r in sorted_rows(rows)]
    return _table(head, body, {0, 1})


def stampede_table(rows: list[dict[str, object]]) -> str:
    head = ["cache", "round", "clients", "origin requests", "200 + full body", "distinct bodies", "seconds", "other"]
    body = []
    for r in sorted(rows, key=lambda r: (r["round"], ORDER.get(str(r["kind"]), 9))):  # type: ignore[arg-type]
        other = []
        if r.get("errors"):
            other.append(f"errors {r['errors']}")
        odd = {k: v for k, v in r.get("statuses", {}).items() if k != "200"}  # type: ignore[union-attr]
        if odd:
            other.append(f"status {odd}")
        if r.get("error"):
            other.append(str(r["error"]))
        body.append(
            [
                LABEL.get(str(r["kind"]), str(r["kind"])),
                f"{r['round']} proc",
                str(r["clients"]),
                _num(r.get("origin_requests"), "d"),
                f"{r.get('ok', 0)}/{r['clients']}",
                _num(r.get("distinct_bodies"), "d"),
                _num(r.get("seconds"), ".3f"),
                "; ".join(other) or "-",
            ]
        )
    return _table(head, body, {0, 1, 7})


def one_line(r: dict[str, object]) -> str:
    return (
        f"{_num(r.get('rps'))} req/s, p99 {_ms(r.get('p99'))} ms, server CPU {_num(r.get('server_cpu'), '.2f')} s "
        f"({_num(r.get('server_cores'), '.2f')} cores), {_num(r.get('rps_per_cpu_s'))} requests/CPU-s"
        + (f"  [{'; '.join(r['notes'])}]" if r.get("notes") else "")  # type: ignore[arg-type]
    )


def chart(
    rows: list[dict[str, object]], stampedes: list[dict[str, object]], path: Path, doc: dict[str, object]
) -> None:
    """Left: grouped bars of requests per server CPU-second per (object, round), one bar
    per cache, labelled with its ratio to the best peer. Right: origin requests in the
    cold stampede."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted_rows(rows)
    groups: list[tuple[object, object]] = []
    for r in rows:
        if (r["round"], r["object"]) not in groups:
            groups.append((r["round"], r["object"]))
    kinds = [k for k in ORDER if any(r["kind"] == k for r in rows)] or list(ORDER)
    colors = {"nginx": "#4c72b0", "varnish": "#55a868", "akacdn": "#c44e52"}
    width = 0.8 / len(kinds)
    st = sorted(stampedes, key=lambda r: (r["round"], ORDER.get(str(r["kind"]), 9)))  # type: ignore[arg-type]
    if st:
        fig, (ax, ax2) = plt.subplots(
            1, 2, figsize=(max(10, 2.2 * len(groups) + 4), 5.5), dpi=110, gridspec_kw={"width_ratios": [3, 1]}
        )
    else:  # --clients 0: no stampede panel
        fig, ax = plt.subplots(figsize=(max(8, 2.2 * len(groups) + 1), 5.5), dpi=110)
    for k, kind in enumerate(kinds):
        xs, ys, labels = [], [], []
        for i, g in enumerate(groups):
            for r in rows:
                if (r["round"], r["object"]) == g and r["kind"] == kind and r.get("not_measured"):
                    x = i + (k - (len(kinds) - 1) / 2) * width  # e.g. Varnish over HTTPS: say why there is no bar
                    ax.annotate(str(r["not_measured"]), (x, 0), xycoords=("data", "axes fraction"), xytext=(0, 4),
                                textcoords="offset points", ha="center", va="bottom", fontsize=7, rotation=90,
                                color=colors.get(kind, "grey"))  # fmt: skip
                if (r["round"], r["object"]) == g and r["kind"] == kind and r.get("rps_per_cpu_s"):
                    xs.append(i + (k - (len(kinds) - 1) / 2) * width)
                    ys.append(float(r["rps_per_cpu_s"]) / 1000)  # type: ignore[arg-type]
                    ratio = r.get("ratio_to_best_peer")
                    labels.append((f"{ratio:.2f}×" if isinstance(ratio, float) else "") + f"\n{procs_cell(r)}")
        if xs:
            bars = ax.bar(xs, ys, width, label=LABEL[kind], color=colors[kind])
            ax.bar_label(bars, labels=labels, fontsize=7, padding=2)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{GROUP_LABEL.get(str(obj), f'{obj} hits')}\n{rnd} proc" for rnd, obj in groups], fontsize=7)
    ax.set_ylabel("requests per server CPU-second (thousands)")
    values = [float(r["rps_per_cpu_s"]) for r in rows if isinstance(r.get("rps_per_cpu_s"), int | float)]  # type: ignore[arg-type]
    if values and max(values) > 20 * min(values):  # handshakes next to hits: both readable
        ax.set_yscale("log")
        ax.set_ylabel("requests per server CPU-second (thousands, log scale)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.15)
    m, v = doc["machine"], doc["versions"]  # type: ignore[index]
    ax.set_title(
        "cache hits: requests per server CPU-second (label: × best of nginx/Varnish, processes; "
        "Varnish has no TLS)\n"
        f"{m['cpu_model']}, {m['nproc']} cores, {m['date']}; nginx {v['nginx']}, Varnish {v['varnish']}, "  # type: ignore[index]
        f"wrk {v['wrk']}",  # type: ignore[index]
        fontsize=8,
    )
    if st:
        names = [
            f"{LABEL.get(str(r['kind']), r['kind'])}\n{r['round']} proc, {r.get('ok', 0)}/{r['clients']} ok" for r in st
        ]
        vals = [int(r["origin_requests"]) if isinstance(r.get("origin_requests"), int) else 0 for r in st]  # type: ignore[arg-type]
        bars = ax2.bar(range(len(st)), vals, color=[colors.get(str(r["kind"]), "grey") for r in st])
        ax2.bar_label(bars, fontsize=8)
        ax2.yaxis.get_major_locator().set_params(integer=True)
        ax2.set_xticks(range(len(st)))
        ax2.set_xticklabels(names, fontsize=6, rotation=45, ha="right")
        ax2.set_ylabel("origin requests")
        ax2.margins(y=0.25)
        ax2.set_title(f"cold stampede: {st[0]['clients']} clients, one new object", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
