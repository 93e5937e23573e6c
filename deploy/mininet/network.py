"""The Mininet lab's configuration: network.toml, customers.toml, keys and unbound.conf
for the topology of ``topo.py`` (the lab's counterpart of ``akacdn/devnet/network.py``).

Machines are the topology's hosts, by the same name (machine id = Mininet host name):

    role    hosts             address (what DNS answers / daemons serve on)
    edge    rRe1..rRen        SERVICE address 198.18.R.(110+i); ``host_address`` is the
                              host's own interface address 198.18.R.(10+i) (the region
                              agent moves the service address between them)
    llns    rRns1..rRnsn      198.18.R.(1+i) (own hosts in the region's segment); with 2 or
                              more per region they cover each other like the edges: SERVICE
                              address 198.18.R.(101+i), ``host_address`` 198.18.R.(1+i)
    tlns    tlns1..           198.18.100.11..
    mapper  mc1, mc2          198.18.101.11, 198.18.112.11 (each in a network of its own; an
                              Ed25519 key pair each, like the devnet's)
    relay   relay1..          198.18.102.11..

plus the demo origin (``akacdn origin``, 198.18.200.10:80) as the demo customer's origin,
and every client network ``198.19.C.0/24`` in ``[[client_networks]]``, mapped to region
``r((C-1) mod regions + 1)``.  Ports are the standard ones (dns 53, http 80, management
9400, messaging 7400): every host has its own network namespace.

``write_lab_config(directory, topo)`` writes everything below ``directory`` and returns a
``LabConfig``; ``unbound_conf(...)`` writes the resolver host's unbound configuration.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from akacdn.config import Machine
from akacdn.devnet.network import BASE_DOMAIN, DEMO_HOST, DEMO_SERIAL
from akacdn.devnet.resolver import write_unbound_conf

SERVICE_OFFSET = 100  # edge service address = host address + 100 (198.18.R.11 -> .111)
MAX_EDGES_PER_REGION = 99  # keeps host (.11...109) and service (.111...209) addresses apart
PORTS = {"dns": 53, "http": 80, "management": 9400, "messaging": 7400}
TIMING = {"heartbeat_interval": 0.5, "dead_after": 1.6, "map_interval": 1.0, "subscribe_interval": 1.0}


@dataclass
class LabConfig:
    """What was written, and the addresses the lab needs to know."""

    directory: Path
    network_path: Path
    origin: str  # origin host address
    resolver: str  # resolver host address
    tlns: list[str]
    regions: list[str]  # region ids: "r1", "r2", ...
    client_regions: dict[str, str]  # client net name ("c1") -> region id
    service: dict[str, str] = field(default_factory=dict)  # edge id -> service address
    daemons: dict[str, str] = field(default_factory=dict)  # machine id -> role, in start order


def _secret(path: Path, make) -> str:
    """A key file that survives rewrites of the config (so persisted maps stay valid)."""
    if not path.exists():
        path.write_text(make() + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def _mapper_key(path: Path) -> str:
    """Write (once) a mapping center's private key; return its public key in hex."""
    raw = _secret(
        path, lambda: Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex()
    )
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(raw))
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def service_address(host_ip: str) -> str:
    return str(ipaddress.ip_address(host_ip) + SERVICE_OFFSET)


def write_lab_config(directory: Path, topo, state_dir: Path | None = None, tweak=None) -> LabConfig:
    """Write network.toml, customers.toml and keys/ for ``topo`` (an ``AkacdnTopo``).

    ``state_dir`` defaults to ``directory/../state``; ``tweak(network, customers)``
    changes the two documents last; returns a ``LabConfig``."""
    directory = Path(directory)
    (directory / "keys").mkdir(parents=True, exist_ok=True)
    info = topo.hostinfo
    by_role = {}
    for h in info.values():
        by_role.setdefault(h.role, []).append(h)
    regions = sorted({h.region for h in by_role.get("edge", [])})
    region_ids = [f"r{r}" for r in regions]
    per_region = {r: sum(1 for h in by_role["edge"] if h.region == r) for r in regions}
    if max(per_region.values()) > MAX_EDGES_PER_REGION:
        raise ValueError(f"at most {MAX_EDGES_PER_REGION} edges per region (service addresses are host + 100)")
    for r in regions:
        if not any(h.region == r for h in by_role.get("llns", [])):
            raise ValueError(f"region r{r} has no LLNS host (topo llns_per_region >= 1)")

    message_key = _secret(directory / "keys" / "message.key", lambda: secrets.token_hex(32))
    purge_token = _secret(directory / "keys" / "purge.token", lambda: secrets.token_hex(16))

    cfg = LabConfig(
        directory=directory,
        network_path=directory / "network.toml",
        origin=by_role["origin"][0].ip,
        resolver=by_role["resolver"][0].ip,
        tlns=[h.ip for h in by_role["tlns"]],
        regions=region_ids,
        client_regions={},
    )
    machines: list[dict[str, object]] = []
    # start order: relays first (everyone subscribes through them), then mapping centers,
    # edges, LLNS, TLNS (the devnet's order)
    for i, h in enumerate(by_role["relay"]):  # relays spread over the regions: paths in distinct regions
        machines.append({"id": h.name, "role": "relay", "region": region_ids[i % len(region_ids)], "address": h.ip})
    for h in by_role["mapper"]:
        pub = _mapper_key(directory / "keys" / f"{h.name}.key")
        machines.append(
            {"id": h.name, "role": "mapper", "address": h.ip, "public_key": pub, "key_file": f"keys/{h.name}.key"}
        )
    for h in by_role["edge"]:
        svc = service_address(h.ip)
        cfg.service[h.name] = svc
        edge = {"id": h.name, "role": "edge", "region": f"r{h.region}", "address": svc, "host_address": h.ip}
        if "interface" in Machine.__struct_fields__:  # the schema had it for a while
            edge["interface"] = f"{h.name}-eth0"
        machines.append(edge)
    for h in by_role["llns"]:
        llns = {"id": h.name, "role": "llns", "region": f"r{h.region}", "address": h.ip}
        if sum(1 for o in by_role["llns"] if o.region == h.region) > 1:  # peers to cover each other
            llns.update(address=service_address(h.ip), host_address=h.ip)
            cfg.service[h.name] = llns["address"]
        machines.append(llns)
    for h in by_role["tlns"]:
        machines.append({"id": h.name, "role": "tlns", "address": h.ip})
    cfg.daemons = {m["id"]: m["role"] for m in machines}  # type: ignore[misc]

    client_nets = sorted((n for n in topo.nets.values() if n.kind == "client"), key=lambda n: int(n.name[1:]))
    client_networks = []
    for i, n in enumerate(client_nets):
        region = region_ids[i % len(region_ids)]
        cfg.client_regions[n.name] = region
        client_networks.append({"prefix": n.prefix, "region": region})

    network = {
        "base_domain": BASE_DOMAIN,
        "customers": "customers.toml",
        "state_dir": str(state_dir or directory.parent / "state"),
        "keys": {"message_key": message_key, "purge_token": purge_token},
        "ports": dict(PORTS),
        "ttl": {"referral": 1800, "answer": 20, "negative": 300},
        "timing": dict(TIMING),
        "dns": {"workers": 1, "rrl_rate": 50, "rrl_slip": 2},
        "edge": {"memory_bytes": 64 * 2**20, "disk_bytes": 256 * 2**20},
        "regions": [{"id": r, "fallback": [x for x in region_ids if x != r]} for r in region_ids],
        "client_networks": client_networks,
        "machines": machines,
    }
    customers = {
        "customers": [
            {
                "name": "demo",
                "serial": DEMO_SERIAL,
                "hostnames": [DEMO_HOST],
                "origin": f"http://{cfg.origin}" + ("" if PORTS["http"] == 80 else f":{PORTS['http']}"),
                "default_ttl": 300,
            }
        ]
    }
    if tweak is not None:
        tweak(network, customers)
    (directory / "customers.toml").write_text(tomli_w.dumps(customers))
    cfg.network_path.write_text(tomli_w.dumps(network))
    return cfg


def unbound_conf(directory: Path, cfg: LabConfig, allow: str = "198.18.0.0/15") -> Path:
    """unbound.conf for the resolver host, as the devnet's (``akacdn/devnet/resolver.py``),
    plus ECS: every query for the base domain carries the client's /24, so the
    nameservers map each client network to its region although all clients share this
    one resolver."""
    return write_unbound_conf(
        Path(directory),
        listen=cfg.resolver,
        port=PORTS["dns"],
        tlns=cfg.tlns,
        base_domain=BASE_DOMAIN,
        allow=allow,
        client_subnet=True,
        made_by="deploy/mininet/network.py (akacdn Mininet lab)",
    )
