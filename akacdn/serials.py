"""The serial hostname rule, in one place (pure, a leaf: imports nothing of akacdn).

A customer's content bucket (its serial, 1 .. 999999) has the edge hostname
`a<serial>.<subzone>.<base domain>` (`a123.g.akacdn.test`): what customers CNAME to, what
the low-level nameservers answer with edges, what the edges recognise in `Host`, what
ARLs point at. The label is `a` and the serial's digits without leading zeros.
"""

from __future__ import annotations

MAX_SERIAL = 999_999


def label(serial: int) -> str:
    """The first label of a serial's hostname: `a123`."""
    return f"a{serial}"


def hostname(serial: int, subzone: str, base_domain: str) -> str:
    """A serial's edge hostname: `a123.g.akacdn.test`."""
    return f"a{serial}.{subzone}.{base_domain}"


def serial_of_label(first: bytes) -> int:
    """The serial a hostname's first label names (`a123`, either case), 0 when it names
    none (not `a` + 1 to 6 digits without a leading zero)."""
    if first[:1] in (b"a", b"A") and first[1:].isdigit() and first[1:2] != b"0" and len(first) <= 7:
        return int(first[1:])
    return 0


def is_serial_host(name: str, serial: int) -> bool:
    """Whether a (lower-case) hostname is one of `serial`'s, whatever its subzone and base."""
    return name.startswith(label(serial) + ".")
