"""Who serves whom (pure): servers for a serial, nameservers for a resolver.

Both use weighted rendezvous hashing (highest random weight): every candidate gets a
score from a hash of (key, candidate), the top scores win. Removing a candidate only
moves the keys it held, so while two servers live a serial keeps them (seed example:
A hosts X,Y; B hosts Y,Z; C hosts Z,X), and losing one server never disconnects a
customer.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import TypeVar

from .maps import NameServer, Server

T = TypeVar("T")
_SCALE = float(2**64)


def _unit(key: str) -> float:
    """A uniform value in (0, 1) from a stable hash of key."""
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    return (h + 0.5) / _SCALE


def score(key: str, candidate: str, weight: float = 1.0) -> float:
    """Weighted rendezvous score: the largest wins; weight scales a candidate's share."""
    return -weight / math.log(_unit(f"{key}|{candidate}"))


def servers_for_serial(serial: int, servers: Sequence[Server], n: int = 2) -> list[Server]:
    """The `n` servers that carry `serial` among the given live servers."""
    ranked = sorted(servers, key=lambda s: score(str(serial), s.machine, s.capacity), reverse=True)
    return ranked[:n]


def nameservers_for_client(
    client: str,
    nameservers: Sequence[NameServer],
    slots: int = 8,
    regions: int = 3,
    preferred: str | None = None,
    *,
    networks: Mapping[str, str] | None = None,
    min_networks: int = 2,
) -> list[NameServer]:
    """`slots` LLNS entries from `regions` regions (or fewer when fewer have a live LLNS)
    for one client bucket.

    The `preferred` region (the client's route) comes first when it has a live LLNS;
    the other regions are ranked per client. The slots are dealt round-robin over the
    chosen regions' nameservers, so an answer names several regions (and may repeat
    an address, as the 2000 dig study saw of Akamai's n0g..n8g).

    Shared fate: given `networks` (region id -> the network / ISP it sits in; "" or
    missing: unknown, which counts as no network of its own), the chosen regions span at
    least `min_networks` distinct networks when the nameservers' regions offer that many.
    The regions are taken greedily in rank order, except that while fewer than
    `min_networks` networks are covered, the next one is the best-ranked region of a
    network not yet covered (if any is left); at least `regions` regions are taken when
    that many exist (more when `min_networks` > `regions`). Without `networks` the
    choice is the first `regions` regions of the ranking.
    """
    by_region: dict[str, list[NameServer]] = {}
    for ns in nameservers:
        by_region.setdefault(ns.region, []).append(ns)
    if not by_region:
        return []
    ranked = sorted(by_region, key=lambda r: (r != preferred, -score(client, r)))
    chosen = ranked[:regions] if networks is None else _spread(ranked, regions, preferred, networks, min_networks)
    lists = [sorted(by_region[r], key=lambda ns: score(client, ns.machine), reverse=True) for r in chosen]
    out: list[NameServer] = []
    i = 0
    while len(out) < slots:
        lst = lists[i % len(lists)]
        out.append(lst[(i // len(lists)) % len(lst)])
        i += 1
    return out


def _spread(
    ranked: Sequence[str], regions: int, preferred: str | None, networks: Mapping[str, str], min_networks: int
) -> list[str]:
    """At least `regions` of the `ranked` regions, the preferred one first, covering
    `min_networks` known networks when they exist: while short of networks, the next is
    the best-ranked region of a network not yet covered."""
    left = list(ranked)
    chosen: list[str] = []
    covered: set[str] = set()
    while left:
        pick = None
        if not chosen and left[0] == preferred:
            pick = preferred
        elif len(covered) < min_networks:
            pick = next((r for r in left if networks.get(r, "") and networks[r] not in covered), None)
        if pick is None:
            if len(chosen) >= regions:
                break
            pick = left[0]
        chosen.append(pick)
        left.remove(pick)
        if networks.get(pick, ""):
            covered.add(networks[pick])
    return chosen


def client_bucket(address: str) -> str:
    """The unit of mapping for a resolver: its /24 (IPv4) or /56 (IPv6)."""
    if ":" in address:
        import ipaddress

        net = ipaddress.ip_network(f"{address}/56", strict=False)
        return str(net.network_address)
    return address.rsplit(".", 1)[0]
