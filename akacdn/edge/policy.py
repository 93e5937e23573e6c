"""Cache policy (pure): may a response be stored, and for how long is it fresh.

A deliberately small subset of RFC 9111 for the first edge: `no-store` and `private`
are never stored; `s-maxage` beats `max-age`, which beats the customer's default TTL;
only final statuses that are cacheable by default are stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Headers = Mapping[str, str] | Iterable[tuple[str, str]]

CACHEABLE_STATUS = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


def cache_control(value: str) -> dict[str, str]:
    """Parse a Cache-Control header into {directive: argument}."""
    out: dict[str, str] = {}
    for part in value.split(","):
        name, _, arg = part.strip().partition("=")
        if name:
            out[name.lower()] = arg.strip().strip('"')
    return out


def _pairs(headers: Headers) -> Iterable[tuple[str, str]]:
    return headers.items() if isinstance(headers, Mapping) else headers


def field(headers: Headers, name: str) -> str:
    """All lines of one header field as one list value (RFC 9110 5.3), name case-insensitive."""
    name = name.lower()
    return ", ".join(v for k, v in _pairs(headers) if k.lower() == name)


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


def end_to_end(headers: Headers) -> list[tuple[str, str]]:
    """The headers a proxy passes on: everything but hop-by-hop ones (RFC 9110 7.6.1)."""
    pairs = list(_pairs(headers))
    named = {h.strip().lower() for h in field(pairs, "connection").split(",")}
    return [(k, v) for k, v in pairs if k.lower() not in HOP_BY_HOP and k.lower() not in named]
