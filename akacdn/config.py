"""Network and customer configuration: TOML files decoded into typed, validated structs.

Two files describe a deployment:

* the **network** file (base domain, ports, TTLs, timing, keys, regions, machines), and
* the **customers** file it names (hostnames, serial, origin, default TTL).

`load_network(path)` returns a `Network` or raises `ConfigError(file, key, reason)`;
nothing else escapes for bad input. Structs are validated on the way in and trusted
inside: unknown keys are refused, addresses are parsed, cross references (regions,
roles, serials) are checked.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from . import serials
from .durations import TTLError, parse_ttl

Role = Literal["tlns", "llns", "edge", "mapper", "relay"]
ROLES: tuple[str, ...] = ("tlns", "llns", "edge", "mapper", "relay")

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=3600)]
Ident = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class ConfigError(Exception):
    """A configuration file was refused: which file, which key, and why."""

    def __init__(self, file: str | Path, key: str, reason: str) -> None:
        self.file, self.key, self.reason = str(file), key, reason
        super().__init__(f"{self.file}: {key}: {reason}")


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


class Ports(_Strict):
    dns: Port = 53
    http: Port = 80
    https: Port = 443  # the edges' TLS listener (when a certificate is configured)
    messaging: Port = 7400
    management: Port = 9400
    agent: Port = 7500  # region agents' heartbeats (UDP, on each machine's host_address)


class TTLs(_Strict):
    referral: Annotated[int, msgspec.Meta(ge=60, le=86400)] = 1800
    answer: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 20
    negative: Annotated[int, msgspec.Meta(ge=1, le=86400)] = 300


class Timing(_Strict):
    # a dead machine leaves the maps within dead_after (plus a map interval): 4 missed
    # beats, so a stall of a few hundred ms (a loaded machine, a GC) is no false alarm
    heartbeat_interval: Seconds = 0.5
    dead_after: Seconds = 2.0
    map_interval: Seconds = 1.0
    subscribe_interval: Seconds = 2.0


class DnsSettings(_Strict):
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1  # processes on SO_REUSEPORT
    rrl_rate: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 100  # per client prefix and answer; 0 = off
    rrl_slip: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2  # every Nth limited reply goes out truncated
    tcp_idle: Seconds = 10.0
    tcp_max_connections: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 256
    nsid: str = ""  # default: the machine id
    portable_udp: bool = False  # recvfrom/sendto instead of batched recvmmsg/sendmmsg


class EdgeSettings(_Strict):
    memory_bytes: Annotated[int, msgspec.Meta(ge=0)] = 256 * 2**20  # memory tier budget
    disk_bytes: Annotated[int, msgspec.Meta(ge=0)] = 1024 * 2**20  # disk tier budget (state dir)
    # how long past expiry a stale object may answer when its origin fails (RFC 5861 bound)
    stale_if_error: Annotated[float, msgspec.Meta(ge=0, le=7 * 86400)] = 3600.0
    # processes sharing the HTTP port (SO_REUSEPORT), like nginx's worker_processes; they
    # share the disk tier, each has its own memory tier, and misses are coalesced across them
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    # the network's TLS certificate (PEM chain, PEM key; paths relative to the config file):
    # served for aNNN.<subzone>.<base> names and when no customer's certificate matches SNI.
    # With neither this nor a customer's certificate, the edge has no HTTPS listener.
    tls_cert: str = ""
    tls_key: str = ""
    # the clients' connections' send buffer, bytes (SO_SNDBUF, as nginx's `listen ... sndbuf=`);
    # 0: the kernel sizes it (autotuning, up to net.ipv4.tcp_wmem's max). A fixed size caps
    # what one connection has in flight (size/RTT), and spares a host whose clients cannot
    # take what autotuning queues: see README, "Large objects"
    sndbuf: Annotated[int, msgspec.Meta(ge=0, le=2**28)] = 0


class AgentSettings(_Strict):
    """The region agent (`akacdn agent`): heartbeats between a region's machines and IP
    takeover of a dead machine's service address by exactly one live buddy."""

    interval: Annotated[float, msgspec.Meta(ge=0.01, le=10)] = 0.1  # heartbeat interval, seconds
    misses: Annotated[int, msgspec.Meta(ge=2, le=100)] = 3  # silent intervals before a peer is dead
    recover_after: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 2.0  # healthy this long to reclaim
    release_grace: Annotated[float, msgspec.Meta(ge=0, le=600)] = 1.0  # owner re-adds after this anyway
    check_interval: Annotated[float, msgspec.Meta(ge=0.01, le=60)] = 0.05  # own service checks
    garp_count: Annotated[int, msgspec.Meta(ge=1, le=20)] = 3  # gratuitous ARPs per takeover
    garp_spacing: Annotated[float, msgspec.Meta(ge=0, le=5)] = 0.05  # seconds between them
    garp_refresh: Annotated[float, msgspec.Meta(ge=0, le=600)] = 2.0  # one more burst this much later


# How long a receiver keeps recovering a lost message of a topic (NACKs to the relays, then
# a give-up): by topic, or by the topic's first dot-separated word. 0: no recovery, the
# newest message wins (heartbeats are re-sent anyway; a late one is of no use).
DEFAULT_DEADLINES: dict[str, float] = {
    "map": 10.0,
    "purge": 30.0,
    "report": 2.0,
    "announce": 0.0,
    "heartbeat": 0.0,
    "region": 0.0,
    "agent": 0.0,
    "center": 0.0,
}


class MessagingSettings(_Strict):
    """The real-time messaging network (`akacdn.messaging`): paths, chunking, recovery."""

    paths: Annotated[int, msgspec.Meta(ge=1, le=16)] = 2  # relays (in distinct regions) per datagram
    chunk_bytes: Annotated[int, msgspec.Meta(ge=256, le=1300)] = 1200  # payload per datagram: no IP fragments
    max_message_bytes: Annotated[int, msgspec.Meta(ge=1024, le=64 * 2**20)] = 16 * 2**20
    nack: bool = True  # receivers ask relays for what they missed (limited retransmission)
    nack_delay: Annotated[float, msgspec.Meta(ge=0, le=5)] = 0.01  # wait for the other path's copy first
    nack_interval: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.04  # first re-NACK; x1.5 each try
    nack_tries: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    retransmit_share: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.2  # repairs per datagram sent, at most
    history_bytes: Annotated[int, msgspec.Meta(ge=0, le=2**31)] = 32 * 2**20  # retransmit buffer (relay, sender)
    history_age: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0
    pending_bytes: Annotated[int, msgspec.Meta(ge=2**16, le=2**31)] = 64 * 2**20  # incomplete messages held
    max_age: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0  # older datagrams are refused (replays)
    pace: Annotated[int, msgspec.Meta(ge=100, le=10**6)] = 5000  # datagrams/s a publisher sends at most
    burst: Annotated[int, msgspec.Meta(ge=1, le=10**5)] = 64  # datagrams it may send at once
    state_interval: Annotated[float, msgspec.Meta(gt=0, le=60)] = 0.25  # "last sequence" notes of live streams
    socket_buffer: Annotated[int, msgspec.Meta(ge=2**16, le=2**28)] = 8 * 2**20  # SO_RCVBUF/SO_SNDBUF wanted
    deadlines: dict[str, Annotated[float, msgspec.Meta(ge=0, le=3600)]] = msgspec.field(
        default_factory=lambda: dict(DEFAULT_DEADLINES)
    )
    default_deadline: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 2.0
    http_timeout: Seconds = 5.0  # one request to the reliable transport (maps, journals)
    catchup_wait: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 5.0  # an edge waits this for purges at start

    def deadline(self, topic: str) -> float:
        """The recovery deadline of a topic (seconds; 0: none, newest wins)."""
        d = self.deadlines.get(topic)
        if d is None:
            d = self.deadlines.get(topic.split(".", 1)[0], self.default_deadline)
        return d


class ElectionSettings(_Strict):
    """Leadership among the mapping centers (`mapping.election`)."""

    interval: Seconds = 0.5  # each center's status, to the others
    lease: Seconds = 2.0  # a leader unheard this long is gone (and one cut off this long resigns)
    min_score: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5  # connectivity needed to lead
    margin: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.15  # a better center must beat the leader by this ...
    confirm: Seconds = 5.0  # ... for this long before the leader hands over


class MappingSettings(_Strict):
    """What the leader publishes (`mapping.guard`): the map guard and flap damping."""

    max_drop: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5  # of capacity at once, held ...
    drop_confirm: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0  # ... until it lasts this long
    damping: bool = True
    flap_penalty: Annotated[float, msgspec.Meta(gt=0)] = 1000.0  # per change of a machine's state
    flap_suppress: Annotated[float, msgspec.Meta(gt=0)] = 2000.0  # held out of the maps above this ...
    flap_reuse: Annotated[float, msgspec.Meta(gt=0)] = 750.0  # ... until decayed below this
    flap_half_life: Seconds = 30.0
    flap_max_suppress: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 300.0
    # measured, load-aware assignment of client networks to regions (`mapping.allocate`)
    assign_interval: Annotated[float, msgspec.Meta(ge=0.1, le=3600)] = 60.0  # Akamai: about once a minute
    loss_weight: Annotated[float, msgspec.Meta(ge=0, le=1e6)] = 10.0  # score: RTT ms + this per % loss
    target_load: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.85  # of a region's capacity, assigned at most
    return_load: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.75  # a shed network returns only below this
    move_margin: Annotated[float, msgspec.Meta(ge=0, le=10)] = 0.15  # move only for a score this much better
    hold: Annotated[float, msgspec.Meta(ge=0, le=86400)] = 300.0  # a moved network stays this long
    max_moves: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 50  # networks moved per cycle, at most
    ramp_steps: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3  # cycles a move back to a better region ramps over
    probe_stale: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 180.0  # older probe data is no data
    probe_ewma: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.3  # weight of a new probe round
    ranked: Annotated[int, msgspec.Meta(ge=1, le=32)] = 4  # regions per client network in the map


class RecoverySettings(_Strict):
    """Recovery-oriented operation (`akacdn.recovery`): rolls, long-sleep, the network-wide
    in-place mode, quarantine. Defaults after Kubernetes' CrashLoopBackOff (10 s doubling
    to 5 min, reset after 10 min healthy) and ANCHORS.md."""

    roll_limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5  # rolls within roll_window before a long sleep
    roll_window: Seconds = 600.0
    long_sleep: Seconds = 10.0  # the first long sleep; each next one doubles ...
    long_sleep_max: Seconds = 300.0  # ... up to this
    healthy_reset: Seconds = 600.0  # serving this long without a roll forgets the rolls and sleeps
    stall_limit: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0  # event loop stuck this long: roll (0: off)
    # more than this share of the machines (of the network, or of one region) rolling within
    # mode_window switches every daemon to recovering in place; it ends mode_window after the last
    in_place_fraction: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.1
    in_place_min_machines: Annotated[int, msgspec.Meta(ge=1, le=100000)] = 3  # and at least this many
    mode_window: Seconds = 60.0
    # in place: faults of one serial on a machine before the machine disables it
    disable_after: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 3
    quarantine_after: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 2  # machines one serial crashed ...
    quarantine_window: Seconds = 300.0  # ... within this, to be quarantined
    quarantine_servers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1  # the edges per region it keeps
    quarantine_hold: Annotated[float, msgspec.Meta(gt=0, le=30 * 86400)] = 3600.0  # after its last crash


class ReleaseSettings(_Strict):
    """Zoned releases (`akacdn release`, `mapping.rollout`)."""

    time_scale: Annotated[float, msgspec.Meta(gt=0, le=10)] = 1.0  # x the paper's Table 1 phase durations
    min_requests: Annotated[int, msgspec.Meta(ge=0, le=10**9)] = 20  # zone requests before a verdict
    max_error_rate_gap: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.01
    apply_timeout: Seconds = 30.0  # a zone machine runs the bundle within this, or the release aborts
    data_wait: Annotated[float, msgspec.Meta(ge=1, le=100)] = 3.0  # x min duration without data: abort


class ReleaseSigner(_Strict):
    id: Ident
    public_key: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]  # Ed25519, hex


class FaultSettings(_Strict):
    """Fault injection for labs and tests: customers' `faults` are refused unless enabled."""

    enabled: bool = False
    hang_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 60.0  # how long a "hang" blocks the daemon


class SureRouteSettings(_Strict):
    """SureRoute (paper 3.2, 4.2): an edge reaches a customer's origin directly or through
    an edge of an intermediate region, whichever the last race of the customer's test
    object found best; a failing request moves to the next path at once."""

    interval: Annotated[float, msgspec.Meta(ge=1, le=86400)] = 1800.0  # a race result holds this long
    race_timeout: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0  # a raced fetch slower than this failed
    width: Annotated[int, msgspec.Meta(ge=2, le=8)] = 3  # paths raced at once (direct among them)
    after_failure: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 5.0  # earliest race after a failure
    retry_failed: Annotated[float, msgspec.Meta(ge=0, le=86400)] = 30.0  # a failed path is avoided this long
    margin: Annotated[float, msgspec.Meta(ge=0, le=10)] = 0.2  # a challenger must be this much faster...
    margin_abs: Annotated[float, msgspec.Meta(ge=0, le=10)] = 0.010  # ... and this many seconds
    # per attempt while another path is left: connecting, and the answer's head
    connect_timeout: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    head_timeout: Annotated[float, msgspec.Meta(gt=0, le=600)] = 10.0


class ParentSettings(_Strict):
    """Tiered distribution: a miss goes to an edge of a parent region (by consistent
    hashing of the cache key) before the origin. `regions` is the network's default for
    customers that name none; failing parents are held out as Traffic Server does."""

    regions: list[str] = []
    fail_threshold: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10  # failures in a row mark a parent down
    retry_after: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 300.0  # then one probe after this long
    balance_factor: Annotated[float, msgspec.Meta(ge=0, le=100)] = 1.5  # bounded load (0: off, else >= 1)
    max_parents: Annotated[int, msgspec.Meta(ge=1, le=16)] = 3  # parents tried before the origin
    balance_min: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 8  # bounded load only from this many in flight


class ProbeSettings(_Strict):
    """Measured mapping's probes (`mapping.probe`): the edges of each region measure RTT and
    loss to the configured probe targets of the client networks it may serve, and to the
    other regions' LLNSes; results go to the mapping centers on topic `probe`."""

    interval: Annotated[float, msgspec.Meta(ge=0.2, le=3600)] = 10.0  # a round of probes
    timeout: Annotated[float, msgspec.Meta(gt=0, le=30)] = 2.0  # a probe without a reply by then is lost
    rate: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 50  # probes a second per machine, at most
    probers: Annotated[int, msgspec.Meta(ge=1, le=16)] = 2  # edges of a region that probe each client network
    regions: bool = True  # also probe the other regions' LLNSes (region-to-region RTT) ...
    region_interval: Annotated[float, msgspec.Meta(ge=0, le=86400)] = 60.0  # ... in a round at most this often


class ClientNetwork(_Strict):
    """A client network (a map unit): where its clients are, how to measure it, and the
    region that serves it when there are no measurements (operator's static choice)."""

    prefix: str
    region: str = ""  # static best region ("" = none: the LLNS region's default order)
    probes: list[str] = []  # probe targets: "address" (port 53) or "address:port" ("[v6]:port")
    probe: Literal["dns", "tcp"] = "dns"  # a DNS query over UDP (any reply counts), or a TCP connect
    regions: list[str] = []  # the regions that may serve it (empty: all)
    weight: Annotated[float, msgspec.Meta(gt=0, le=1e9)] = 1.0  # expected demand share until measured


def probe_target(text: str, default_port: int) -> tuple[str, int]:
    """(address, port) of a probe target: "address", "address:port" or "[v6]:port"."""
    host, port = text, default_port
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not address[:port]")
        if rest:
            port = _port(text, rest[1:])
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = _port(text, p)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r} is not address[:port]") from None
    return host, port


def _port(text: str, p: str) -> int:
    if not p.isdigit() or not 0 < int(p) < 65536:
        raise ValueError(f"{text!r}: bad port")
    return int(p)


_KEY_HEX = r"^(?:[0-9a-f]{2}){16,64}$"
KeyId = Annotated[int, msgspec.Meta(ge=0, le=255)]


class Keys(_Strict):
    # 16 to 64 bytes, hex: the HMAC key of every message we send, and its id in envelopes
    message_key: Annotated[str, msgspec.Meta(pattern=_KEY_HEX)]
    message_key_id: KeyId = 1
    # a second key that is accepted (never used to send): rotation without a flag day.
    # Roll out the new key here, then swap it with message_key, then remove the old one.
    accept_message_key: Annotated[str, msgspec.Meta(pattern=_KEY_HEX + "|^$")] = ""
    accept_message_key_id: KeyId = 0
    # bearer token for the edges' purge API; empty: the API refuses every purge
    purge_token: Annotated[str, msgspec.Meta(pattern=r"^(?:[0-9a-f]{2}){16,64}$|^$")] = ""
    # bearer token of the mapping centers' operator API (suspend, resume); empty: refused
    operator_token: Annotated[str, msgspec.Meta(pattern=r"^(?:[0-9a-f]{2}){16,64}$|^$")] = ""
    # who may sign release bundles (`akacdn release`): none, and every bundle is refused
    release_signers: list[ReleaseSigner] = []


class Region(_Strict):
    id: Ident
    description: str = ""
    fallback: list[str] = []  # regions to serve from, in order, when this one cannot
    network: str = ""  # the ISP / AS it sits in: a referral's LLNSes span >= 2 of them (shared fate)
    site: str = ""  # the datacenter or city


class Machine(_Strict):
    id: Ident
    role: Role
    address: str
    address6: str = ""  # edge: IPv6 service address, answered as AAAA
    region: str = ""
    capacity: PositiveInt = 100  # relative weight: an edge's share of serials and parent keys
    # edge: requests a second it takes at most (load feedback: a region over `[mapping] target_load`
    # of its live edges' sum sheds client networks); 0 = not load-managed
    max_rps: Annotated[float, msgspec.Meta(ge=0, le=1e9)] = 0.0
    public_key: str = ""  # mapper: Ed25519 public key, hex
    preference: Annotated[float, msgspec.Meta(ge=-1, le=1)] = 0.0  # mapper: added to its standing to lead
    key_file: str = ""  # mapper: Ed25519 private key (raw 32 bytes, hex), relative to config
    # the machine's own fixed address (agent heartbeats, management). Set, `address` is a
    # service address the region agent holds and a buddy takes over when this machine dies
    host_address: str = ""  # (service addresses go on the interface that holds it)

    @property
    def service(self) -> tuple[str, ...]:
        """The machine's service addresses: `address`, and `address6` when set."""
        return (self.address, self.address6) if self.address6 else (self.address,)


# Paths the akamaize tool leaves on the origin (dynamic or cookie-bearing), as globs:
# `*` matches any run of characters (also `/`), everything else is literal, case is
# ignored; a pattern with a `?` is matched against path?query, others against the path.
# Add "*?*" to keep every URL with a query string on the origin.
DEFAULT_DYNAMIC: tuple[str, ...] = (
    "*.php",
    "*.cgi",
    "*.pl",
    "*.asp",
    "*.aspx",
    "*.jsp",
    "*.do",
    "/cgi-bin/*",
)


class Fault(_Strict):
    """An injected fault (labs and tests; `[faults] enabled` must be true): requests for
    `path` (a glob as in `dynamic`) on the edge, or any query for the serial's name on
    an LLNS, make the daemon crash, hang, or answer wrongly."""

    on: Literal["edge", "dns"]
    kind: Literal["crash", "hang", "wrong"]
    path: str = "*"


# RFC 9110 5.1/5.5: a field name is a token; a value has no CR, LF or NUL (no header injection)
FieldName = Annotated[str, msgspec.Meta(pattern=r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}$")]
FieldValue = Annotated[str, msgspec.Meta(pattern=r"^[^\x00-\x08\x0a-\x1f\x7f]{0,4096}$")]
# what header rules may not touch: framing and connection management are the edge's
RULE_FORBIDDEN = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "content-range",
    }  # fmt: skip
)

# what response rules may not touch either: the fields the edge adds to every answer
EDGE_RESPONSE_FIELDS = frozenset({"age", "via", "x-served-by", "x-cache", "cache-status", "date"})


class HeaderRule(_Strict):
    """One change to the fields of requests to the origin or responses to clients, in
    order: `add` appends a line, `set` replaces every line of the field, `remove` drops it."""

    action: Literal["add", "set", "remove"]
    name: FieldName
    value: FieldValue = ""


class Customer(_Strict):
    name: Ident
    serial: Annotated[int, msgspec.Meta(ge=1, le=999999)]
    origin: str
    hostnames: list[str] = []
    default_ttl: Annotated[int, msgspec.Meta(ge=0, le=31536000)] = 300
    # akamaize: which edge URLs the tool writes into the customer's pages
    akamaize: Literal["arl", "cname"] = "arl"  # ARL on aNNN.g.<base>, or the same path on edge_hostname
    arl_ttl: str = "1d"  # TTL written into ARLs: 30s, 5m, 12h, 7d or seconds (0 .. 365d)
    dynamic: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_DYNAMIC))
    edge_hostname: str = ""  # cname form: one of hostnames (CNAMEd to aNNN.g.<base>); default aNNN.g.<base>
    # keep one-hit wonders out of the store: an object is stored the second time it is asked for
    cache_on_second_request: bool = False
    faults: list[Fault] = []  # fault injection: refused unless the network's [faults] enabled
    request_headers: list[HeaderRule] = []  # applied to requests to the origin, last
    response_headers: list[HeaderRule] = []  # applied to every answer for this customer, last
    # compress compressible types the origin sends uncompressed (gzip or br, as the client accepts)
    compress: bool = False
    # HTTPS: the certificate served when SNI names one of `hostnames` (PEM; relative to the config)
    tls_cert: str = ""
    tls_key: str = ""
    # an https origin's certificate is verified (against the system CAs, or this PEM bundle)
    origin_verify: bool = True
    origin_ca_file: str = ""
    # SureRoute: race `sureroute_test_object` (a path on the origin) over the direct path and
    # intermediate regions; misses take the winner and fail over along the others
    sureroute: bool = False
    sureroute_test_object: str = ""
    # tiered distribution: parent regions, in preference order (None: the network's [parents] regions)
    parent_regions: list[str] | None = None


class Customers(_Strict):
    customers: list[Customer] = []


class NetworkFile(_Strict):
    base_domain: str
    keys: Keys
    customers: str = "customers.toml"
    state_dir: str = "/var/lib/akacdn"
    ports: Ports = Ports()
    ttl: TTLs = TTLs()
    timing: Timing = Timing()
    dns: DnsSettings = DnsSettings()
    edge: EdgeSettings = EdgeSettings()
    agent: AgentSettings = AgentSettings()
    messaging: MessagingSettings = MessagingSettings()
    election: ElectionSettings = ElectionSettings()
    mapping: MappingSettings = MappingSettings()
    recovery: RecoverySettings = RecoverySettings()
    release: ReleaseSettings = ReleaseSettings()
    faults: FaultSettings = FaultSettings()
    sureroute: SureRouteSettings = SureRouteSettings()
    parents: ParentSettings = ParentSettings()
    probing: ProbeSettings = ProbeSettings()
    map_subzones: list[str] = msgspec.field(default_factory=lambda: ["g"])
    regions: list[Region] = []
    machines: list[Machine] = []
    client_networks: list[ClientNetwork] = []


class Network(msgspec.Struct, frozen=True):
    """A loaded, validated deployment: the network file plus its customers."""

    path: str
    base_domain: str
    state_dir: str
    ports: Ports
    ttl: TTLs
    timing: Timing
    dns: DnsSettings
    edge: EdgeSettings
    agent: AgentSettings
    messaging: MessagingSettings
    election: ElectionSettings
    mapping: MappingSettings
    recovery: RecoverySettings
    release: ReleaseSettings
    faults: FaultSettings
    sureroute: SureRouteSettings
    parents: ParentSettings
    probing: ProbeSettings
    map_subzones: tuple[str, ...]
    client_networks: tuple[ClientNetwork, ...]
    message_key: bytes  # the key we send with
    message_key_id: int
    message_keys: dict[int, bytes]  # every key we accept, by id (the sending key among them)
    purge_token: str
    operator_token: str
    release_signers: dict[str, bytes]  # signer id -> Ed25519 public key
    regions: tuple[Region, ...]
    machines: tuple[Machine, ...]
    customers: tuple[Customer, ...]

    def machine(self, machine_id: str) -> Machine:
        for m in self.machines:
            if m.id == machine_id:
                return m
        raise KeyError(machine_id)

    def by_role(self, role: str) -> list[Machine]:
        return [m for m in self.machines if m.role == role]

    def region_peers(self, machine: Machine) -> list[Machine]:
        """The machines of `machine`'s region and role that take part in IP takeover
        (those with a host_address), in configured order: the buddy order."""
        return [m for m in self.machines if m.region == machine.region and m.role == machine.role and m.host_address]

    def service_addresses(self, machine: Machine) -> list[str]:
        """Where `machine`'s service answers: its addresses (`Machine.service`) and, with IP
        takeover, its region peers' too, which its agent may take over (bound with IP_FREEBIND)."""
        if not machine.host_address:
            return list(machine.service)
        return [*machine.service, *(a for p in self.region_peers(machine) if p.id != machine.id for a in p.service)]

    def state_path(self, machine_id: str) -> Path:
        return Path(self.state_dir) / machine_id

    def mapper_keys(self) -> dict[str, bytes]:
        return {m.id: bytes.fromhex(m.public_key) for m in self.by_role("mapper")}


def _decode(path: Path, data: bytes, typ: type) -> object:
    try:
        return msgspec.toml.decode(data, type=typ)
    except msgspec.ValidationError as e:
        msg = str(e)
        key = "$"
        if " - at `" in msg:
            msg, _, where = msg.rpartition(" - at `")
            key = where.rstrip("`")
        raise ConfigError(path, key, msg) from None
    except (msgspec.DecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(path, "$", f"not valid TOML: {e}") from None


def decode_toml(path: str | Path, data: bytes, typ: type) -> object:
    """Decode and validate TOML into `typ`; ConfigError(path, key, reason) when refused."""
    return _decode(Path(path), data, typ)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(path, "$", f"cannot read: {e.strerror or e}") from None


def _check_domain(path: Path, key: str, name: str) -> str:
    name = name.lower().rstrip(".")
    if not name or len(name) > 253 or not all(_LABEL.match(x) for x in name.split(".")):
        raise ConfigError(path, key, f"{name!r} is not a valid domain name")
    return name


def _address(
    path: Path, key: str, value: str, taken: set[ipaddress.IPv4Address | ipaddress.IPv6Address], version: int = 0
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address of a machine: valid, of `version` when given, used by no other (`taken`
    collects them)."""
    kind = {0: "an IP", 4: "an IPv4", 6: "an IPv6"}[version]
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(path, key, f"{value!r} is not {kind} address") from None
    if version and addr.version != version:
        raise ConfigError(path, key, f"{value!r} is not {kind} address")
    if addr in taken:
        raise ConfigError(path, key, f"{value} is used by another machine")
    taken.add(addr)
    return addr


def _check_network(path: Path, f: NetworkFile) -> None:
    k = f.keys
    if k.accept_message_key and k.accept_message_key_id == k.message_key_id:
        raise ConfigError(path, "$.keys.accept_message_key_id", "must differ from message_key_id")
    if f.election.interval >= f.election.lease:
        raise ConfigError(path, "$.election.lease", "must exceed election.interval")
    if f.mapping.flap_reuse >= f.mapping.flap_suppress:
        raise ConfigError(path, "$.mapping.flap_reuse", "must be below flap_suppress")
    for topic in f.messaging.deadlines:
        if not re.fullmatch(r"[a-z0-9_.-]{1,64}", topic):
            raise ConfigError(path, "$.messaging.deadlines", f"{topic!r} is not a topic name")
    if f.agent.release_grace and f.agent.release_grace < f.agent.interval:
        raise ConfigError(path, "$.agent.release_grace", "must be 0 or at least one interval")
    if f.timing.dead_after <= f.timing.heartbeat_interval:
        raise ConfigError(path, "$.timing.dead_after", "must exceed heartbeat_interval")
    regions = set()
    for i, r in enumerate(f.regions):
        if r.id in regions:
            raise ConfigError(path, f"$.regions[{i}].id", f"duplicate region {r.id!r}")
        regions.add(r.id)
    for i, r in enumerate(f.regions):
        for j, other in enumerate(r.fallback):
            if other not in regions or other == r.id:
                raise ConfigError(path, f"$.regions[{i}].fallback[{j}]", f"{other!r} is not another region")
    for j, other in enumerate(f.parents.regions):
        if other not in regions:
            raise ConfigError(path, f"$.parents.regions[{j}]", f"unknown region {other!r}")
    if f.sureroute.after_failure > f.sureroute.interval:
        raise ConfigError(path, "$.sureroute.after_failure", "must not exceed interval")
    if 0 < f.parents.balance_factor < 1:
        raise ConfigError(path, "$.parents.balance_factor", "must be 0 (off) or at least 1")
    for i, sub in enumerate(f.map_subzones):
        if not _LABEL.match(sub) or sub in ("whoami",) or re.fullmatch(r"z[a-h]|n\d.*", sub):
            raise ConfigError(path, f"$.map_subzones[{i}]", f"{sub!r} is not a usable subzone label")
    if len(set(f.map_subzones)) != len(f.map_subzones) or not f.map_subzones:
        raise ConfigError(path, "$.map_subzones", "must list distinct labels, at least one")
    prefixes: set[str] = set()
    for i, c in enumerate(f.client_networks):
        try:
            prefix = str(ipaddress.ip_network(c.prefix, strict=False))
        except ValueError:
            raise ConfigError(path, f"$.client_networks[{i}].prefix", f"{c.prefix!r} is not a network") from None
        if prefix in prefixes:
            raise ConfigError(path, f"$.client_networks[{i}].prefix", f"{prefix} is listed twice")
        prefixes.add(prefix)
        at = f"$.client_networks[{i}]"
        if c.region and c.region not in regions:
            raise ConfigError(path, f"{at}.region", f"unknown region {c.region!r}")
        for j, r in enumerate(c.regions):
            if r not in regions:
                raise ConfigError(path, f"{at}.regions[{j}]", f"unknown region {r!r}")
        if c.region and c.regions and c.region not in c.regions:
            raise ConfigError(path, f"{at}.region", f"{c.region!r} is not among the network's regions")
        for j, t in enumerate(c.probes):
            try:
                probe_target(t, 80 if c.probe == "tcp" else 53)
            except ValueError as e:
                raise ConfigError(path, f"{at}.probes[{j}]", str(e)) from None
    if f.mapping.return_load > f.mapping.target_load:
        raise ConfigError(path, "$.mapping.return_load", "must not exceed target_load")
    ids, endpoints = set(), set()
    for i, m in enumerate(f.machines):
        at = f"$.machines[{i}]"
        if m.id in ids:
            raise ConfigError(path, f"{at}.id", f"duplicate machine {m.id!r}")
        ids.add(m.id)
        addr = _address(path, f"{at}.address", m.address, endpoints)
        if m.address6:
            _address(path, f"{at}.address6", m.address6, endpoints, version=6)
        if m.host_address:
            _address(path, f"{at}.host_address", m.host_address, endpoints, version=addr.version)
        if m.role in ("edge", "llns"):
            if m.region not in regions:
                raise ConfigError(path, f"{at}.region", f"unknown region {m.region!r}")
        elif m.region and m.region not in regions:
            raise ConfigError(path, f"{at}.region", f"unknown region {m.region!r}")
        if m.role == "mapper":
            if not re.fullmatch(r"[0-9a-f]{64}", m.public_key):
                raise ConfigError(path, f"{at}.public_key", "mapper needs a 32-byte Ed25519 key in hex")
    for role in ("relay", "mapper", "tlns"):
        if not any(m.role == role for m in f.machines):
            raise ConfigError(path, "$.machines", f"needs at least one {role}")


def _check_customers(path: Path, cs: Customers) -> None:
    serials, names, hosts = set(), set(), set()
    for i, c in enumerate(cs.customers):
        at = f"$.customers[{i}]"
        if c.name in names:
            raise ConfigError(path, f"{at}.name", f"duplicate customer {c.name!r}")
        if c.serial in serials:
            raise ConfigError(path, f"{at}.serial", f"serial {c.serial} is used by another customer")
        names.add(c.name)
        serials.add(c.serial)
        if not re.fullmatch(r"https?://[^/\s]+/?", c.origin):
            raise ConfigError(path, f"{at}.origin", f"{c.origin!r} is not an http(s)://host[:port] URL")
        for j, h in enumerate(c.hostnames):
            h = _check_domain(path, f"{at}.hostnames[{j}]", h)
            if h in hosts:
                raise ConfigError(path, f"{at}.hostnames[{j}]", f"{h} belongs to another customer")
            hosts.add(h)
        _check_akamaize(path, at, c)
        for side in ("request_headers", "response_headers"):
            for j, rule in enumerate(getattr(c, side)):
                own = RULE_FORBIDDEN | (EDGE_RESPONSE_FIELDS if side == "response_headers" else frozenset())
                if rule.name.lower() in own:
                    raise ConfigError(path, f"{at}.{side}[{j}].name", f"{rule.name} is the edge's to set")
                if rule.action == "remove" and rule.value:
                    raise ConfigError(path, f"{at}.{side}[{j}].value", "a remove rule takes no value")
        if bool(c.tls_cert) != bool(c.tls_key):
            raise ConfigError(path, f"{at}.tls_cert", "tls_cert and tls_key go together")
        obj = c.sureroute_test_object
        if obj and (not _GLOB.fullmatch(obj) or not obj.startswith("/")):
            raise ConfigError(path, f"{at}.sureroute_test_object", f"{obj!r} is not a path (printable, starting '/')")
        if c.sureroute and not obj:
            raise ConfigError(path, f"{at}.sureroute_test_object", "SureRoute needs a test object to race")


_GLOB = re.compile(r"[!-~]{1,256}")


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A path glob (`dynamic`, `faults`) as a regex: `*` is any run of characters (also
    `/`), the rest literal, no case."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.IGNORECASE | re.DOTALL)


def _check_akamaize(path: Path, at: str, c: Customer) -> None:
    try:
        parse_ttl(c.arl_ttl)
    except TTLError as e:
        raise ConfigError(path, f"{at}.arl_ttl", str(e)) from None
    for j, pattern in enumerate(c.dynamic):
        if not _GLOB.fullmatch(pattern) or pattern[0] not in "/*":
            raise ConfigError(
                path,
                f"{at}.dynamic[{j}]",
                f"{pattern!r} is not a path glob (printable, no spaces, starting with '/' or '*')",
            )
    if c.edge_hostname:
        name = _check_domain(path, f"{at}.edge_hostname", c.edge_hostname)
        if name not in {h.lower().rstrip(".") for h in c.hostnames} and not serials.is_serial_host(name, c.serial):
            raise ConfigError(
                path,
                f"{at}.edge_hostname",
                f"{name} is neither one of the customer's hostnames nor a{c.serial}.<subzone>.<base domain>",
            )


def load_customers(path: str | Path, data: bytes | None = None) -> tuple[Customer, ...]:
    """Load and validate a customers file (`data`: its content, when it is not read from
    `path`, e.g. a release bundle's)."""
    path = Path(path)
    cs = _decode(path, _read(path) if data is None else data, Customers)
    assert isinstance(cs, Customers)
    _check_customers(path, cs)
    return tuple(
        msgspec.structs.replace(
            c,
            hostnames=[h.lower().rstrip(".") for h in c.hostnames],
            edge_hostname=c.edge_hostname.lower().rstrip("."),
        )
        for c in cs.customers
    )


def check_customers_fit(
    path: str | Path,
    customers: tuple[Customer, ...],
    base: str,
    subzones: tuple[str, ...] | list[str],
    faults: bool,
    regions: set[str] | None = None,
) -> None:
    """What a customers file must agree on with its network: edge hostnames under the base
    domain, fault injection only where the network enables it, parent regions that exist."""
    for i, c in enumerate(customers):
        own = {serials.hostname(c.serial, sub, base) for sub in subzones}
        if c.edge_hostname and c.edge_hostname not in c.hostnames and c.edge_hostname not in own:
            raise ConfigError(
                path,
                f"$.customers[{i}].edge_hostname",
                f"{c.edge_hostname} is neither one of the customer's hostnames nor under {base}",
            )
        for j, r in enumerate(c.parent_regions or ()):
            if regions is not None and r not in regions:
                raise ConfigError(path, f"$.customers[{i}].parent_regions[{j}]", f"unknown region {r!r}")
        if c.faults and not faults:
            raise ConfigError(path, f"$.customers[{i}].faults", "fault injection is off in this network ([faults])")
        for j, fault in enumerate(c.faults):
            if not _GLOB.fullmatch(fault.path) or fault.path[0] not in "/*":
                raise ConfigError(path, f"$.customers[{i}].faults[{j}].path", f"{fault.path!r} is not a path glob")


def check_certificate(path: str | Path, key: str, cert_file: Path, key_file: Path) -> None:
    """A TLS certificate chain and its private key (PEM) load and belong together; else
    ConfigError naming the file. Checked at every load, so a bad file is refused (and the
    running config, with its certificates, kept) rather than found at the first handshake."""
    import ssl  # only the config check and the edge's listener need it

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for f in (cert_file, key_file):
        if not f.is_file():
            raise ConfigError(path, key, f"cannot read {f}: no such file")
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except OSError as e:
        raise ConfigError(path, key, f"cannot read {cert_file} / {key_file}: {e.strerror or e}") from None
    except ssl.SSLError as e:
        why = e.reason or str(e)
        text = f"{cert_file} / {key_file}: not a PEM certificate chain and its key ({why})"
        raise ConfigError(path, key, text) from None


def check_tls(path: str | Path, config_dir: Path, customers: tuple[Customer, ...], edge: EdgeSettings) -> None:
    """Every configured certificate (the network's, each customer's) loads with its key."""
    if bool(edge.tls_cert) != bool(edge.tls_key):
        raise ConfigError(path, "$.edge.tls_cert", "tls_cert and tls_key go together")
    if edge.tls_cert:
        check_certificate(path, "$.edge.tls_cert", config_dir / edge.tls_cert, config_dir / edge.tls_key)
    for i, c in enumerate(customers):
        if c.tls_cert:
            check_certificate(path, f"$.customers[{i}].tls_cert", config_dir / c.tls_cert, config_dir / c.tls_key)
        ca = config_dir / c.origin_ca_file
        if c.origin_ca_file and not ca.is_file():
            raise ConfigError(path, f"$.customers[{i}].origin_ca_file", f"{ca}: no such file")


def load_network(path: str | Path) -> Network:
    """Load and validate a network file and the customers file it names."""
    path = Path(path).resolve()
    f = _decode(path, _read(path), NetworkFile)
    assert isinstance(f, NetworkFile)
    base = _check_domain(path, "$.base_domain", f.base_domain)
    _check_network(path, f)
    customers = load_customers(path.parent / f.customers)
    regions = {r.id for r in f.regions}
    check_customers_fit(path.parent / f.customers, customers, base, f.map_subzones, f.faults.enabled, regions)
    check_tls(path.parent / f.customers, path.parent, customers, f.edge)
    state_dir = Path(f.state_dir)
    if not state_dir.is_absolute():
        state_dir = path.parent / state_dir
    machines = tuple(
        msgspec.structs.replace(m, key_file=str(path.parent / m.key_file)) if m.key_file else m for m in f.machines
    )
    return Network(
        path=str(path),
        base_domain=base,
        state_dir=str(state_dir),
        ports=f.ports,
        ttl=f.ttl,
        timing=f.timing,
        dns=f.dns,
        edge=f.edge,
        agent=f.agent,
        messaging=msgspec.structs.replace(f.messaging, deadlines={**DEFAULT_DEADLINES, **f.messaging.deadlines}),
        election=f.election,
        mapping=f.mapping,
        recovery=f.recovery,
        release=f.release,
        faults=f.faults,
        sureroute=f.sureroute,
        parents=f.parents,
        probing=f.probing,
        map_subzones=tuple(f.map_subzones),
        client_networks=tuple(
            msgspec.structs.replace(c, prefix=str(ipaddress.ip_network(c.prefix, strict=False)))
            for c in f.client_networks
        ),
        message_key=bytes.fromhex(f.keys.message_key),
        message_key_id=f.keys.message_key_id,
        message_keys={
            f.keys.message_key_id: bytes.fromhex(f.keys.message_key),
            **(
                {f.keys.accept_message_key_id: bytes.fromhex(f.keys.accept_message_key)}
                if f.keys.accept_message_key
                else {}
            ),
        },
        purge_token=f.keys.purge_token,
        operator_token=f.keys.operator_token,
        release_signers={s.id: bytes.fromhex(s.public_key) for s in f.keys.release_signers},
        regions=tuple(f.regions),
        machines=machines,
        customers=customers,
    )
