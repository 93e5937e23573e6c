"""Client routes (pure): longest-prefix match of a client address over the client networks.

`PrefixTable` maps prefixes to anything (the LLNS: a network's `Route`; an edge: the
network's own prefix, to count demand per client network); `ClientRoutes` is the TLNS's
view, client network -> its best region.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Generic, TypeVar

from .maps import ClientRoute

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
T = TypeVar("T")


class PrefixTable(Generic[T]):
    """Longest-prefix match of an address: one dict per prefix length, longest first (a
    deployment has a handful of lengths, so a lookup is a few masks and dict probes)."""

    def __init__(self, entries: Iterable[tuple[str, T]]) -> None:
        # per family: prefix length -> {network as int: value}, longest first
        self._tables: dict[int, list[tuple[int, int, dict[int, T]]]] = {4: [], 6: []}
        by_len: dict[tuple[int, int], dict[int, T]] = {}
        for prefix, value in entries:
            net = ipaddress.ip_network(prefix, strict=False)
            by_len.setdefault((net.version, net.prefixlen), {})[int(net.network_address)] = value
        for (version, plen), table in sorted(by_len.items(), key=lambda kv: -kv[0][1]):
            bits = 32 if version == 4 else 128
            mask = ((1 << plen) - 1) << (bits - plen) if plen else 0
            self._tables[version].append((plen, mask, table))
        self.empty = not by_len

    def lookup(self, addr: IPAddress) -> tuple[T | None, int]:
        """(value, matched prefix length), or (None, 0) when no prefix covers addr."""
        value = int(addr)
        for plen, mask, table in self._tables[addr.version]:
            got = table.get(value & mask)
            if got is not None:
                return got, plen
        return None, 0


class ClientRoutes(PrefixTable[str]):
    """Client network -> the region that serves it best."""

    def __init__(self, routes: Iterable[ClientRoute]) -> None:
        super().__init__((r.prefix, r.region) for r in routes)

    def region_for(self, addr: IPAddress) -> tuple[str | None, int]:
        """(region, matched prefix length), or (None, 0) when no route covers addr."""
        return self.lookup(addr)
