"""A messaging-only network: relays in regions, one publisher, subscribers. Written as
an ordinary network.toml (the validator wants a TLNS and a mapping center: the
publisher is the mapping center's machine, the TLNS is never started), so relays run
as `akacdn relay` and the nodes (`bench.messaging.node`) load it like any daemon.

Used by the in-process loopback test, the namespace lab test and `bench/messaging`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PUBLISHER = "pub"
TOPIC = "map.bench"  # a recovering topic (the `map` deadline)


@dataclass
class Layout:
    """Addresses: relay id -> (region, address); the publisher's; subscriber id -> address."""

    relays: dict[str, tuple[str, str]]
    publisher: str
    subscribers: dict[str, str]
    tlns: str = "198.18.255.254"
    messaging: dict[str, Any] = field(default_factory=dict)  # [messaging] overrides
    ports: dict[str, int] = field(default_factory=dict)  # [ports] overrides

    @property
    def regions(self) -> list[str]:
        return sorted({r for r, _ in self.relays.values()} | {"r0"})


def write_config(directory: Path, lay: Layout, message_key: str | None = None) -> Path:
    """network.toml + an empty customers.toml under `directory`; returns the network file."""
    directory.mkdir(parents=True, exist_ok=True)
    pub = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    machines: list[dict[str, object]] = [{"id": "tlns1", "role": "tlns", "address": lay.tlns}]
    machines.append({"id": PUBLISHER, "role": "mapper", "address": lay.publisher, "public_key": pub})
    for rid, (region, address) in lay.relays.items():
        machines.append({"id": rid, "role": "relay", "region": region, "address": address})
    for sid, address in lay.subscribers.items():
        machines.append({"id": sid, "role": "edge", "region": "r0", "address": address})
    network = {
        "base_domain": "akacdn.test",
        "state_dir": "state",
        "keys": {"message_key": message_key or secrets.token_hex(32)},
        "ports": {"messaging": 7400, "management": 9400, **lay.ports},
        "timing": {"heartbeat_interval": 1.0, "dead_after": 3.0, "map_interval": 1.0, "subscribe_interval": 0.5},
        "messaging": lay.messaging,
        "regions": [{"id": r} for r in lay.regions],
        "machines": machines,
    }
    (directory / "customers.toml").write_text("")
    path = directory / "network.toml"
    path.write_text(tomli_w.dumps(network))
    return path
