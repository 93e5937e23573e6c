"""Fault injection, for labs and tests only (`[faults] enabled = true` in the network
file; otherwise a customer with `faults` is refused at load, and no daemon builds an
`Injector`, so the serving code paths carry nothing of it).

A customer's `faults` name where (`edge`: requests whose path matches the glob; `dns`:
any query for the serial's aNNN name on an LLNS) and what: `crash` raises in the middle
of the work (the daemon rolls, or fails that one request in the in-place mode), `hang`
blocks the daemon's event loop for `[faults] hang_seconds` (the stall watchdog rolls
it), `wrong` answers wrongly (a body or an address that is not the customer's).
"""

from __future__ import annotations

import re
import time

from ..config import Network, glob_regex

WRONG_ADDRESS = "192.0.2.66"  # TEST-NET-1: what a "wrong" DNS fault answers
WRONG_BODY = b"akacdn fault injection: a wrong answer\n"


class InjectedFault(RuntimeError):
    """The fault a customer's `faults` asked for (labs and tests)."""


class Injector:
    def __init__(self, net: Network) -> None:
        self.hang_seconds = net.faults.hang_seconds
        self.edge: dict[int, list[tuple[str, re.Pattern[str]]]] = {}
        self.dns: dict[int, str] = {}
        for c in net.customers:
            for f in c.faults:
                if f.on == "edge":
                    self.edge.setdefault(c.serial, []).append((f.kind, glob_regex(f.path)))
                else:
                    self.dns[c.serial] = f.kind

    @staticmethod
    def build(net: Network) -> Injector | None:
        """An injector when the network enables faults and a customer has some."""
        if not net.faults.enabled or not any(c.faults for c in net.customers):
            return None
        return Injector(net)

    def at_edge(self, serial: int, path: str) -> str | None:
        """The fault a request for `path` of `serial` meets: None, or "wrong" (the caller
        answers wrongly); a crash raises, a hang blocks here."""
        for kind, pattern in self.edge.get(serial, ()):
            if pattern.fullmatch(path):
                return self._act(kind, f"edge request {path}")
        return None

    def at_dns(self, serial: int) -> str | None:
        kind = self.dns.get(serial)
        return self._act(kind, f"query for serial {serial}") if kind else None

    def _act(self, kind: str, what: str) -> str | None:
        if kind == "crash":
            raise InjectedFault(f"injected crash: {what}")
        if kind == "hang":
            time.sleep(self.hang_seconds)  # blocks the whole daemon, as a real hang does
            return None
        return kind
