"""Seed maps: the maps a mapping center would publish if every machine were live,
written as each nameserver's last known good map.

For benchmarks and labs that run nameservers alone (no relays, no mapping center, no
edges): `write_seed_maps(net, key_file)` signs with the given mapping center's key.
"""

from __future__ import annotations

import time

from ..config import Network
from ..runtime import atomic_write
from .builder import MapBook, build
from .center import load_private_key
from .maps import AnyMap, sign
from .messages import Heartbeat


def seed_maps(net: Network, term: int = 1) -> list[AnyMap]:
    live = {m.id: Heartbeat(m.id, m.role, m.region) for m in net.machines if m.role in ("edge", "llns")}
    top, lows = build(net, live, time.time())
    book = MapBook(term)
    return book.update(([top] if top else []) + list(lows))


def write_seed_maps(net: Network, mapper_id: str | None = None, term: int = 1) -> int:
    """Write every TLNS's and LLNS's last-known-good map file; returns how many were written."""
    mapper = net.machine(mapper_id) if mapper_id else net.by_role("mapper")[0]
    key = load_private_key(mapper.key_file)
    maps = {m.key: sign(key, mapper.id, m) for m in seed_maps(net, term)}
    written = 0
    for m in net.machines:
        want = "top" if m.role == "tlns" else "low" if m.role == "llns" else None
        if want and want in maps:
            atomic_write(net.state_path(m.id) / f"lkg-{want}.map", maps[want])
            written += 1
    return written
