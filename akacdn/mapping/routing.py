"""Client routes (pure): which region serves a client network best, by longest prefix."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from .maps import ClientRoute

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ClientRoutes:
    """Longest-prefix match of an address against the map's client routes."""

    def __init__(self, routes: Iterable[ClientRoute]) -> None:
        # per family: prefix length -> {network as int: region}, longest first
        self._tables: dict[int, list[tuple[int, int, dict[int, str]]]] = {4: [], 6: []}
        by_len: dict[tuple[int, int], dict[int, str]] = {}
        for r in routes:
            net = ipaddress.ip_network(r.prefix, strict=False)
            by_len.setdefault((net.version, net.prefixlen), {})[int(net.network_address)] = r.region
        for (version, plen), table in sorted(by_len.items(), key=lambda kv: -kv[0][1]):
            bits = 32 if version == 4 else 128
            mask = ((1 << plen) - 1) << (bits - plen) if plen else 0
            self._tables[version].append((plen, mask, table))
        self.empty = not by_len

    def region_for(self, addr: IPAddress) -> tuple[str | None, int]:
        """(region, matched prefix length), or (None, 0) when no route covers addr."""
        value = int(addr)
        for plen, mask, table in self._tables[addr.version]:
            region = table.get(value & mask)
            if region is not None:
                return region, plen
        return None, 0
