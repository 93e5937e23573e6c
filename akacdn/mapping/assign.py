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
from collections.abc import Sequence
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
) -> list[NameServer]:
    """`slots` LLNS entries from up to `regions` regions for one client bucket.

    The `preferred` region (the client's route) comes first when it has a live LLNS;
    the other regions are ranked per client. The slots are dealt round-robin over the
    chosen regions' nameservers, so an answer names several regions (and may repeat
    an address, as the 2000 dig study saw of Akamai's n0g..n8g).
    """
    by_region: dict[str, list[NameServer]] = {}
    for ns in nameservers:
        by_region.setdefault(ns.region, []).append(ns)
    if not by_region:
        return []
    ranked = sorted(by_region, key=lambda r: (r != preferred, -score(client, r)))
    chosen = ranked[:regions]
    lists = [sorted(by_region[r], key=lambda ns: score(client, ns.machine), reverse=True) for r in chosen]
    out: list[NameServer] = []
    i = 0
    while len(out) < slots:
        lst = lists[i % len(lists)]
        out.append(lst[(i // len(lists)) % len(lst)])
        i += 1
    return out


def client_bucket(address: str) -> str:
    """The unit of mapping for a resolver: its /24 (IPv4) or /56 (IPv6)."""
    if ":" in address:
        import ipaddress

        net = ipaddress.ip_network(f"{address}/56", strict=False)
        return str(net.network_address)
    return address.rsplit(".", 1)[0]
