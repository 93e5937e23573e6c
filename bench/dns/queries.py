"""Query mixes for dnsperf, written in its binary input format (`dnsperf -B`: each query
is a 2-byte length and the raw DNS message; dnsperf rewrites only the ID).

The binary format is what lets one dnsperf client carry many client subnets: every
query can hold its own EDNS Client Subnet option, where `-E code:value` would put one
fixed option on every query. Every query has EDNS0 (buffer 1232) and RD=0, as a
resolver's query to an authoritative server has.

Mixes (shuffled with a fixed seed, so every server gets the same sequence):

* `llns`: ~85% `aNNN.g.<base> A` over all serials, ~10% NXDOMAIN (serials not
  configured such as a5000, and names like zzz), ~5% apex SOA/NS of `g.<base>`;
* `tlns`: ~80% `aNNN.g.<base> A` (a referral to the LLNSes), ~10% NXDOMAIN,
  ~6% apex SOA/NS of `<base>`, ~4% A of the nameserver names (n0g.., za..).

Variants: `plain` (no ECS: the client is the dnsperf source address) and `ecs` (each
query carries one of `ECS_SUBNETS` IPv4 /24 subnets, source prefix 24).

dnsperf loops over its file, so a server that remembers whole queries (akacdn's answer
cache is keyed by the query bytes, ECS option included) gets hits from the second pass
on. With 1000 serials x 1024 subnets there are ~1M distinct ECS queries: a 50,000-query
file holds ~50,000 of them, passed over every ~0.5-2 s. `--queries` changes the file
size; a file no server gets through twice in a run measures a cold cache.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

QUERIES_PER_FILE = 50_000
ECS_SUBNETS = 1024
ECS_CODE = 8
OPT = 41
QTYPES = {"A": 1, "NS": 2, "SOA": 6, "AAAA": 28}
VARIANTS = ("plain", "ecs")


def _llns_name(rng: random.Random, base: str, serials: int) -> tuple[str, str]:
    x = rng.random()
    zone = f"g.{base}"
    if x < 0.85:
        return f"a{rng.randint(1, serials)}.{zone}", "A"
    if x < 0.90:
        return f"a{rng.randint(serials + 1, 99999)}.{zone}", "A"  # serial not configured
    if x < 0.95:
        return rng.choice(
            ["zzz", "www", "nope", f"x{rng.randint(1, 9999)}", f"b{rng.randint(1, 999)}"]
        ) + f".{zone}", "A"
    return zone, "SOA" if x < 0.98 else "NS"


def _tlns_name(rng: random.Random, base: str, serials: int) -> tuple[str, str]:
    x = rng.random()
    if x < 0.80:
        return f"a{rng.randint(1, serials)}.g.{base}", "A"
    if x < 0.90:
        return rng.choice(["zzz", "www", "nope", f"x{rng.randint(1, 9999)}", "mail"]) + f".{base}", "A"
    if x < 0.94:
        return base, "NS"
    if x < 0.96:
        return base, "SOA"
    if x < 0.98:
        return f"n{rng.randint(0, 7)}g.{base}", "A"
    return f"z{rng.choice('abcdefgh')}.{base}", "A"


MIXES = {"llns": _llns_name, "tlns": _tlns_name}


def ecs_option(subnet: int) -> bytes:
    """The RFC 7871 option for one /24: code 8, length 7, family 1, source 24, scope 0,
    3 address bytes."""
    return struct.pack("!HHHBB", ECS_CODE, 7, 1, 24, 0) + subnet.to_bytes(3, "big")


def subnets(count: int = ECS_SUBNETS, seed: int = 7) -> list[int]:
    """`count` distinct /24s (as 24-bit numbers) spread over unicast IPv4 space. They are
    only bytes inside the ECS option; no packet is ever sent to them."""
    rng = random.Random(seed)
    out: set[int] = set()
    while len(out) < count:
        first = rng.randint(1, 223)
        if first in (10, 127):
            continue
        out.add(first << 16 | rng.randint(0, 65535))
    return sorted(out)


def query(name: str, qtype: str, ecs: int | None) -> bytes:
    """One query in wire format, ID 0 (dnsperf sets it), no flags (RD=0), EDNS0 with a
    1232-byte buffer and, when given, a client subnet. Packed by hand: dnslib takes ~30 µs
    a query, too slow for files of a million queries."""
    qname = b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.split(".") if label) + b"\0"
    options = ecs_option(ecs) if ecs is not None else b""
    opt = b"\0" + struct.pack("!HHIH", OPT, 1232, 0, len(options)) + options
    return struct.pack("!6H", 0, 0, 1, 0, 0, 1) + qname + struct.pack("!HH", QTYPES[qtype], 1) + opt


def write_mix(path: Path, mix: str, variant: str, base: str, serials: int, count: int = QUERIES_PER_FILE) -> Path:
    rng = random.Random(f"{mix}-{variant}")
    nets = subnets() if variant == "ecs" else None
    pick = MIXES[mix]
    with open(path, "wb") as f:
        for _ in range(count):
            name, qtype = pick(rng, base, serials)
            wire = query(name, qtype, rng.choice(nets) if nets else None)
            f.write(struct.pack("!H", len(wire)) + wire)
    return path


def write_all(directory: Path, base: str, serials: int, count: int = QUERIES_PER_FILE) -> dict[tuple[str, str], Path]:
    """Every (mix, variant) file of `count` queries; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    return {
        (mix, v): write_mix(directory / f"{mix}-{v}.bin", mix, v, base, serials, count)
        for mix in MIXES
        for v in VARIANTS
    }
