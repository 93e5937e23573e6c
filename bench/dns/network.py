"""The benchmark's akacdn network: 1 mapping center, 1 relay, 1 TLNS, 3 regions of
1 LLNS + 3 edges, and 1000 customers, on 127.77.x.y (devnet uses 127.0.x.y, the
integration tests 127.100+.x.y).

Only the nameservers run: `akacdn.mapping.seed.write_seed_maps` signs the maps a
mapping center would publish with every machine live and writes them as each
nameserver's last known good map, so a TLNS or LLNS answers from the start with no
relay, mapping center or edge. Timing is slow (heartbeats every 30 s to a relay that is
not there) so that the idle machinery costs next to nothing during a run.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from akacdn.config import ConfigError, Network, load_network
from akacdn.devnet.network import REGIONS, Layout
from akacdn.devnet.network import machines as devnet_machines

BASE_DOMAIN = "akacdn.test"
NET = 77  # second octet: 127.77.x.y
CUSTOMERS = 1000
TLNS_ID = "tlns1"
LLNS_ID = "r1-llns"


def layout(dns_port: int = 53) -> Layout:
    return Layout(NET, dns_port, 8080)


def machines(lay: Layout, mapper_pub: str) -> list[dict[str, object]]:
    return devnet_machines(lay, mapper_pub, tlns=1, relays=1)


def customers(count: int = CUSTOMERS) -> list[dict[str, object]]:
    return [
        {
            "name": f"bench{n}",
            "serial": n,
            "hostnames": [f"www{n}.bench.example"],
            "origin": "http://127.0.0.1:9/",
            "default_ttl": 300,
        }
        for n in range(1, count + 1)
    ]


def _network(lay: Layout, mapper_pub: str, message_key: str) -> dict[str, object]:
    return {
        "base_domain": BASE_DOMAIN,
        "customers": "customers.toml",
        "state_dir": "state",
        "keys": {"message_key": message_key},
        "ports": {"dns": lay.dns_port, "http": lay.http_port, "messaging": 7400, "management": 9400},
        "ttl": {"referral": 1800, "answer": 20, "negative": 300},
        "timing": {"heartbeat_interval": 30.0, "dead_after": 90.0, "map_interval": 30.0, "subscribe_interval": 30.0},
        "regions": [{"id": r} for r in REGIONS],
        "machines": machines(lay, mapper_pub),
    }


def optional_settings(workers: int, ecs_subnets: list[str]) -> dict[str, object]:
    """Settings that newer config loaders accept and older ones refuse: DNS processes
    on SO_REUSEPORT, response rate limiting off (as for NSD: one dnsperf source would
    otherwise be limited), and client networks for the benchmark's ECS subnets, dealt
    over the regions (what the LLNS maps an ECS query by)."""
    dns: dict[str, object] = {"rrl_rate": 0}
    if workers > 1:
        dns["workers"] = workers
    return {
        "dns": dns,
        "client_networks": [{"prefix": p, "region": REGIONS[i % len(REGIONS)]} for i, p in enumerate(ecs_subnets)],
    }


def _refused_part(e: ConfigError, optional: dict[str, object]) -> tuple[str, str | None] | None:
    """Which optional table (and key in it) a refusal is about; None when it is not
    about an optional setting."""
    key = e.key
    unknown = re.search(r"unknown field `([^`]+)`", e.reason)
    for name, table in optional.items():
        if key == "$" and unknown and unknown.group(1) == name:
            return name, None  # the loader knows no such table
        if key == f"$.{name}" or key.startswith((f"$.{name}.", f"$.{name}[")):
            if isinstance(table, dict):
                if unknown and unknown.group(1) in table:
                    return name, unknown.group(1)
                sub = key[len(name) + 3 :].split(".")[0].split("[")[0]
                if sub in table:
                    return name, sub
            return name, None
    return None


def write_network(
    directory: Path, name: str, base: dict[str, object], optional: dict[str, object]
) -> tuple[Path, list[str]]:
    """Write `base` plus as much of `optional` as the config loader accepts: each refused
    table or key is dropped and named in the notes. Raises ConfigError when the refusal is
    about the base itself."""
    optional = {k: (dict(v) if isinstance(v, dict) else v) for k, v in optional.items()}
    path = directory / name
    notes: list[str] = []
    while True:
        path.write_text(tomli_w.dumps({**base, **optional}))
        try:
            load_network(path)
            return path, notes
        except ConfigError as e:
            part = _refused_part(e, optional)
            if part is None:
                raise
            table, key = part
            sub = optional[table]
            if key is not None and isinstance(sub, dict) and key in sub:
                del sub[key]
                if not sub:
                    del optional[table]
                notes.append(f"config loader refused {table}.{key} ({e.reason}); left out")
            else:
                del optional[table]
                notes.append(f"config loader refused [{table}] ({e.reason}); left out")


def write_config(directory: Path, lay: Layout, ecs_subnets: list[str]) -> tuple[Path, list[str]]:
    """Keys, customers.toml and network.toml (one DNS process per nameserver); returns the
    network file's path and notes on settings the config loader refused."""
    (directory / "keys").mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    keyfile = directory / "keys" / "mc1.key"
    keyfile.write_text(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex() + "\n")
    keyfile.chmod(0o600)
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    (directory / "customers.toml").write_text(tomli_w.dumps({"customers": customers()}))
    base = _network(lay, pub, secrets.token_hex(32))
    (directory / "network.base.toml").write_text(tomli_w.dumps(base))  # the template for worker variants
    (directory / "ecs-subnets.txt").write_text("\n".join(ecs_subnets) + "\n")
    return write_network(directory, "network.toml", base, optional_settings(1, ecs_subnets))


def with_workers(path: Path, workers: int) -> tuple[Path, int, list[str]]:
    """A network file like `path` asking for `workers` DNS processes per nameserver
    (`[dns] workers = N`). Returns (file, processes it will run, notes): when the loader
    refuses workers, the file runs 1 process and a note says so."""
    if workers == 1:
        return path, 1, []
    import tomllib

    base = tomllib.loads((path.parent / "network.base.toml").read_text())
    subnets = (path.parent / "ecs-subnets.txt").read_text().split()
    optional = optional_settings(workers, subnets)
    out, notes = write_network(path.parent, f"network-w{workers}.toml", base, optional)
    got = tomllib.loads(out.read_text()).get("dns", {}).get("workers", 1)
    if got != workers:
        notes.append(f"akacdn config has no [dns] workers = {workers}: ran {got} process")
    return out, got, notes


def seed(path: Path) -> tuple[Network, int]:
    """Load the network and write every nameserver's last known good maps."""
    from akacdn.mapping.seed import write_seed_maps

    net = load_network(path)
    return net, write_seed_maps(net)
