"""`akacdn status` as text: the leader, the centers, regions, machines, nameservers' maps,
suspensions (the JSON is `mapping.operator.status_doc`)."""

from __future__ import annotations

import time
from typing import Any


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _version(v: list[int] | None) -> str:
    return f"{v[0]}.{v[1]}" if v else "-"


def render(doc: dict[str, Any]) -> str:
    out = []
    leader = doc.get("leader")
    out.append(f"leader: {leader} (term {doc.get('term')})" if leader else "leader: none (no center leads now)")
    centers = [
        ["center", "alive", "connectivity", "role"],
        *[
            [c["id"], "yes" if c["alive"] else "no", "-" if c["score"] is None else f"{c['score']:.2f}",
             f"leads, term {c['term']}" if c["leads"] else "follows"]
            for c in doc["centers"]
        ],
    ]  # fmt: skip
    out += _table(centers)
    published = ", ".join(f"{k} {_version(v)}" for k, v in sorted(doc.get("published", {}).items()))
    out.append(f"maps published: {published or '-'}" + (f"  answered by {doc['center']}" if doc.get("center") else ""))
    for k, why in doc.get("held", {}).items():
        out.append(f"HELD: {k} map not published: {why}")
    out.append("regions:")
    out += _table(
        [["region", "state", "live edges"]]
        + [
            [
                r["id"],
                "suspended" if r["suspended"] else "serving" if r["serving"] else "NOT SERVING",
                str(r["live_edges"]),
            ]
            for r in doc["regions"]
        ]  # fmt: skip
    )
    out.append("machines:")
    out += _table(
        [["machine", "role", "region", "state", "heard", "bundle", "why"]]
        + [
            [
                m["id"],
                m["role"],
                m["region"] or "-",
                m["state"],
                "-" if m["heard_ago"] is None else f"{m['heard_ago']:.1f}s ago",
                (m.get("bundle") or "files")[:8] if m.get("bundle") is not None else "-",
                m["reason"],
            ]
            for m in doc["machines"]
        ]  # fmt: skip
    )
    if doc.get("nameservers"):
        out.append("nameservers' maps (version, age):")
        out += _table(
            [["nameserver", "maps"]]
            + [
                [
                    n["id"],
                    ", ".join(f"{k} {_version(v['version'])} ({v['age']:.0f}s)" for k, v in sorted(n["maps"].items()))
                    or "none",
                ]
                for n in doc["nameservers"]
            ]  # fmt: skip
        )
    sus = doc.get("suspensions", [])
    out.append("suspensions:" + ("" if sus else " none"))
    for s in sus:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s["at"]))
        out.append(f"  {s['kind']} {s['id']}: {s['reason']} (since {since})")
    from .recovery import render_recovery, render_release

    out.append(render_recovery(doc))
    out.append(render_release(doc))
    return "\n".join(out)
