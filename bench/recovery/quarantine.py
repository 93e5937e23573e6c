"""Part 2: from the first crash to quarantine.

Each trial sends the request of death (`GET /death`, Host www.death.example) to the two
edges r1's LLNS answers for the death serial; both crash (the supervisor restarts them,
and each reports its crash record, naming the serial, when it is back). The time runs
from the first request until (a) the leading center's /v1/status lists the serial under
`quarantines`, and (b) every LLNS answers only addresses of the quarantine's servers for
it. Between trials the quarantine is lifted (`akacdn quarantine lift`) and the next
trial waits until both carriers are live again and r1's LLNS answers them again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from akacdn.devnet.supervisor import Devnet

from . import net

TIMEOUT = 60.0


def carriers(dn: Devnet) -> list[str]:
    """The edges r1's LLNS answers for the death serial (two when r1 is whole)."""
    answers = net.dns_answers(dn.net.machine("r1-llns").address, net.low_name(net.DEATH_SERIAL), timeout=0.5)
    return sorted(net.machine_at(dn, a) for a in answers or [])


def clean(dn: Devnet, say: Callable[[str], None]) -> list[str]:
    """Lift the serial's quarantine if there is one; wait until every edge is live and r1's
    LLNS answers two of them for the serial again. Returns those two."""
    if net.quarantine_of(net.status(dn)):
        net.lift(dn)
    edges = [m.id for m in dn.net.by_role("edge")]

    def whole() -> list[str] | None:
        doc = net.status(dn)
        if doc is None or net.quarantine_of(doc):
            return None
        live = net.states(doc)
        if any(live.get(e) != "live" for e in edges):
            return None
        got = carriers(dn)
        return got if len(got) == 2 and all(m.startswith("r1-") for m in got) else None

    return net.wait("every edge live and r1's LLNS answering two r1 edges for the serial", whole, TIMEOUT, 0.2)  # type: ignore[no-any-return]


def allowed_only(dn: Devnet, servers: list[str]) -> bool:
    """Every LLNS answers for the serial, and only with the quarantine's servers."""
    allowed = {dn.net.machine(m).address for m in servers}
    for m in dn.net.by_role("llns"):
        got = net.dns_answers(m.address, net.low_name(net.DEATH_SERIAL), timeout=0.3)
        if not got or not set(got) <= allowed:
            return False
    return True


def trial(dn: Devnet, say: Callable[[str], None]) -> dict[str, Any]:
    hit = clean(dn, say)
    time.sleep(0.5)
    t0 = time.monotonic()
    codes = [net.edge_status(dn.net.machine(m).address, net.DEATH_HOST, "/death", timeout=5.0) for m in hit]
    listed = net.until(lambda: net.quarantine_of(net.status(dn)) is not None, t0, TIMEOUT, idle=0.05)
    q = net.quarantine_of(net.status(dn)) or {}
    servers = list(q.get("servers", []))
    confined = net.until(lambda: allowed_only(dn, servers), t0, TIMEOUT, idle=0.05) if servers else float("nan")
    return {"listed": listed, "confined": confined, "hit": hit, "codes": codes, "servers": servers}


def run(dn: Devnet, trials: int, say: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    for i in range(trials):
        row = trial(dn, say)
        rows.append(row)
        say(
            f"quarantine {i + 1}/{trials}: hit {','.join(row['hit'])} (codes {row['codes']}); listed after "
            f"{row['listed']:.2f} s, LLNSes confined to {','.join(row['servers'])} after {row['confined']:.2f} s"
        )
    clean(dn, say)
    return rows
