"""The peers: NSD and Knot DNS serving static zones equivalent to what the LLNS and the
TLNS answer, each run in the foreground from a config in the benchmark's temp dir.

Two static zones stand in for the two akacdn nameservers:

* `g.<base>` (LLNS): SOA, NS n0g..n7g, and a1..aN with two A records each;
* `<base>` (TLNS): SOA, apex NS za..zh with glue, and the delegation of `g` to
  n0g..n7g with glue (8 names over the LLNS addresses, as the TLNS hands out).
"""

from __future__ import annotations

from pathlib import Path

NS_LETTERS = "abcdefgh"
SOA_TIMES = "3600 600 604800 300"


def llns_zone(base: str, serials: int, edges: list[str]) -> str:
    """The map subzone as a static zone: every serial gets 2 edges, dealt round-robin."""
    zone = f"g.{base}"
    lines = [
        f"$ORIGIN {zone}.",
        "$TTL 20",
        f"@ 300 IN SOA n0g.{base}. hostmaster.{zone}. 1 {SOA_TIMES}",
        *(f"@ 1800 IN NS n{i}g.{base}." for i in range(8)),
    ]
    for s in range(1, serials + 1):
        a, b = edges[s % len(edges)], edges[(s + 1) % len(edges)]
        lines += [f"a{s} IN A {a}", f"a{s} IN A {b}"]
    return "\n".join(lines) + "\n"


def tlns_zone(base: str, tlns: list[str], llns: list[str]) -> str:
    """The base domain as a static zone: apex NS with glue, `g` delegated with glue."""
    lines = [
        f"$ORIGIN {base}.",
        "$TTL 1800",
        f"@ 300 IN SOA za.{base}. hostmaster.{base}. 1 {SOA_TIMES}",
        *(f"@ IN NS z{c}.{base}." for c in NS_LETTERS),
        *(f"z{c} IN A {tlns[i % len(tlns)]}" for i, c in enumerate(NS_LETTERS)),
        *(f"g IN NS n{i}g.{base}." for i in range(8)),
        *(f"n{i}g IN A {llns[i % len(llns)]}" for i in range(8)),
    ]
    return "\n".join(lines) + "\n"


def nsd_conf(directory: Path, address: str, port: int, zone: str, zonefile: Path, processes: int) -> Path:
    """An NSD config: one address, no rate limiting, `processes` server processes
    (SO_REUSEPORT when more than one, as NSD advises), no zone database, no control."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nsd.conf"
    conf.write_text(
        f"""server:
    ip-address: {address}@{port}
    do-ip6: no
    server-count: {processes}
    reuseport: {"yes" if processes > 1 else "no"}
    username: ""
    chroot: ""
    zonesdir: "{directory}"
    database: ""
    zonelistfile: "{directory}/zone.list"
    xfrdfile: "{directory}/xfrd.state"
    xfrdir: "{directory}"
    pidfile: "{directory}/nsd.pid"
    logfile: "{directory}/nsd.log"
    verbosity: 1
    hide-version: no
    identity: "nsd-bench"
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
    minimal-responses: no
    refuse-any: yes

remote-control:
    control-enable: no

zone:
    name: "{zone}"
    zonefile: "{zonefile}"
"""
    )
    return conf


def nsd_argv(conf: Path) -> list[str]:
    return ["nsd", "-d", "-c", str(conf)]


def knot_conf(directory: Path, address: str, port: int, zone: str, zonefile: Path, processes: int) -> Path:
    """A Knot config: one address, `processes` UDP workers (threads of one knotd;
    Knot binds one SO_REUSEPORT socket per worker), one TCP and one background worker,
    no rate limiting (Knot has none unless the rrl module is loaded)."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "knot.conf"
    conf.write_text(
        f"""server:
    rundir: "{directory}"
    listen: {address}@{port}
    udp-workers: {processes}
    tcp-workers: 1
    background-workers: 1
    identity: "knot-bench"

log:
  - target: stderr
    any: warning

database:
    storage: "{directory}"

template:
  - id: default
    storage: "{directory}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off

zone:
  - domain: {zone}
    file: "{zonefile}"
"""
    )
    return conf


def knot_argv(conf: Path) -> list[str]:
    # a textual config only: knotd then keeps no config database of its own
    return ["knotd", "-c", str(conf)]
