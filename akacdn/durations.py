"""TTL text as operators and ARLs write it (pure, a leaf): `30s`, `5m`, `12h`, `7d` or plain
seconds, 0 .. 365 days. The config (`arl_ttl`) and the ARL parser read it here."""

from __future__ import annotations

import re

MAX_TTL = 365 * 86400
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_TTL = re.compile(r"(0|[1-9][0-9]{0,8})([smhd]?)\Z")


class TTLError(ValueError):
    """A TTL text that is not one; the message names what is wrong."""


def parse_ttl(text: str | int) -> int:
    """Seconds from `30s`, `5m`, `12h`, `7d` or plain seconds (`90`, or an int)."""
    if isinstance(text, bool):
        raise TTLError(f"bad TTL {text!r}")
    if isinstance(text, int):
        seconds = text
    else:
        m = _TTL.match(text)
        if not m:
            raise TTLError(f"bad TTL {text!r}: want digits and an optional unit s, m, h or d (e.g. 12h)")
        seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if not 0 <= seconds <= MAX_TTL:
        raise TTLError(f"TTL {text!r} out of range (0 to 365d)")
    return seconds


def format_ttl(seconds: int) -> str:
    """The canonical (shortest exact) form of a TTL: 86400 -> `1d`, 90 -> `90s`."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
