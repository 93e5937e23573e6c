"""The DNS benchmark's pure parts: what it writes (zones, queries, network config) and
how it reads dnsperf; dnspython is the second parser for what goes on the wire."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import dns.edns
import dns.message
import dns.rdatatype
import dns.zone
import pytest

from akacdn.config import ConfigError, load_network
from bench.dns import dnsperf, network, peers, queries, report, system

SUMMARY = """DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -B -d q.bin -s 127.77.90.1 -l 10
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         413934
  Queries completed:    413930 (100.00%)
  Queries lost:         4 (0.00%)

  Response codes:       NOERROR 372537 (90.00%), NXDOMAIN 41393 (10.00%)
  Average packet size:  request 35, response 211
  Run time (s):         3.001945
  Queries per second:   137888.602223

  Average Latency (s):  0.000622 (min 0.000012, max 0.004749)
  Latency StdDev (s):   0.000533
"""


def test_dnsperf_summary_is_read() -> None:
    r = dnsperf.parse_summary(SUMMARY)
    assert (r.sent, r.completed, r.lost) == (413934, 413930, 4)
    assert r.rcodes == {"NOERROR": 372537, "NXDOMAIN": 41393}
    assert r.qps == pytest.approx(137888.6, abs=0.1) and r.runtime == pytest.approx(3.001945)
    assert (r.avg_latency, r.min_latency, r.max_latency) == (0.000622, 0.000012, 0.004749)


def test_percentiles_from_verbose_output(tmp_path: Path) -> None:
    lines = [f"> NOERROR binary input {i / 1e6:.6f}" for i in range(1, 1001)]
    lines += ["> T binary input", "[Status] Testing complete (time limit)", SUMMARY]
    (tmp_path / "v.out").write_text("\n".join(lines))
    p50, p99 = dnsperf.percentiles(tmp_path / "v.out")  # type: ignore[misc]
    assert p50 == pytest.approx(501e-6) and p99 == pytest.approx(991e-6)


def test_queries_are_what_a_resolver_sends() -> None:
    wire = queries.query("a7.g.akacdn.test", "A", 0x0A0B0C)
    m = dns.message.from_wire(wire)
    assert m.question[0].name.to_text() == "a7.g.akacdn.test." and m.question[0].rdtype == dns.rdatatype.A
    assert not m.flags & dns.flags.RD and m.edns == 0 and m.payload == 1232
    (ecs,) = m.options
    assert isinstance(ecs, dns.edns.ECSOption) and ecs.address == "10.11.12.0" and ecs.srclen == 24
    assert dns.message.from_wire(queries.query("akacdn.test", "SOA", None)).options == ()


@pytest.mark.parametrize(("mix", "variant"), [("llns", "plain"), ("llns", "ecs"), ("tlns", "ecs")])
def test_query_mix_file(tmp_path: Path, mix: str, variant: str) -> None:
    path = queries.write_mix(tmp_path / "q.bin", mix, variant, "akacdn.test", 1000, count=2000)
    data, msgs = path.read_bytes(), []
    while data:
        (n,) = struct.unpack("!H", data[:2])
        msgs.append(dns.message.from_wire(data[2 : 2 + n]))
        data = data[2 + n :]
    assert len(msgs) == 2000
    serials = [m for m in msgs if m.question[0].name.labels[0].startswith(b"a") and len(m.question[0].name) == 5]
    known = [m for m in serials if int(m.question[0].name.labels[0][1:]) <= 1000]
    assert 0.7 < len(known) / len(msgs) < 0.9  # ~85% / ~80% of the mix
    assert len({m.question[0].name for m in known}) > 500  # many serials
    if variant == "ecs":
        assert len({m.options[0].address for m in msgs}) > 500  # many client subnets
    else:
        assert all(m.options == () for m in msgs)


def test_zones_parse_and_match_the_akacdn_names() -> None:
    g = dns.zone.from_text(peers.llns_zone("akacdn.test", 1000, ["127.77.1.11", "127.77.1.12", "127.77.1.13"]))
    assert len(g.get_rdataset("a1", "A")) == 2 and len(g.get_rdataset("a1000", "A")) == 2
    assert g.get_rdataset("a1001", "A") is None and len(g.get_rdataset("@", "NS")) == 8
    base = dns.zone.from_text(peers.tlns_zone("akacdn.test", ["127.77.10.1"], ["127.77.1.1", "127.77.2.1"]))
    assert len(base.get_rdataset("g", "NS")) == 8 and base.get_rdataset("n7g", "A") is not None
    assert len(base.get_rdataset("@", "NS")) == 8 and base.get_rdataset("zh", "A") is not None


def test_bench_network_loads_and_seeds(tmp_path: Path) -> None:
    path, notes = network.write_config(tmp_path, network.layout(53), ["1.2.3.0/24", "5.6.7.0/24"])
    net = load_network(path)
    assert len(net.customers) == 1000 and net.customers[-1].hostnames == ["www1000.bench.example"]
    assert len(net.by_role("llns")) == 3 and len(net.by_role("edge")) == 9 and len(net.by_role("tlns")) == 1
    assert all(m.address.startswith("127.77.") for m in net.machines)
    _, written = network.seed(path)
    assert written == 4  # 1 TLNS + 3 LLNS
    w2, got, w_notes = network.with_workers(path, 2)
    assert got in (1, 2) and (got == 2 or w_notes)
    load_network(w2)


def test_refused_optional_settings_are_named() -> None:
    opt = {"dns": {"workers": 2, "rrl_rate": 0}, "client_networks": []}
    unknown_table = ConfigError("f", "$", "Object contains unknown field `dns`")
    unknown_key = ConfigError("f", "$.dns", "Object contains unknown field `workers`")
    bad_value = ConfigError("f", "$.client_networks[3].prefix", "bad")
    assert network._refused_part(unknown_table, opt) == ("dns", None)
    assert network._refused_part(unknown_key, opt) == ("dns", "workers")
    assert network._refused_part(bad_value, opt) == ("client_networks", None)
    assert network._refused_part(ConfigError("f", "$.machines", "bad"), opt) is None


def _row(server: str, kind: str, apcs: float, rnd: int = 1, procs: int = 1) -> dict[str, object]:
    return {
        "server": server,
        "kind": kind,
        "group": "llns",
        "variant": "plain",
        "round": rnd,
        "processes": procs,
        "answers_per_cpu_s": apcs,
        "qps": 1000.0,
        "avg_latency": 0.001,
        "p99_latency": 0.002,
        "max_latency": 0.003,
        "server_cpu": 1.0,
        "server_cores": 0.5,
        "other_cores": 0.1,
        "notes": [],
    }


def test_medians_ratios_and_table() -> None:
    runs = [_row("NSD", "nsd", x) for x in (100.0, 300.0, 200.0)] + [_row("akacdn LLNS", "akacdn", 50.0)]
    rows = report.medians(runs)
    report.add_ratios(rows)
    nsd, ak = sorted(rows, key=lambda r: r["kind"] != "nsd")
    assert nsd["answers_per_cpu_s"] == 200.0 and nsd["samples"] == [100.0, 300.0, 200.0]
    assert ak["ratio_to_nsd"] == 0.25
    text = report.table(rows)
    assert text.splitlines()[0].startswith("| zone") and "0.25" in text and len(text.splitlines()) == 4


def test_tree_cpu_counts_children() -> None:
    import os

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    try:
        cpu, count = system.tree_cpu(os.getpid())
        assert count >= 2 and cpu > 0
    finally:
        child.kill()
        child.wait()
