"""`akacdn mapping` as text (the JSON is `mapping.steering.Steering.doc`)."""

from __future__ import annotations

from typing import Any

from .status import _table


def _route(r: dict[str, Any]) -> str:
    if r["weights"]:
        return ", ".join(f"{g} {w:.0%}" for g, w in zip(r["regions"], r["weights"], strict=False) if w > 0)
    return " > ".join(r["regions"])


def render(doc: dict[str, Any]) -> str:
    out = [f"answered by {doc.get('center', '?')}; next allocation in {doc['assign_in']:.1f}s", "regions:"]
    rows = [["region", "state", "load rps", "capacity rps", "load/capacity"]]
    for g in doc["regions"]:
        cap = g["capacity"]
        ratio = f"{g['load'] / cap:.0%}" if cap else "-"
        rows.append([g["id"], "serving" if g["serving"] else "NOT SERVING", f"{g['load']:.1f}",
                     "unmanaged" if cap is None else f"{cap:.0f}", ratio])  # fmt: skip
    out += _table(rows)
    out.append("client networks:")
    routes = doc["routes"]
    if routes:
        out += _table([["network", "assigned", "route (ranked; weights while a move ramps)"]]
                      + [[r["prefix"], r["assigned"] or "-", _route(r)] for r in routes])  # fmt: skip
    else:
        out.append("  (none routed: every LLNS answers from its region's default order)")
    if "paths" in doc:
        out.append(f"measured paths (demand {doc['demand']:.1f} rps):")
        paths = [["region", "rtt ms", "loss"]]
        paths += [[g, f"{p['rtt_ms']:.1f}", f"{p['loss']:.1%}"] for g, p in doc["paths"].items()]
        out += _table(paths) if len(paths) > 1 else ["  (none fresh)"]
    moves = doc["moves"]
    out.append("moves in the last cycle:" + ("" if moves else " none"))
    if moves:
        rows = [["network", "from", "to", "why"]] + [[m["prefix"], m["src"] or "-", m["dst"], m["why"]] for m in moves]
        out += _table(rows)
    return "\n".join(out)
