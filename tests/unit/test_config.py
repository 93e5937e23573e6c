"""Config validation: every bad file is refused with (file, key, reason), nothing else escapes.

Each case starts from a small valid network + customers pair, breaks one thing, and
names the key and a fragment of the reason the refusal must carry.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from akacdn.config import ConfigError, load_customers, load_network, probe_target

ROOT = Path(__file__).resolve().parents[2]
KEY_HEX = "ab" * 32  # a syntactically valid Ed25519 public key (64 hex digits)

BASE_NETWORK: dict[str, Any] = {
    "base_domain": "akacdn.test",
    "customers": "customers.toml",
    "keys": {"message_key": "0123456789abcdef" * 4},
    "timing": {"heartbeat_interval": 1.0, "dead_after": 3.0},
    "regions": [{"id": "r1"}, {"id": "r2"}],
    "machines": [
        {"id": "tlns1", "role": "tlns", "address": "127.0.10.1"},  # 0
        {"id": "relay1", "role": "relay", "address": "127.0.20.1"},  # 1
        {"id": "mc1", "role": "mapper", "address": "127.0.30.1", "public_key": KEY_HEX},  # 2
        {"id": "r1-llns", "role": "llns", "region": "r1", "address": "127.0.1.1"},  # 3
        {"id": "r1-e1", "role": "edge", "region": "r1", "address": "127.0.1.11"},  # 4
        {"id": "r2-e1", "role": "edge", "region": "r2", "address": "127.0.2.11"},  # 5
    ],
}

BASE_CUSTOMERS: dict[str, Any] = {
    "customers": [
        {"name": "alpha", "serial": 1, "origin": "http://origin-a.example", "hostnames": ["www.a.example"]},
        {"name": "beta", "serial": 2, "origin": "https://origin-b.example:8443/", "hostnames": ["www.b.example"]},
    ]
}

Mutate = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutate:
    """A mutation that sets a dotted path (list indexes as numbers) to value."""

    def go(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
        if last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return go


def _delete(path: str) -> Mutate:
    def go(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        del node[last]

    return go


def _drop_role(role: str) -> Mutate:
    def go(doc: dict[str, Any]) -> None:
        doc["machines"] = [m for m in doc["machines"] if m["role"] != role]

    return go


def _write(directory: Path, network: dict[str, Any], customers: dict[str, Any]) -> Path:
    (directory / "customers.toml").write_text(tomli_w.dumps(customers))
    path = directory / "network.toml"
    path.write_text(tomli_w.dumps(network))
    return path


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return _write(tmp_path, BASE_NETWORK, BASE_CUSTOMERS)


def test_the_base_files_are_valid(good: Path) -> None:
    net = load_network(good)
    assert net.base_domain == "akacdn.test"
    assert [m.id for m in net.by_role("edge")] == ["r1-e1", "r2-e1"]
    assert [c.serial for c in net.customers] == [1, 2]
    assert net.message_key == bytes.fromhex(BASE_NETWORK["keys"]["message_key"])
    assert net.message_keys == {1: net.message_key} and net.message_key_id == 1
    assert net.messaging.deadline("map.low") == 10.0 and net.messaging.deadline("heartbeat") == 0.0
    assert net.messaging.deadline("something") == net.messaging.default_deadline


def test_messaging_deadlines_override_by_topic_or_its_first_word(tmp_path: Path) -> None:
    doc = copy.deepcopy(BASE_NETWORK)
    doc["messaging"] = {"deadlines": {"map.low": 3.0, "purge": 60.0}}
    doc["keys"].update(accept_message_key="cd" * 16, accept_message_key_id=7)
    net = load_network(_write(tmp_path, doc, BASE_CUSTOMERS))
    assert net.messaging.deadline("map.low") == 3.0 and net.messaging.deadline("map.top") == 10.0
    assert net.messaging.deadline("purge") == 60.0 and net.messaging.deadline("heartbeat") == 0.0
    assert net.message_keys == {1: net.message_key, 7: bytes.fromhex("cd" * 16)}


NETWORK_CASES: list[tuple[str, Mutate, str, str]] = [
    # (case id, mutation of the network file, expected key, reason fragment)
    ("unknown-top-level-key", _set("colour", "blue"), "$", "unknown field `colour`"),
    ("unknown-machine-key", _set("machines.3.rack", "b7"), "$.machines[3]", "unknown field `rack`"),
    ("unknown-timing-key", _set("timing.heartbeat", 1.0), "$.timing", "unknown field `heartbeat`"),
    ("missing-base-domain", _delete("base_domain"), "$", "missing required field `base_domain`"),
    ("missing-keys", _delete("keys"), "$", "missing required field `keys`"),
    ("port-wrong-type", _set("ports.dns", "53"), "$.ports.dns", "Expected `int`"),
    ("port-out-of-range", _set("ports.http", 70000), "$.ports.http", "<= 65535"),
    ("port-zero", _set("ports.dns", 0), "$.ports.dns", ">= 1"),
    ("capacity-float", _set("machines.4.capacity", 1.5), "$.machines[4].capacity", "Expected `int`"),
    ("capacity-zero", _set("machines.4.capacity", 0), "$.machines[4].capacity", ">= 1"),
    ("address-wrong-type", _set("machines.3.address", 127), "$.machines[3].address", "Expected `str`"),
    ("referral-ttl-too-low", _set("ttl.referral", 10), "$.ttl.referral", ">= 60"),
    ("timing-negative", _set("timing.map_interval", -1.0), "$.timing.map_interval", "> 0"),
    ("unknown-role", _set("machines.0.role", "cache"), "$.machines[0].role", "Invalid enum value 'cache'"),
    ("bad-machine-id", _set("machines.4.id", "R1_E1"), "$.machines[4].id", "regex"),
    ("message-key-short", _set("keys.message_key", "abcd"), "$.keys.message_key", "regex"),
    ("message-key-uppercase", _set("keys.message_key", "AB" * 16), "$.keys.message_key", "regex"),
    ("bad-ip", _set("machines.3.address", "127.0.0.300"), "$.machines[3].address", "is not an IP address"),
    ("hostname-not-ip", _set("machines.3.address", "llns.example"), "$.machines[3].address", "not an IP address"),
    ("duplicate-machine-id", _set("machines.5.id", "r1-e1"), "$.machines[5].id", "duplicate machine 'r1-e1'"),
    ("duplicate-address", _set("machines.5.address", "127.0.1.11"), "$.machines[5].address", "used by another machine"),
    (
        "host-address-taken",
        _set("machines.5.host_address", "127.0.1.11"),
        "$.machines[5].host_address",
        "used by another machine",
    ),
    (
        "host-address-family",
        _set("machines.5.host_address", "fd00::5"),
        "$.machines[5].host_address",
        "not an IPv4 address",
    ),
    ("agent-grace-below-interval", _set("agent.release_grace", 0.01), "$.agent.release_grace", "at least one"),
    ("messaging-paths-zero", _set("messaging.paths", 0), "$.messaging.paths", ">= 1"),
    ("messaging-chunk-too-big", _set("messaging.chunk_bytes", 9000), "$.messaging.chunk_bytes", "<= 1300"),
    ("messaging-unknown-key", _set("messaging.loss", 1), "$.messaging", "unknown field `loss`"),
    ("messaging-negative-deadline", _set("messaging.deadlines", {"map": -1.0}), "$.messaging.deadlines[...]", ">= 0"),
    ("messaging-bad-topic", _set("messaging.deadlines", {"Map Low": 1.0}), "$.messaging.deadlines", "not a topic"),
    ("key-id-out-of-range", _set("keys.message_key_id", 256), "$.keys.message_key_id", "<= 255"),
    ("accept-key-short", _set("keys.accept_message_key", "ab"), "$.keys.accept_message_key", "regex"),
    (
        "accept-key-same-id",
        _set("keys", {"message_key": "ab" * 16, "accept_message_key": "cd" * 16, "accept_message_key_id": 1}),
        "$.keys.accept_message_key_id",
        "must differ",
    ),
    (
        "duplicate-address-v6",
        lambda d: (_set("machines.4.address", "::1")(d), _set("machines.5.address", "0::1")(d)),
        "$.machines[5].address",
        "used by another machine",
    ),
    ("duplicate-region", _set("regions.1.id", "r1"), "$.regions[1].id", "duplicate region 'r1'"),
    ("unknown-region", _set("machines.4.region", "r9"), "$.machines[4].region", "unknown region 'r9'"),
    ("edge-without-region", _delete("machines.4.region"), "$.machines[4].region", "unknown region ''"),
    ("llns-without-region", _delete("machines.3.region"), "$.machines[3].region", "unknown region ''"),
    ("tlns-in-unknown-region", _set("machines.0.region", "r7"), "$.machines[0].region", "unknown region 'r7'"),
    ("mapper-without-public-key", _delete("machines.2.public_key"), "$.machines[2].public_key", "Ed25519"),
    ("mapper-short-public-key", _set("machines.2.public_key", "ab" * 16), "$.machines[2].public_key", "Ed25519"),
    ("no-relay", _drop_role("relay"), "$.machines", "needs at least one relay"),
    ("no-mapper", _drop_role("mapper"), "$.machines", "needs at least one mapper"),
    ("no-tlns", _drop_role("tlns"), "$.machines", "needs at least one tlns"),
    ("dead-after-equal", _set("timing.dead_after", 1.0), "$.timing.dead_after", "must exceed heartbeat_interval"),
    ("dead-after-below", _set("timing.dead_after", 0.5), "$.timing.dead_after", "must exceed heartbeat_interval"),
    ("base-domain-leading-hyphen", _set("base_domain", "-cdn.test"), "$.base_domain", "not a valid domain name"),
    ("base-domain-empty-label", _set("base_domain", "akacdn..test"), "$.base_domain", "not a valid domain name"),
    ("base-domain-underscore", _set("base_domain", "aka_cdn.test"), "$.base_domain", "not a valid domain name"),
    ("base-domain-empty", _set("base_domain", ""), "$.base_domain", "not a valid domain name"),
    ("base-domain-long-label", _set("base_domain", "a" * 64 + ".test"), "$.base_domain", "not a valid domain name"),
    ("parent-region-unknown", _set("parents", {"regions": ["r1", "r9"]}), "$.parents.regions[1]", "unknown region"),
    ("parent-balance-below-one", _set("parents", {"balance_factor": 0.5}), "$.parents.balance_factor", "at least 1"),
    ("parent-threshold-zero", _set("parents", {"fail_threshold": 0}), "$.parents.fail_threshold", ">= 1"),
    (
        "sureroute-race-after-interval",
        _set("sureroute", {"interval": 10.0, "after_failure": 20.0}),
        "$.sureroute.after_failure",
        "must not exceed interval",
    ),
    ("sureroute-width-one", _set("sureroute", {"width": 1}), "$.sureroute.width", ">= 2"),
    # measured mapping
    ("network-region-unknown", _set("client_networks", [{"prefix": "198.18.0.0/24", "region": "r9"}]),
     "$.client_networks[0].region", "unknown region 'r9'"),
    ("network-regions-unknown", _set("client_networks", [{"prefix": "198.18.0.0/24", "regions": ["r1", "r7"]}]),
     "$.client_networks[0].regions[1]", "unknown region 'r7'"),
    ("network-static-not-allowed", _set("client_networks", [{"prefix": "198.18.0.0/24", "region": "r1",
     "regions": ["r2"]}]), "$.client_networks[0].region", "not among the network's regions"),
    ("probe-target-name", _set("client_networks", [{"prefix": "198.18.0.0/24", "probes": ["resolver.example"]}]),
     "$.client_networks[0].probes[0]", "is not address[:port]"),
    ("probe-target-port", _set("client_networks", [{"prefix": "198.18.0.0/24", "probes": ["198.18.0.1:0"]}]),
     "$.client_networks[0].probes[0]", "bad port"),
    ("probe-target-v6-port", _set("client_networks", [{"prefix": "198.18.0.0/24", "probes": ["[fd00::1]x"]}]),
     "$.client_networks[0].probes[0]", "is not address[:port]"),
    ("probe-method", _set("client_networks", [{"prefix": "198.18.0.0/24", "probe": "icmp"}]),
     "$.client_networks[0].probe", "Invalid enum value 'icmp'"),
    ("network-twice", _set("client_networks", [{"prefix": "198.18.0.0/24"}, {"prefix": "198.18.0.7/24"}]),
     "$.client_networks[1].prefix", "198.18.0.0/24 is listed twice"),
    ("network-weight-zero", _set("client_networks", [{"prefix": "198.18.0.0/24", "weight": 0}]),
     "$.client_networks[0].weight", "> 0"),
    ("return-above-target", _set("mapping", {"target_load": 0.8, "return_load": 0.9}), "$.mapping.return_load",
     "must not exceed target_load"),
    ("probe-rate-zero", _set("probing", {"rate": 0}), "$.probing.rate", ">= 1"),
    ("max-rps-negative", _set("machines.4.max_rps", -1), "$.machines[4].max_rps", ">= 0"),
]  # fmt: skip


def test_probe_targets_parse() -> None:
    assert probe_target("198.18.0.1", 53) == ("198.18.0.1", 53)
    assert probe_target("198.18.0.1:5300", 53) == ("198.18.0.1", 5300)
    assert probe_target("fd00::1", 53) == ("fd00::1", 53)
    assert probe_target("[fd00::1]:80", 53) == ("fd00::1", 80)


@pytest.mark.parametrize(("mutate", "key", "reason"), [c[1:] for c in NETWORK_CASES], ids=[c[0] for c in NETWORK_CASES])
def test_bad_network_file_is_refused(tmp_path: Path, mutate: Mutate, key: str, reason: str) -> None:
    doc = copy.deepcopy(BASE_NETWORK)
    mutate(doc)
    path = _write(tmp_path, doc, BASE_CUSTOMERS)
    with pytest.raises(ConfigError) as got:
        load_network(path)
    assert (got.value.file, got.value.key) == (str(path.resolve()), key)
    assert reason in got.value.reason
    assert str(got.value) == f"{path.resolve()}: {key}: {got.value.reason}"


def _dup_hostname(doc: dict[str, Any]) -> None:
    doc["customers"][1]["hostnames"] = ["www.x.example", "WWW.A.example."]  # same name once normalised


CUSTOMER_CASES: list[tuple[str, Mutate, str, str]] = [
    ("unknown-key", _set("customers.0.cname", "x"), "$.customers[0]", "unknown field `cname`"),
    ("unknown-top-level-key", _set("origins", []), "$", "unknown field `origins`"),
    ("serial-wrong-type", _set("customers.0.serial", "1"), "$.customers[0].serial", "Expected `int`"),
    ("serial-zero", _set("customers.0.serial", 0), "$.customers[0].serial", ">= 1"),
    ("serial-too-big", _set("customers.0.serial", 1000000), "$.customers[0].serial", "<= 999999"),
    ("missing-origin", _delete("customers.1.origin"), "$.customers[1]", "missing required field `origin`"),
    ("duplicate-serial", _set("customers.1.serial", 1), "$.customers[1].serial", "serial 1 is used by another"),
    ("duplicate-name", _set("customers.1.name", "alpha"), "$.customers[1].name", "duplicate customer 'alpha'"),
    ("duplicate-hostname", _dup_hostname, "$.customers[1].hostnames[1]", "belongs to another customer"),
    (
        "bad-hostname",
        _set("customers.0.hostnames", ["ok.example", "bad_host.example"]),
        "$.customers[0].hostnames[1]",
        "not a valid domain name",
    ),
    (
        "origin-ftp",
        _set("customers.0.origin", "ftp://origin.example"),
        "$.customers[0].origin",
        "is not an http(s)://host[:port] URL",
    ),
    (
        "origin-with-path",
        _set("customers.0.origin", "http://origin.example/path"),
        "$.customers[0].origin",
        "http(s)://host[:port]",
    ),
    ("origin-no-scheme", _set("customers.0.origin", "origin.example"), "$.customers[0].origin", "http(s)://"),
    (
        "sureroute-without-test-object",
        _set("customers.0.sureroute", True),
        "$.customers[0].sureroute_test_object",
        "needs a test object",
    ),
    (
        "sureroute-test-object-not-a-path",
        _set("customers.0.sureroute_test_object", "test.gif"),
        "$.customers[0].sureroute_test_object",
        "not a path",
    ),
    ("origin-empty-host", _set("customers.0.origin", "http://"), "$.customers[0].origin", "http(s)://"),
]


@pytest.mark.parametrize(
    ("mutate", "key", "reason"), [c[1:] for c in CUSTOMER_CASES], ids=[c[0] for c in CUSTOMER_CASES]
)
def test_bad_customers_file_is_refused(tmp_path: Path, mutate: Mutate, key: str, reason: str) -> None:
    doc = copy.deepcopy(BASE_CUSTOMERS)
    mutate(doc)
    path = _write(tmp_path, BASE_NETWORK, doc)
    customers = tmp_path / "customers.toml"
    for load, arg in ((load_network, path), (load_customers, customers)):
        with pytest.raises(ConfigError) as got:
            load(arg)
        assert Path(got.value.file).resolve() == customers.resolve()  # the customers file is named
        assert got.value.key == key
        assert reason in got.value.reason


def test_hostnames_are_normalised(tmp_path: Path) -> None:
    doc = copy.deepcopy(BASE_CUSTOMERS)
    doc["customers"][0]["hostnames"] = ["WWW.A.Example."]
    net = load_network(_write(tmp_path, BASE_NETWORK, doc))
    assert net.customers[0].hostnames == ["www.a.example"]


# --- files that are not there or not TOML -------------------------------------------------


def test_missing_network_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as got:
        load_network(tmp_path / "nope.toml")
    assert (got.value.key, Path(got.value.file).name) == ("$", "nope.toml")
    assert "cannot read" in got.value.reason


def test_network_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as got:
        load_network(tmp_path)
    assert got.value.key == "$" and "cannot read" in got.value.reason


def test_missing_customers_file_names_the_customers_file(tmp_path: Path) -> None:
    doc = copy.deepcopy(BASE_NETWORK)
    doc["customers"] = "elsewhere.toml"
    path = _write(tmp_path, doc, BASE_CUSTOMERS)
    with pytest.raises(ConfigError) as got:
        load_network(path)
    assert Path(got.value.file).name == "elsewhere.toml"
    assert got.value.key == "$" and "cannot read" in got.value.reason


@pytest.mark.parametrize(
    "text",
    [b"base_domain = ", b"[keys\n", b'base_domain = "a"\nbase_domain = "b"\n', b"= 1\n"],
    ids=["no-value", "unclosed-table", "duplicate-key", "no-key"],
)
def test_invalid_toml_syntax(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "network.toml"
    path.write_bytes(text)
    with pytest.raises(ConfigError) as got:
        load_network(path)
    assert got.value.key == "$" and "not valid TOML" in got.value.reason


def test_customers_file_with_invalid_toml(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE_NETWORK, BASE_CUSTOMERS)
    (tmp_path / "customers.toml").write_text("[[customers]\n")
    with pytest.raises(ConfigError) as got:
        load_network(path)
    assert Path(got.value.file).name == "customers.toml"
    assert "not valid TOML" in got.value.reason


def test_invalid_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "network.toml"
    path.write_bytes(b'base_domain = "caf\xe9.test"\n')
    with pytest.raises(ConfigError) as got:
        load_network(path)
    assert got.value.key == "$"


def test_odd_length_message_key_is_a_config_error(tmp_path: Path) -> None:
    doc = copy.deepcopy(BASE_NETWORK)
    doc["keys"]["message_key"] = "a" * 33
    path = _write(tmp_path, doc, BASE_CUSTOMERS)
    with pytest.raises(ConfigError) as got:
        load_network(path)
    assert got.value.key == "$.keys.message_key"


# --- the command line refuses cleanly ------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "akacdn", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def _commands(path: Path) -> list[list[str]]:
    return [["check-config", str(path)], ["edge", "--config", str(path), "--machine", "x", "--check-config"]]


def _bad_address_file(tmp_path: Path) -> Path:
    doc = copy.deepcopy(BASE_NETWORK)
    doc["machines"][3]["address"] = "not-an-ip"
    return _write(tmp_path, doc, BASE_CUSTOMERS)


@pytest.mark.parametrize("which", [0, 1], ids=["check-config", "edge--check-config"])
def test_cli_refuses_bad_file_with_one_line_and_exit_2(tmp_path: Path, which: int) -> None:
    path = _bad_address_file(tmp_path)
    r = _cli(*_commands(path)[which])
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(path.resolve()) in lines[0] and "$.machines[3].address" in lines[0]
    assert "not an IP address" in lines[0]


def test_cli_accepts_good_file(good: Path) -> None:
    r = _cli("check-config", str(good))
    assert r.returncode == 0, r.stderr
    assert "ok (6 machines, 2 customers)" in r.stdout
    r = _cli("edge", "--config", str(good), "--machine", "r1-e1", "--check-config")
    assert r.returncode == 0, r.stderr


def test_cli_refuses_odd_length_message_key_cleanly(tmp_path: Path) -> None:
    doc = copy.deepcopy(BASE_NETWORK)
    doc["keys"]["message_key"] = "a" * 33
    r = _cli("check-config", str(_write(tmp_path, doc, BASE_CUSTOMERS)))
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_cli_runs_the_agent_only_where_ip_takeover_applies(tmp_path: Path) -> None:
    doc = copy.deepcopy(BASE_NETWORK)
    doc["machines"][0]["host_address"] = "127.0.10.101"  # a TLNS: no region, no takeover
    doc["machines"][3]["host_address"] = "127.0.1.101"  # the LLNS and an edge take part
    doc["machines"][4]["host_address"] = "127.0.1.111"
    path = _write(tmp_path, doc, BASE_CUSTOMERS)

    def agent(machine: str) -> subprocess.CompletedProcess[str]:
        return _cli("agent", "--config", str(path), "--machine", machine, "--check-config")

    assert agent("r1-llns").returncode == 0, agent("r1-llns").stderr
    assert agent("r1-e1").returncode == 0
    r = agent("tlns1")
    assert r.returncode == 2 and "IP takeover is for edge and LLNS machines" in r.stderr, r.stderr
    r = agent("r2-e1")
    assert r.returncode == 2 and "has no host_address" in r.stderr, r.stderr


def test_a_service_address_the_machine_does_not_have_stops_the_daemon_with_one_clear_line(tmp_path: Path) -> None:
    doc = copy.deepcopy(BASE_NETWORK)
    doc["machines"][4]["address6"] = "2001:2::99"  # an IPv6 service address not on this machine
    doc["state_dir"] = str(tmp_path / "state")
    doc["ports"] = {"http": 18181, "management": 19481, "messaging": 17481}
    path = _write(tmp_path, doc, BASE_CUSTOMERS)
    r = _cli("edge", "--config", str(path), "--machine", "r1-e1")
    out = r.stdout + r.stderr  # the daemon logs JSON lines to stdout
    assert r.returncode == 1, out[-2000:]
    assert "Traceback" not in out
    assert "cannot listen on 2001:2::99 port 18181 (TCP)" in out and "not an address of this machine" in out
    assert '"machine":"r1-e1"' in out, "the line names the machine"


def test_a_customers_parent_region_must_be_a_network_region(tmp_path: Path) -> None:
    doc = copy.deepcopy(BASE_CUSTOMERS)
    doc["customers"][0]["parent_regions"] = ["r9"]
    path = _write(tmp_path, BASE_NETWORK, doc)
    with pytest.raises(ConfigError) as got:
        load_network(path)
    assert got.value.key == "$.customers[0].parent_regions[0]" and "unknown region 'r9'" in got.value.reason
    doc["customers"][0]["parent_regions"] = [BASE_NETWORK["regions"][0]["id"]]
    net = load_network(_write(tmp_path, BASE_NETWORK, doc))
    assert net.customers[0].parent_regions == [BASE_NETWORK["regions"][0]["id"]]
    assert net.customers[1].parent_regions is None  # the network's default applies
