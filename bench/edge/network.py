"""The benchmark's akacdn network, on 127.78.x.y: one region with one edge machine
(plus the mapping center, relay and TLNS the config loader requires, none of which is
started), and one customer whose origin is the benchmark's origin.

The edge runs alone: its heartbeats go to a relay that is not there (every 30 s, so
the idle machinery costs next to nothing during a run).
"""

from __future__ import annotations

import secrets
import tomllib
from pathlib import Path

import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bench.dns.network import write_network

NET = 78  # second octet: 127.78.x.y (bench/dns uses 127.77, devnet 127.0)
PORT = 8080
TLS_PORT = 8443
BASE_DOMAIN = "akacdn.test"
REGION = "r1"
EDGE_ID = "r1-e1"
HOST = "www.bench.example"  # the customer's hostname: the Host header every cache is sent
SERIAL = 1
EDGE_ADDR = f"127.{NET}.1.11"
ORIGIN_ADDR = f"127.{NET}.40.1"
NGINX_ADDR = f"127.{NET}.50.1"
VARNISH_ADDR = f"127.{NET}.51.1"
PROBE_ADDR = f"127.{NET}.60.1"  # the TLS probe's relay (bench/edge/tlsprobe.py)
MANAGEMENT_PORT = 9400


def machines(mapper_pub: str) -> list[dict[str, object]]:
    return [
        {"id": "tlns1", "role": "tlns", "address": f"127.{NET}.10.1"},
        {"id": "relay1", "role": "relay", "address": f"127.{NET}.20.1"},
        {"id": "mc1", "role": "mapper", "address": f"127.{NET}.30.1", "public_key": mapper_pub},
        {"id": EDGE_ID, "role": "edge", "region": REGION, "address": EDGE_ADDR},
    ]


def base_config(mapper_pub: str, message_key: str) -> dict[str, object]:
    return {
        "base_domain": BASE_DOMAIN,
        "customers": "customers.toml",
        "state_dir": "state",
        "keys": {"message_key": message_key},
        "ports": {"dns": 5378, "http": PORT, "messaging": 7400, "management": MANAGEMENT_PORT},
        "timing": {"heartbeat_interval": 30.0, "dead_after": 90.0, "map_interval": 30.0, "subscribe_interval": 30.0},
        "regions": [{"id": REGION}],
        "machines": machines(mapper_pub),
    }


def customers(origin: str) -> dict[str, object]:
    return {"customers": [{"name": "bench", "serial": SERIAL, "hostnames": [HOST], "origin": origin}]}


def write_config(
    directory: Path, origin: str, workers: int = 1, tls: tuple[Path, Path] | None = None, sndbuf: int = 0
) -> tuple[Path, int, list[str]]:
    """Write network.toml and customers.toml (no key files: the edge needs none) for
    `workers` edge processes:
    `[edge] workers = N` when N > 1 and the config loader accepts it, and `[edge] sndbuf`
    when given. Returns (network file, edge processes it asks for, notes on what the
    loader refused)."""
    directory.mkdir(parents=True, exist_ok=True)
    pub = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    (directory / "customers.toml").write_text(tomli_w.dumps(customers(origin)))
    base = base_config(pub, secrets.token_hex(32))
    if tls is not None:  # the network's certificate: the edge listens for HTTPS on TLS_PORT
        base["ports"]["https"] = TLS_PORT  # type: ignore[index]
        base["edge"] = {"tls_cert": str(tls[0]), "tls_key": str(tls[1])}
    edge: dict[str, object] = {**base.get("edge", {})}  # type: ignore[dict-item]
    if workers > 1:
        edge["workers"] = workers
    if sndbuf:
        edge["sndbuf"] = sndbuf
    optional: dict[str, object] = {"edge": edge} if len(edge) > len(base.get("edge", {})) else {}  # type: ignore[arg-type]
    path, notes = write_network(directory, f"network-w{workers}.toml", base, optional)
    got = tomllib.loads(path.read_text()).get("edge", {}).get("workers", 1)
    if got != workers:
        notes = [f"akacdn config has no [edge] workers = {workers}: the edge ran {got} process"]
    return path, got, notes
