"""Which customer a request is for (pure): by Host, a customer hostname or aNNN.g.<base>."""

from __future__ import annotations

from .. import serials
from ..config import Customer, Network
from ..dns.toplevel import MAP_SUBZONE


class CustomerIndex:
    def __init__(self, net: Network) -> None:
        self._by_host: dict[str, tuple[Customer, bool]] = {}  # host -> (customer, is a serial host)
        for c in net.customers:
            for h in c.hostnames:
                self._by_host[h] = (c, False)
            for sub in net.map_subzones or (MAP_SUBZONE,):
                self._by_host[serials.hostname(c.serial, sub, net.base_domain)] = (c, True)

    def lookup(self, host: str | None) -> tuple[Customer, bool] | None:
        """(customer, whether Host is its aNNN serial name) for a Host header value
        (port and trailing dot ignored), or None."""
        if not host:
            return None
        name = host.strip().lower()
        if name.startswith("["):
            return None  # an IPv6 literal is never a customer
        name = name.rsplit(":", 1)[0] if ":" in name else name
        return self._by_host.get(name.rstrip("."))

    def for_host(self, host: str | None) -> Customer | None:
        """The customer for a Host header value (port and trailing dot ignored)."""
        got = self.lookup(host)
        return got[0] if got else None
