"""The messaging benchmark's tables and chart."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _ms(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"


def delivery_line(r: dict[str, Any]) -> str:
    return (
        f"delivered {100 * r['ratio_mean']:.2f}% (worst subscriber {100 * r['ratio_min']:.2f}%), "
        f"latency median {_ms(r['latency_median_ms'])} ms, p99 {_ms(r['latency_p99_ms'])} ms, "
        f"{r['recovered']} recovered by NACK, {r['dropped_by_nft']} datagrams dropped by the loss rules"
    )


def tables(doc: dict[str, Any]) -> str:
    out = []
    rows = doc.get("delivery") or []
    if rows:
        out += ["", "Delivery (loss: % of datagrams into and out of every relay; a one-relay path loses ~2x)", ""]
        out.append("| paths | NACK | loss % | delivered (mean) | worst subscriber | median ms | p99 ms | recovered |")
        out.append("|---:|:---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            out.append(
                f"| {r['paths']} | {'on' if r['nack'] else 'off'} | {r['loss']:g} | {100 * r['ratio_mean']:.2f}% "
                f"| {100 * r['ratio_min']:.2f}% | {_ms(r['latency_median_ms'])} | {_ms(r['latency_p99_ms'])} "
                f"| {r['recovered']} |"
            )
    maps = doc.get("map") or []
    if maps:
        out += ["", "A 1.3 MB map to every subscriber (paths 2, NACK on)", ""]
        out.append("| loss % | runs | reached all | median ms | max ms |")
        out.append("|---:|---:|---:|---:|---:|")
        for m in maps:
            out.append(
                f"| {m['loss']:g} | {m['runs']} | {m['reached_all']} | {_ms(m['median_ms'])} | {_ms(m['max_ms'])} |"
            )
    out += relay_table(doc.get("relay"), doc.get("relay_peer"))
    return "\n".join(out)


def peer_ratio(relay: dict[str, Any] | None, peer: dict[str, Any] | None) -> float | None:
    """akacdn's out per CPU-second over nats-server's; None when either is missing."""
    if not relay or not peer or "error" in peer or not peer.get("out_per_cpu_s"):
        return None
    ratio = relay["out_per_cpu_s"] / peer["out_per_cpu_s"]
    return None if math.isnan(ratio) else ratio


def _relay_row(label: str, r: dict[str, Any], ratio: str) -> str:
    return (
        f"| {label} | {r['datagrams_in']:.0f} | {r['datagrams_out']:.0f} | {r['relay_cpu_s']:.2f} "
        f"| {r['in_per_cpu_s']:.0f} | {r['out_per_cpu_s']:.0f} | {r['out_per_s']:.0f} "
        f"| {100 * r['delivered_ratio_min']:.2f}% | {ratio} |"
    )


def relay_table(relay: dict[str, Any] | None, peer: dict[str, Any] | None) -> list[str]:
    """One row per server under the same load; nats-server's counts are messages over TCP."""
    if not relay and not peer:
        return []
    subs = (relay or peer or {}).get("subscribers", "?")
    out = ["", f"One relay process, {subs} subscribers, the same load (nats-server: messages over TCP)", ""]
    out.append(
        "| server | datagrams in | out | relay CPU s | in per CPU-s | out per CPU-s | out per s | worst delivered "
        "| × nats-server |"
    )
    out.append("|:---|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratio = peer_ratio(relay, peer)
    if relay:
        out.append(_relay_row("akacdn relay", relay, "-" if ratio is None else f"{ratio:.2f}"))
    if peer and "error" in peer:
        error = " ".join(str(peer["error"]).split()).replace("|", "/")  # one table cell
        out.append(f"| nats-server | {error} | - | - | - | - | - | - | - |")
    elif peer:
        out.append(_relay_row(peer.get("server", "nats-server"), peer, "1.00"))
    return out


def chart(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc.get("delivery") or []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    series: dict[tuple[int, bool], list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault((r["paths"], r["nack"]), []).append(r)
    for (paths, nack), rs in sorted(series.items()):
        rs.sort(key=lambda r: r["loss"])
        style = "-" if nack else "--"
        label = f"k={paths}, NACK {'on' if nack else 'off'}"
        ax1.plot([r["loss"] for r in rs], [100 * r["ratio_mean"] for r in rs], style, marker="o", label=label)
        ax2.plot([r["loss"] for r in rs], [r["latency_p99_ms"] for r in rs], style, marker="o", label=label)
    ax1.set_xlabel("loss per relay link, %")
    ax1.set_ylabel("messages delivered whole, % (mean over subscribers)")
    ax1.set_title("Delivery")
    ax1.axhline(99.9, color="grey", lw=0.8, ls=":")
    if series:
        ax1.legend(fontsize=8)
    ax2.set_xlabel("loss per relay link, %")
    ax2.set_ylabel("latency p99, ms")
    ax2.set_yscale("log")
    ax2.set_title("Latency (p99)")
    maps = doc.get("map") or []
    relay = doc.get("relay")
    notes = []
    for m in maps:
        notes.append(f"1.3 MB map to all, {m['loss']:g}% loss: median {_ms(m['median_ms'])} ms")
    if relay:
        notes.append(f"one relay: {relay['out_per_cpu_s']:.0f} datagrams out per CPU-second")
    ratio = peer_ratio(relay, doc.get("relay_peer"))
    if ratio is not None:
        nats = doc["relay_peer"]
        notes.append(
            f"{nats.get('server', 'nats-server')}: {nats['out_per_cpu_s']:.0f} per CPU-second (akacdn ×{ratio:.2f})"
        )
    if notes:
        fig.text(0.01, 0.01, " | ".join(notes), fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
