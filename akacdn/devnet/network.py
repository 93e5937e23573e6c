"""The devnet's configuration: 2 mapping centers (one leads, one stands by), 3 relays (one per region: every
message takes 2 of them), 2 TLNS, 3 regions of 1 LLNS + 3 edges, a demo origin; every
machine on its own 127.<net>.x.y address.

`write_config(directory, ...)` writes network.toml, customers.toml and the mapping
center's key, ready for `akacdn <daemon> --config directory/network.toml`.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from . import certs

BASE_DOMAIN = "akacdn.test"
REGIONS = ("r1", "r2", "r3")
EDGES_PER_REGION = 3
DEMO_HOST = "www.demo.example"
DEMO_SERIAL = 123


class Layout(msgspec.Struct, frozen=True):
    """Where everything is: addresses and ports of one devnet."""

    net: int
    dns_port: int
    http_port: int

    def __post_init__(self) -> None:
        if not 0 <= self.net <= 255:
            raise ValueError(f"devnet net {self.net} is not a second octet (0-255) of 127.<net>.x.y")

    @property
    def https_port(self) -> int:
        """443 beside port 80, else 8443 beside 8080 (the HTTP port + 363)."""
        return 443 if self.http_port == 80 else self.http_port + 363

    def addr(self, group: int, host: int) -> str:
        return f"127.{self.net}.{group}.{host}"

    @property
    def tlns(self) -> list[str]:
        return [self.addr(10, 1), self.addr(10, 2)]

    @property
    def origin(self) -> str:
        return self.addr(40, 1)

    def probed(self, i: int) -> str:
        """The "resolver" of measured client network i (0, 1): 127.<net>.5<i>.1, a probe responder."""
        return self.addr(50 + i, 1)

    def llns(self, region: int) -> str:
        return self.addr(region, 1)

    def edge(self, region: int, i: int) -> str:
        return self.addr(region, 10 + i)


def default_layout(net: int = 0) -> Layout:
    """Port 53/80 when root, 5353/8080 otherwise."""
    root = os.geteuid() == 0
    return Layout(net, 53 if root else 5353, 80 if root else 8080)


def machines(
    lay: Layout, mapper_pub: str, tlns: int = 2, relays: int = 3, more_mappers: tuple[str, ...] = ()
) -> list[dict[str, object]]:
    """The machine table of a devnet-shaped network (benchmarks use fewer TLNS and relays);
    `more_mappers`: the public keys of mapping centers mc2, mc3, ... beside mc1."""
    out: list[dict[str, object]] = []
    for i, a in enumerate(lay.tlns[:tlns], 1):
        out.append({"id": f"tlns{i}", "role": "tlns", "address": a})
    for i in range(1, relays + 1):
        out.append(
            {"id": f"relay{i}", "role": "relay", "region": REGIONS[(i - 1) % len(REGIONS)], "address": lay.addr(20, i)}
        )
    out.append(
        {
            "id": "mc1",
            "role": "mapper",
            "address": lay.addr(30, 1),
            "public_key": mapper_pub,
            "key_file": "keys/mc1.key",
            "preference": 0.1,  # leads while it is about as well connected as the others
        }
    )
    for i, pub in enumerate(more_mappers, 2):
        out.append(
            {
                "id": f"mc{i}",
                "role": "mapper",
                "address": lay.addr(30, i),
                "public_key": pub,
                "key_file": f"keys/mc{i}.key",
            }
        )
    for r, region in enumerate(REGIONS, 1):
        out.append({"id": f"{region}-llns", "role": "llns", "region": region, "address": lay.llns(r)})
        for e in range(1, EDGES_PER_REGION + 1):
            out.append({"id": f"{region}-e{e}", "role": "edge", "region": region, "address": lay.edge(r, e)})
    return out


def _center_key(keyfile: Path) -> str:
    """An Ed25519 key pair (a mapping center's, or the release signer's): the private key
    in `keyfile` (made once), the public key in hex."""
    if keyfile.exists():
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(keyfile.read_text().strip()))
    else:
        key = Ed25519PrivateKey.generate()
        raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        keyfile.write_text(raw.hex() + "\n")
        keyfile.chmod(0o600)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


Tweak = Callable[[dict[str, Any], dict[str, Any]], None]


def write_config(directory: Path, lay: Layout, tweak: Tweak | None = None) -> Path:
    """Write a complete devnet configuration; returns the network file's path. `tweak`
    may change the network and customers documents before they are written (tests)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "keys").mkdir(exist_ok=True)
    # keys survive a restart of the devnet, so the maps the nameservers kept stay valid
    pub, pub2 = (_center_key(directory / "keys" / f"mc{i}.key") for i in (1, 2))
    release_pub = _center_key(directory / "keys" / "release.key")  # `akacdn release --signer devnet`
    msgkey_file = directory / "keys" / "message.key"
    if not msgkey_file.exists():
        msgkey_file.write_text(secrets.token_hex(32) + "\n")
        msgkey_file.chmod(0o600)
    message_key = msgkey_file.read_text().strip()
    purge_file = directory / "keys" / "purge.token"
    if not purge_file.exists():
        purge_file.write_text(secrets.token_hex(16) + "\n")
        purge_file.chmod(0o600)
    purge_token = purge_file.read_text().strip()
    operator_file = directory / "keys" / "operator.token"
    if not operator_file.exists():
        operator_file.write_text(secrets.token_hex(16) + "\n")
        operator_file.chmod(0o600)
    operator_token = operator_file.read_text().strip()
    # HTTPS: a local CA (tls/ca.pem, for curl --cacert), the network's certificate for the
    # aNNN names, the demo customer's for its hostname (kept across restarts)
    net_cert, net_key = certs.leaf(directory / "tls", "network", [f"*.g.{BASE_DOMAIN}", f"*.{BASE_DOMAIN}"])
    demo_cert, demo_key = certs.leaf(directory / "tls", "demo", [DEMO_HOST])
    network = {
        "base_domain": BASE_DOMAIN,
        "customers": "customers.toml",
        "state_dir": "state",
        "keys": {
            "message_key": message_key,
            "purge_token": purge_token,
            "operator_token": operator_token,
            "release_signers": [{"id": "devnet", "public_key": release_pub}],
        },
        # releases in minutes, not hours (Table 1 x 0.01: a customer release's phases last 9 s and 12 s);
        # nobody's traffic to judge by on a fresh devnet: rolls and application only
        "release": {"time_scale": 0.01, "min_requests": 0},
        "ports": {
            "dns": lay.dns_port,
            "http": lay.http_port,
            "https": lay.https_port,
            "messaging": 7400,
            "management": 9400,
        },
        "edge": {"tls_cert": str(net_cert.relative_to(directory)), "tls_key": str(net_key.relative_to(directory))},
        "ttl": {"referral": 1800, "answer": 20, "negative": 300},
        "timing": {"heartbeat_interval": 0.5, "dead_after": 1.6, "map_interval": 1.0, "subscribe_interval": 1.0},
        "dns": {"workers": 1, "rrl_rate": 50, "rrl_slip": 2},
        # measured mapping at a demo's pace: probe rounds every 2 s, an allocation every 5 s,
        # a moved network held 30 s (production: 10 s, 60 s, 300 s)
        "probing": {"interval": 2.0},
        "mapping": {"assign_interval": 5.0, "hold": 30.0},
        # two networks (ISPs) over the three regions: every referral spans both (shared fate)
        "regions": [
            {"id": r, "fallback": [x for x in REGIONS if x != r], "network": f"as6450{i % 2}", "site": f"site{i}"}
            for i, r in enumerate(REGIONS)
        ],
        # lab client networks and the region that serves each best (what ECS queries map by),
        # and two measured ones: their resolvers are probe responders (`probe_delays`)
        "client_networks": [{"prefix": f"198.18.{i}.0/24", "region": r} for i, r in enumerate(REGIONS, 1)]
        + [{"prefix": f"127.{lay.net}.{50 + i}.0/24", "probes": [f"{lay.probed(i)}:{lay.dns_port}"]} for i in (0, 1)],
        "machines": machines(lay, pub, more_mappers=(pub2,)),
    }
    customers = {
        "customers": [
            {
                "name": "demo",
                "serial": DEMO_SERIAL,
                "hostnames": [DEMO_HOST],
                "origin": f"http://{lay.origin}:{lay.http_port}",
                "default_ttl": 300,
                "tls_cert": str(demo_cert.relative_to(directory)),
                "tls_key": str(demo_key.relative_to(directory)),
            }
        ]
    }
    if tweak is not None:
        tweak(network, customers)
    probe_delays(directory, lay)
    (directory / "customers.toml").write_text(tomli_w.dumps(customers))
    path = directory / "network.toml"
    path.write_text(tomli_w.dumps(network))
    return path


# The measured client networks' RTT per region (s): there is no netem here, so their
# "resolvers" answer each region's probes after these delays. Network 0 is nearest r1,
# network 1 nearest r3. Edit probes/delays-<i>.json while the devnet runs and watch the
# maps follow (`akacdn mapping`); the files are kept across restarts.
PROBE_DELAYS = ({"r1": 0.01, "r2": 0.04, "r3": 0.08}, {"r1": 0.08, "r2": 0.04, "r3": 0.01})


def probe_delays(directory: Path, lay: Layout) -> list[Path]:
    """Write the probe responders' delay files (unless there), one per measured network."""
    (directory / "probes").mkdir(parents=True, exist_ok=True)
    paths = []
    for i, delays in enumerate(PROBE_DELAYS):
        path = directory / "probes" / f"delays-{i}.json"
        if not path.exists():
            prefixes = {f"127.{lay.net}.{REGIONS.index(r) + 1}.0/24": d for r, d in delays.items()}
            path.write_text(json.dumps({"default": 0.1, "prefixes": prefixes}, indent=2) + "\n")
        paths.append(path)
    return paths
