"""The mapping benchmark's table and chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LABELS = {
    "leader_kill": "leader killed -> every nameserver on a newer term's map",
    "leader_cutoff": "leader cut off -> every nameserver on a newer term's map",
    "edge_kill": "edge killed -> absent from every LLNS answer",
}


def table(doc: dict[str, Any]) -> str:
    out = ["", "| fault | trials | median s | p95 s | p99 s | max s |", "|:---|---:|---:|---:|---:|---:|"]
    for fault, f in doc["faults"].items():
        out.append(
            f"| {LABELS.get(fault, fault)} | {len(f['trials'])} | {f['median']:.2f} | {f['p95']:.2f} "
            f"| {f['p99']:.2f} | {f['max']:.2f} |"
        )
    return "\n".join(out)


def chart(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faults = list(doc["faults"])
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, fault in enumerate(faults):
        secs = [t["seconds"] for t in doc["faults"][fault]["trials"]]
        ax.scatter([i + (j % 7 - 3) * 0.03 for j in range(len(secs))], secs, s=14, alpha=0.7)
        ax.hlines(doc["faults"][fault]["median"], i - 0.25, i + 0.25, color="black")
    ax.axhline(3.0, color="grey", ls=":", lw=0.8)
    ax.set_xticks(range(len(faults)), [LABELS.get(f, f).replace(" -> ", "\n-> ") for f in faults], fontsize=8)
    ax.set_ylabel("seconds from the fault")
    ax.set_ylim(bottom=0)
    ax.set_title("How fast the maps follow a failure (default timing; line: median; dotted: the 3 s goal)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
