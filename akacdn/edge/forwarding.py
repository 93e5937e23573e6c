"""How the edge forwards a request to an origin, as a proxy does (pure).

Theory of operation. The edge is an intermediary (RFC 9110 7.6): what it passes to the
origin is the client's request minus what belonged to the client's connection, plus
what tells the origin who asked and through whom.

* Connection-specific fields go: the hop-by-hop set (`fields.HOP_BY_HOP`) and every field
  the client's `Connection` names (RFC 9110 7.6.1). `Expect` goes too (the edge answered
  100-continue itself), and for GET/HEAD `Range`/`If-Range` (the edge fetches whole
  objects and cuts ranges from them itself).
* `Host` is the origin's. `Via` gets the edge's own line after the client's (7.6.3).
* Who asked: `X-Forwarded-For` and `Forwarded` (RFC 7239) keep what the client sent and
  get the client's address appended (the origin decides which hops it trusts; a
  malformed client chain is cleaned or dropped so it cannot hide the edge's entry);
  `X-Forwarded-Proto`/`X-Forwarded-Host` are the edge's alone (a client's own would be
  a spoof an origin might believe: a redirect loop, or a poisoned absolute URL).
* `Max-Forwards` counts down for OPTIONS and TRACE (7.6.2); at 0 the caller answers
  itself (`max_forwards_exhausted`).
* The customer's header rules run last, so an operator can undo any of the above.

Nothing here raises on what a client or origin sent: a value the edge cannot write
safely (quotes, control characters) is left out of what the edge composes. Names of
lines passed on keep the case they arrived in.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from ..config import HeaderRule
from .fields import HOP_BY_HOP, field, first, split_list

Fields = list[tuple[str, str]]

# the fields the edge adds to (or sets on) every request to an origin
EDGE_ADDED_REQUEST = ("Via", "X-Forwarded-For", "Forwarded", "X-Forwarded-Proto", "X-Forwarded-Host")

_CLIENT_OWNED = frozenset({"host", "expect", "x-forwarded-proto", "x-forwarded-host"})
_APPENDED = frozenset({"x-forwarded-for", "forwarded"})  # the client's value kept, the edge's appended
_WHOLE_OBJECT = frozenset({"range", "if-range"})
_TCHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN = re.compile(_TCHARS)
_QDTEXT = re.compile(r"[\t !#-\[\]-~]*")  # a quoted-string's content without escapes (no '"' or '\')
_VCHARS = re.compile(r"[\t -~]*")  # visible ASCII, space and tab: a field value that cannot break a line
_OBFNODE = re.compile(r"_[A-Za-z0-9._-]+")  # RFC 7239 6.3 obfuscated identifier
_PAIR = rf"""{_TCHARS}=(?:{_TCHARS}|"(?:[\t !#-\[\]-~]|\\[\t -~])*")"""  # token=token / quoted-string
_ELEMENT = re.compile(rf"(?:{_PAIR})?(?:[ \t]*;[ \t]*(?:{_PAIR})?)*")  # RFC 7239 4 (OWS around ";" tolerated)
_XFF_ITEM = re.compile(r"[!#-~]+")  # visible ASCII but '"': an address, a name, `unknown`
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")  # RFC 3986 3.1, what proto= carries (RFC 7239 5.4)
_COUNTED = ("OPTIONS", "TRACE")  # methods whose Max-Forwards counts down (RFC 9110 7.6.2)


def apply_rules(fields: Fields, rules: Sequence[HeaderRule]) -> Fields:
    """The fields after a customer's header rules, in order: `add` appends a line, `set`
    drops every line of the name (case-insensitive) and appends one, `remove` drops them."""
    out = list(fields)
    for rule in rules:
        name = rule.name.lower()
        if rule.action != "add":
            out = [(k, v) for k, v in out if k.lower() != name]
        if rule.action != "remove":
            out.append((rule.name, rule.value))
    return out


def response_fields(fields: Fields, rules: Sequence[HeaderRule]) -> Fields:
    """A response's fields after the customer's response rules (same semantics as requests)."""
    return apply_rules(fields, rules)


def _param(value: str) -> str | None:
    """A Forwarded parameter value as a token, or a quoted-string; None if it cannot be written."""
    if _TOKEN.fullmatch(value):
        return value
    if value and _QDTEXT.fullmatch(value):
        return f'"{value}"'
    return None


def _address(client_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's address, IPv4-mapped ones as IPv4, an IPv6 zone left out (it means
    nothing past this host); None when it is not an address."""
    text = client_ip.strip().removeprefix("[").removesuffix("]").partition("%")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
    return ip


def _node(client_ip: str) -> str:
    """The client as an RFC 7239 node name, bare: a canonical address, an obfuscated
    identifier (`_hidden`), or `unknown` (RFC 7239 6.2) for anything else."""
    ip = _address(client_ip)
    if ip is not None:
        return str(ip)
    client_ip = client_ip.strip()
    return client_ip if _OBFNODE.fullmatch(client_ip) else "unknown"


def forwarded_element(client_ip: str, proto: str, host: str | None) -> str:
    """One RFC 7239 forwarded-element: `for=<node>;proto=<scheme>;host=<host>`.

    An IPv6 node is bracketed and quoted (`for="[2001:db8::1]"`), a client that is not an
    address is `for=unknown`; `proto=` only when it is a URI scheme; `host=` only when given,
    quoted when it is not a token (`host="example.com:8080"`), and left out when it cannot
    be a quoted-string without escapes (quotes, backslashes, control or non-ASCII)."""
    ip = _address(client_ip)
    node = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else _node(client_ip)
    parts = [f"for={_param(node)}"]
    proto = proto.strip()
    if _SCHEME.fullmatch(proto):
        parts.append(f"proto={proto}")
    written = _param((host or "").strip())
    if written is not None:
        parts.append(f"host={written}")
    return ";".join(parts)


def _count(value: str | None) -> int | None:
    """A Max-Forwards value (1*DIGIT); None when absent or malformed (huge values stay huge)."""
    if value is None:
        return None
    value = value.strip()
    if not value or not value.isascii() or not value.isdigit():
        return None
    digits = value.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else 10**18


def max_forwards_exhausted(method: str, fields: Fields) -> bool:
    """Whether the edge must answer an OPTIONS or TRACE itself: Max-Forwards is 0."""
    return method in _COUNTED and _count(first(fields, "max-forwards")) == 0


def _client_chain(lines: Fields, named: set[str]) -> tuple[list[str], list[str]]:
    """The client's X-Forwarded-For items and Forwarded elements, as the edge passes them
    on: XFF split on commas (an item with quotes or spaces reads `unknown`); Forwarded
    only when every element is well-formed (else dropped whole: an unbalanced quote would
    swallow the element the edge appends)."""
    xff: list[str] = []
    if "x-forwarded-for" not in named:
        items = (i.strip() for i in field(lines, "x-forwarded-for").split(","))
        xff = [i if _XFF_ITEM.fullmatch(i) else "unknown" for i in items if i]
    forwarded = [] if "forwarded" in named else split_list(field(lines, "forwarded"))
    if not all(_ELEMENT.fullmatch(e) for e in forwarded):
        forwarded = []
    return xff, forwarded


def _safe(value: str) -> bool:
    """Printable ASCII (and tab) only: nothing that could end or fold a field line."""
    return bool(_VCHARS.fullmatch(value))


def origin_request_fields(
    client_fields: Fields,
    *,
    method: str,
    client_ip: str,
    proto: str,
    client_host: str | None,
    origin_host: str,
    via: str,
    rules: Sequence[HeaderRule] = (),
) -> Fields:
    """The request fields the edge sends to the origin for a client's request.

    `Host: origin_host` first; then the client's end-to-end fields in order (see the
    module docstring for what is dropped), Max-Forwards counted down for OPTIONS/TRACE;
    then the edge's `Via`, `X-Forwarded-For` and `Forwarded` (the client's values with the
    client appended), `X-Forwarded-Proto`, `X-Forwarded-Host` (when `client_host` is given
    and writable); and the customer's `rules` last."""
    lines = list(client_fields)
    named = {n.strip().lower() for n in field(lines, "connection").split(",")}
    drop = HOP_BY_HOP | named | _CLIENT_OWNED | _APPENDED
    if method in ("GET", "HEAD"):
        drop |= _WHOLE_OBJECT
    hops = _count(first(lines, "max-forwards")) if method in _COUNTED else None
    out: Fields = [("Host", origin_host)]
    counted = False
    for name, value in lines:
        low = name.lower()
        if low in drop:
            continue
        if low == "max-forwards" and hops:
            if counted:
                continue  # one counted-down line replaces every line of it
            value, counted = str(hops - 1), True
        out.append((name, value))

    out.append(("Via", via))
    forwarded_for, forwarded = _client_chain(lines, named)
    out.append(("X-Forwarded-For", ", ".join([*forwarded_for, _node(client_ip)])))
    out.append(("Forwarded", ", ".join([*forwarded, forwarded_element(client_ip, proto, client_host)])))
    if _SCHEME.fullmatch(proto):
        out.append(("X-Forwarded-Proto", proto))
    if client_host and _safe(client_host):
        out.append(("X-Forwarded-Host", client_host))
    return apply_rules(out, rules)
