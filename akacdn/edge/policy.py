"""Cache policy (pure): may a response be stored, and for how long is it fresh.

The first edge's small policy, kept for its callers; the full RFC 9111 core is
`rfc9111` (storage, freshness, age, reuse, Vary, invalidation, Cache-Status) and
`conditional` (revalidation, client conditionals, Range). Field helpers live in `fields`.

A deliberately small subset of RFC 9111 for the first edge: `no-store` and `private`
are never stored; `s-maxage` beats `max-age`, which beats the customer's default TTL;
only final statuses that are cacheable by default are stored.
"""

from __future__ import annotations

from .fields import HOP_BY_HOP, Headers, cache_control, end_to_end, field

__all__ = ["CACHEABLE_STATUS", "HOP_BY_HOP", "Headers", "cache_control", "end_to_end", "field", "freshness"]

CACHEABLE_STATUS = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})


def _seconds(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    return int(value)


def freshness(status: int, headers: Headers, default_ttl: int) -> int | None:
    """Seconds the response stays fresh, or None when it must not be stored."""
    if status not in CACHEABLE_STATUS:
        return None
    cc = cache_control(field(headers, "cache-control"))
    if "no-store" in cc or "private" in cc:
        return None
    for directive in ("s-maxage", "max-age"):
        got = _seconds(cc.get(directive))
        if got is not None:
            return got
    return default_ttl
