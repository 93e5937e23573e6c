"""Purges (pure): what an operator asks to remove, and which cached keys it covers.

A purge names URLs, a customer, or a serial. It arrives at one edge's management API
(authenticated with the network's purge token), is applied there, and is published on
the messaging topic `purge.request`; the mapping centers journal it and publish it on
`purge`, so every edge applies it, and an edge that was down reads it from the journal
(`purgesync`): one purge reaches the network. Each purge carries an id; an edge applies
an id once (the last `REMEMBER` ids are kept).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from ..config import Customer
from .target import cache_key

REMEMBER = 4096
Key = tuple[str, str]


class Purge(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    kind: Literal["url", "customer", "serial"]
    values: list[str]


class PurgeError(ValueError):
    pass


def url_key(url: str, customer_for_host: Callable[[str | None], Customer | None]) -> Key:
    """The cache key of an absolute URL, as the edge stores it: (customer, path?query)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PurgeError(f"not an absolute http(s) URL: {url!r}")
    customer = customer_for_host(parts.netloc)
    if customer is None:
        raise PurgeError(f"no customer is configured for host {parts.netloc!r}")
    path = parts.path or "/"
    return customer.name, path + (f"?{parts.query}" if parts.query else "")


def selector(
    purge: Purge,
    customers: list[Customer],
    customer_for_host: Callable[[str | None], Customer | None],
) -> Callable[[Key], bool]:
    """A predicate over cache keys for one purge; PurgeError when it names nothing we know."""
    if purge.kind == "url":  # the URL as fetched over http and over https (`target.cache_key`)
        keys = {url_key(u, customer_for_host) for u in purge.values}
        keys |= {cache_key(c, t, "https") for c, t in keys}
        return keys.__contains__
    if purge.kind == "customer":
        names = set(purge.values)
        unknown = names - {c.name for c in customers}
        if unknown:
            raise PurgeError(f"unknown customers {sorted(unknown)}")
        return lambda key: key[0] in names
    try:
        serials = {int(v) for v in purge.values}
    except ValueError:
        raise PurgeError("serials must be numbers") from None
    names = {c.name for c in customers if c.serial in serials}
    if not names:
        raise PurgeError(f"no customer has serial(s) {sorted(serials)}")
    return lambda key: key[0] in names


class Seen:
    """Purge ids already applied (bounded)."""

    def __init__(self) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()

    def first_time(self, purge_id: str) -> bool:
        if purge_id in self._ids:
            return False
        self._ids[purge_id] = None
        if len(self._ids) > REMEMBER:
            self._ids.popitem(last=False)
        return True
