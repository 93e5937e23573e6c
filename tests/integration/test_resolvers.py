"""Real resolvers resolve through TLNS -> LLNS: unbound and PowerDNS Recursor, each with
QNAME minimisation on and off, each a fresh process (empty cache) started by the test.

There is no root in the lab, so each resolver is told where `akacdn.test` is (the
parent's delegation): unbound by a stub-zone, pdns-recursor by `forward-zones` (which
sends RD=0 queries to the listed servers and follows their referrals: it iterates). Both
serve the customer's zone themselves (`www.demo.example CNAME a123.g.akacdn.test`), as
the customer's DNS provider would. The resolvers' own logs show which names they asked
the TLNSes: proof that minimisation was on (`g.akacdn.test` asked) or off (never).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from akacdn.devnet.network import BASE_DOMAIN, DEMO_HOST, DEMO_SERIAL
from akacdn.devnet.resolver import resolver_address, unbound_binary, unbound_conf
from akacdn.devnet.supervisor import Devnet, dns_query

from .conftest import Proc, dig, wait_for

NAME = f"a{DEMO_SERIAL}.g.{BASE_DOMAIN}"
SUB = f"g.{BASE_DOMAIN}"


@dataclass
class Resolver:
    kind: str  # "unbound" or "pdns"
    qmin: bool
    address: str
    proc: Proc

    def asked(self, servers: list[str]) -> list[str]:
        """The query names this resolver sent to these servers, read from its log."""
        log = self.proc.text()
        if self.kind == "unbound":
            # verbosity 3: "info: sending query: g.akacdn.test. A IN" then
            # "debug: sending to target: <akacdn.test.> 127.N.10.1#53"
            asked = re.findall(r"sending query: (\S+) \S+ IN\n.*sending to target: <[^>]*> ([\d.]+)#", log)
        else:
            # trace=yes: "g.akacdn.test: Trying IP 127.N.10.2:53, asking 'g.akacdn.test|A'"
            asked = [(n, a) for a, n in re.findall(r"Trying IP ([\d.]+):\d+, asking '([^|']+)\|", log)]
        assert asked, f"found no queries in {self.proc.log} (has the {self.kind} log format changed?)"
        return [name.rstrip(".").lower() for name, addr in asked if addr in servers]


def _pdns_binary() -> str | None:
    return shutil.which("pdns_recursor") or shutil.which("pdns_recursor", path="/usr/sbin")


def _stop_packaged_pdns() -> None:
    """Where an init system runs, apt starts the packaged pdns-recursor service (on
    127.0.0.1:53): stop it, so no stray recursor answers or holds sockets during tests."""
    running = subprocess.run(["pgrep", "-x", "pdns_recursor"], capture_output=True).returncode == 0
    if running and os.geteuid() == 0 and shutil.which("service"):
        subprocess.run(["service", "pdns-recursor", "stop"], capture_output=True, timeout=30)


def _customer_zone(directory: Path) -> Path:
    zone = DEMO_HOST.split(".", 1)[1]
    path = directory / f"{zone}.zone"
    path.write_text(
        f"$ORIGIN {zone}.\n$TTL 300\n"
        f"@ IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 604800 300\n"
        f"@ IN NS ns.{zone}.\nns IN A 127.0.0.1\n"
        f"{DEMO_HOST.split('.')[0]} IN CNAME {NAME}.\n"
    )
    return path


def start_unbound(dn: Devnet, directory: Path, address: str, qmin: bool, procs: Callable[..., Proc]) -> Proc:
    binary = unbound_binary()
    if binary is None:
        pytest.fail("unbound is not installed: run `make test`, which installs it")
    conf = unbound_conf(directory, dn.layout, dn.net, qname_minimisation=qmin)
    text = conf.read_text()
    default = f"interface: {resolver_address(dn.layout)}"
    assert default in text and "verbosity: 1" in text, "unbound_conf changed: update this test"
    # its own address for queries and answers (the devnet's unbound has the default one);
    # verbosity 3 logs the queries it sends, which shows whether it minimised
    own = f"interface: {address}\n  outgoing-interface: {address}"
    conf.write_text(text.replace(default, own).replace("verbosity: 1", "verbosity: 3"))
    return procs("unbound", [binary, "-d", "-c", str(conf)], directory / "unbound.log")


def start_pdns(dn: Devnet, directory: Path, address: str, qmin: bool, procs: Callable[..., Proc]) -> Proc:
    binary = _pdns_binary()
    if binary is None:
        pytest.fail("pdns-recursor is not installed: run `make test`, which installs it")
    _stop_packaged_pdns()
    directory.mkdir(parents=True, exist_ok=True)
    tlns = ";".join(f"{a}:{dn.layout.dns_port}" for a in dn.layout.tlns)
    zone = DEMO_HOST.split(".", 1)[1]
    settings = {
        "local-address": address,
        "local-port": dn.layout.dns_port,
        "query-local-address": address,
        "allow-from": "127.0.0.0/8",
        "socket-dir": directory,
        "daemon": "no",
        "write-pid": "no",
        "disable-syslog": "yes",
        "threads": 1,
        # no root in the lab: no root hints, no priming, no security polling, no DNSSEC;
        # and our nameservers live on loopback, which pdns refuses to query by default
        "hint-file": "no",
        "security-poll-suffix": "",
        "dnssec": "off",
        "dont-query": "",
        # the parent's delegation: RD=0 queries to the TLNSes, referrals followed
        "forward-zones": f"{BASE_DOMAIN}={tlns}",
        "auth-zones": f"{zone}={_customer_zone(directory)}",
        "qname-minimization": "yes" if qmin else "no",
        "trace": "yes",  # logs each query it sends: shows whether it minimised
    }
    (directory / "recursor.conf").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    return procs("pdns-recursor", [binary, f"--config-dir={directory}"], directory / "pdns.log")


# each resolver on (and asking from) a /24 of its own: the nameservers choose, cache and
# rate-limit per client /24, so no resolver meets answers another one left behind
_groups = itertools.count(60)
RESOLVERS = [("unbound", True), ("unbound", False), ("pdns", True), ("pdns", False)]


@pytest.fixture(params=RESOLVERS, ids=[f"{k}-qmin-{'on' if q else 'off'}" for k, q in RESOLVERS])
def resolver(
    request: pytest.FixtureRequest, module_devnet: Devnet, procs: Callable[..., Proc], tmp_path: Path
) -> Iterator[Resolver]:
    """A fresh resolver on its own loopback address, stopped after the test (see `procs`)."""
    kind, qmin = request.param
    dn = module_devnet
    address = dn.layout.addr(next(_groups), 1)  # 127.N.60.1, 127.N.61.1, ...
    start = start_unbound if kind == "unbound" else start_pdns
    proc = start(dn, tmp_path / kind, address, qmin, procs)

    def answering() -> bool:
        if proc.popen.poll() is not None:
            pytest.fail(f"{kind} exited with {proc.popen.returncode}:\n{proc.text()[-3000:]}")
        return dns_query(address, dn.layout.dns_port, "localhost", timeout=0.3) is not None

    wait_for(answering, 15, f"{kind} on {address} to answer")
    yield Resolver(kind, qmin, address, proc)


def replies(dn: Devnet, role: str, kind: str) -> float:
    return sum(dn.metric(m.id, "akacdn_dns_replies_total", kind=kind) for m in dn.net.by_role(role))


def llns_answers(dn: Devnet) -> float:
    """LLNS answers, also those its fast path served (counted as kind="cached", whatever
    they answered: an LLNS answer for a123 is the same for every client without a client
    route, so another resolver's identical query may have left it in the cache)."""
    return replies(dn, "llns", "answer") + replies(dn, "llns", "cached")


def assert_two_edges_of_one_region(dn: Devnet, answer: list[tuple[str, int, str, str]]) -> None:
    edges = {m.address: m.region for m in dn.net.by_role("edge")}
    addrs = [data for _, _, rtype, data in answer if rtype == "A"]
    assert len(addrs) == 2 and len(set(addrs)) == 2 and set(addrs) <= set(edges), addrs
    assert len({edges[a] for a in addrs}) == 1, f"the answer spans regions: {addrs}"
    ttls = [ttl for _, ttl, rtype, _ in answer if rtype == "A"]
    assert all(ttl <= dn.net.ttl.answer for ttl in ttls), f"TTLs {ttls}: the final answer must live <= 20 s"


def test_resolver_resolves_through_tlns_referral_and_llns(module_devnet: Devnet, resolver: Resolver) -> None:
    dn, port = module_devnet, module_devnet.layout.dns_port
    llns = [m.address for m in dn.net.by_role("llns")]
    referrals, answers = replies(dn, "tlns", "referral"), llns_answers(dn)

    d = dig(resolver.address, port, NAME)

    assert d.status == "NOERROR" and "ra" in d.flags, d.output
    assert_two_edges_of_one_region(dn, d.answer)
    # it got there through a TLNS referral and an LLNS answer, as the nameservers count
    # them and as the resolver's log tells
    assert replies(dn, "tlns", "referral") > referrals
    assert llns_answers(dn) > answers
    asked = resolver.asked(dn.layout.tlns)
    print(f"{resolver.kind} (qname minimisation {'on' if resolver.qmin else 'off'}) asked the TLNSes: {asked}")
    assert NAME in resolver.asked(llns), f"no LLNS was asked {NAME}: {resolver.asked(llns)}"
    if resolver.qmin:
        assert SUB in asked, f"QNAME minimisation on, yet {SUB} was never asked of a TLNS: {asked}"
    else:
        assert NAME in asked and SUB not in asked, f"QNAME minimisation off, yet the TLNS was asked {asked}"


def test_resolver_follows_the_customer_cname_into_the_cdn(module_devnet: Devnet, resolver: Resolver) -> None:
    dn, port = module_devnet, module_devnet.layout.dns_port
    referrals = replies(dn, "tlns", "referral")

    d = dig(resolver.address, port, DEMO_HOST)

    assert d.status == "NOERROR", d.output
    cnames = [(owner.lower(), data.lower()) for owner, _, rtype, data in d.answer if rtype == "CNAME"]
    assert cnames == [(f"{DEMO_HOST}.", f"{NAME}.")], d.output
    assert_two_edges_of_one_region(dn, d.answer)
    assert replies(dn, "tlns", "referral") > referrals  # a fresh resolver: nothing cached
