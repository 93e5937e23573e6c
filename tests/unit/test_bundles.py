"""Signed release bundles (make, open, validate: only `BundleError` with a clear reason
escapes) and the labs' fault injection customers' `faults` ask for."""

from __future__ import annotations

import hashlib
import time
from types import SimpleNamespace

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from akacdn.config import Fault, Network, TTLs, glob_regex
from akacdn.recovery import inject
from akacdn.recovery.bundle import Bundle, BundleError, bundle_id, make, open_bundle, validate
from akacdn.recovery.inject import WRONG_ADDRESS, InjectedFault, Injector

PROPS = settings(max_examples=100, deadline=None)
KEY = Ed25519PrivateKey.generate()


def _pub(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


SIGNERS = {"ops": _pub(KEY)}

DEMO = b"""
[[customers]]
name = "demo"
serial = 123
hostnames = ["www.demo.example"]
origin = "http://127.0.40.1:80"
"""

SHOP = b"""
[[customers]]
name = "shop"
serial = 456
hostnames = ["www.shop.example"]
origin = "https://origin.shop.example"
"""

FAULTY = b"""
[[customers.faults]]
on = "edge"
kind = "crash"
path = "/death/*"
"""


def _signed(net: Network) -> Network:
    return msgspec.structs.replace(net, release_signers=SIGNERS)


def _faults_on(net: Network, on: bool = True) -> Network:
    return msgspec.structs.replace(net, faults=msgspec.structs.replace(net.faults, enabled=on))


def _opened(type: str, content: bytes, version: str = "") -> Bundle:
    return open_bundle(SIGNERS, make(KEY, "ops", type, content, version))[1]


def _refusal(net: Network, type: str, content: bytes) -> str:
    with pytest.raises(BundleError) as e:
        validate(net, _opened(type, content))
    return e.value.reason


# --- signed bundles -------------------------------------------------------------------------


def test_a_bundle_opens_as_made_under_its_content_address() -> None:
    data = make(KEY, "ops", "customer", DEMO + SHOP, version="2024-06-01")
    bid, b = open_bundle(SIGNERS, data)
    assert bid == hashlib.sha256(data).hexdigest()[:16] == bundle_id(data)
    assert (b.type, b.version, b.signer, b.content) == ("customer", "2024-06-01", "ops", DEMO + SHOP)
    assert abs(b.created_at - time.time()) < 60
    assert open_bundle(SIGNERS, data) == (bid, b)  # stable
    other = make(KEY, "ops", "customer", DEMO, version="2024-06-01")
    assert open_bundle(SIGNERS, other)[0] != bid


@pytest.mark.parametrize("type", ["customer", "system", "software"])
def test_every_release_type_opens(type: str) -> None:
    assert _opened(type, b"x").type == type


def _reason(data: bytes, signers: dict[str, bytes] = SIGNERS) -> str:
    with pytest.raises(BundleError) as e:
        open_bundle(signers, data)
    assert str(e.value) == e.value.reason
    return e.value.reason


def test_a_flipped_byte_in_the_signature_is_a_bad_signature() -> None:
    data = bytearray(make(KEY, "ops", "customer", DEMO))
    data[-1] ^= 0x01  # the signature is the last field
    assert _reason(bytes(data)) == "bad signature"


def test_a_changed_body_is_a_bad_signature() -> None:
    data = make(KEY, "ops", "customer", DEMO)
    body, signature = msgspec.msgpack.decode(data)
    b = msgspec.msgpack.decode(body, type=Bundle)
    forged = msgspec.msgpack.encode(msgspec.structs.replace(b, content=DEMO + SHOP))
    assert _reason(msgspec.msgpack.encode([forged, signature])) == "bad signature"


def test_another_key_under_a_known_signers_name_is_a_bad_signature() -> None:
    assert _reason(make(Ed25519PrivateKey.generate(), "ops", "customer", DEMO)) == "bad signature"


def test_an_unknown_signer_is_refused() -> None:
    data = make(KEY, "mallory", "customer", DEMO)
    assert _reason(data) == "unknown signer 'mallory' (not in keys.release_signers)"
    assert "unknown signer 'ops'" in _reason(make(KEY, "ops", "customer", DEMO), signers={})  # no signers: none


def test_an_unknown_release_type_is_refused() -> None:
    assert (
        _reason(make(KEY, "ops", "firmware", b""))
        == "unknown release type 'firmware' (one of customer, system, software)"
    )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        msgspec.msgpack.encode({"body": b"x", "signature": b"y"}),
        msgspec.msgpack.encode([b"not a bundle", b"sig"]),
        msgspec.msgpack.encode([msgspec.msgpack.encode({"type": "customer"}), b"sig"]),  # fields missing
        make(KEY, "ops", "customer", DEMO)[:-10],  # truncated
    ],
)
def test_malformed_bytes_are_refused(data: bytes) -> None:
    assert _reason(data) == "malformed bundle"


# msgspec raises UnicodeDecodeError (not DecodeError) for a str that is not UTF-8: it must
# be refused like any malformed bundle


def test_a_bundle_with_a_field_that_is_not_utf8_is_malformed() -> None:
    body, signature = msgspec.msgpack.decode(make(KEY, "ops", "customer", DEMO))
    damaged = body.replace(b"\xa3ops", b"\xa3\xff\xfe\xfd")  # the signer: a 3-byte str, not UTF-8
    assert damaged != body
    assert _reason(msgspec.msgpack.encode([damaged, signature])) == "malformed bundle"


def test_every_single_flipped_byte_is_refused() -> None:
    data = make(KEY, "ops", "system", b"[ttl]\nanswer = 30\n", version="v1")
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            damaged = bytearray(data)
            damaged[i] ^= bit
            with pytest.raises(BundleError):
                open_bundle(SIGNERS, bytes(damaged))


@PROPS
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_bundle_errors(data: bytes) -> None:
    with pytest.raises(BundleError):
        open_bundle(SIGNERS, data)


# --- validate: customer bundles -------------------------------------------------------------


def test_a_customer_bundle_gives_the_network_with_its_customers(net: Network) -> None:
    new = validate(net, _opened("customer", DEMO + SHOP))
    assert [(c.name, c.serial, c.hostnames) for c in new.customers] == [
        ("demo", 123, ["www.demo.example"]),
        ("shop", 456, ["www.shop.example"]),
    ]
    assert msgspec.structs.replace(new, customers=net.customers) == net  # nothing else changed
    assert [c.name for c in net.customers] == ["demo"]  # the running network is left alone
    assert [c.name for c in validate(net, _opened("customer", SHOP)).customers] == ["shop"]  # a whole file


@pytest.mark.parametrize(
    ("content", "key", "why"),
    [
        (b"[[customers]\nname = ", "$", "not valid TOML"),
        (DEMO + DEMO.replace(b'"demo"', b'"demo2"').replace(b"www.", b"img."), "$.customers[1].serial", "serial 123"),
        (DEMO + b'colour = "blue"\n', "$.customers[0]", "unknown field `colour`"),
        (DEMO.replace(b"http://127.0.40.1:80", b"ftp://origin"), "$.customers[0].origin", "is not an http(s)"),
        (DEMO.replace(b"serial = 123", b"serial = 0"), "$.customers[0].serial", ">= 1"),
        (DEMO + b'edge_hostname = "a123.g.elsewhere.test"\n', "$.customers[0].edge_hostname", "under akacdn.test"),
        (b"\xff\xfe", "$", "not valid TOML"),
    ],
)
def test_an_invalid_customers_file_is_refused_naming_the_key(net: Network, content: bytes, key: str, why: str) -> None:
    reason = _refusal(net, "customer", content)
    assert reason.startswith("bad customer configuration: bundle:customers.toml: ")
    assert f": {key}: " in reason and why in reason


def test_an_edge_hostname_under_the_networks_base_domain_is_accepted(net: Network) -> None:
    new = validate(net, _opened("customer", DEMO + b'edge_hostname = "a123.g.akacdn.test"\n'))
    assert new.customers[0].edge_hostname == "a123.g.akacdn.test"


def test_faults_are_refused_unless_the_network_enables_them(net: Network) -> None:
    reason = _refusal(_faults_on(net, False), "customer", DEMO + FAULTY)
    assert "$.customers[0].faults" in reason and "fault injection is off" in reason
    new = validate(_faults_on(net), _opened("customer", DEMO + FAULTY))
    assert new.customers[0].faults == [Fault(on="edge", kind="crash", path="/death/*")]
    assert new.faults.enabled


def test_a_fault_path_that_is_no_glob_is_refused(net: Network) -> None:
    reason = _refusal(_faults_on(net), "customer", DEMO + FAULTY.replace(b"/death/*", b"death"))
    assert "$.customers[0].faults[0].path" in reason


# --- validate: system and software bundles --------------------------------------------------


def test_a_system_bundle_changes_the_ttls(net: Network) -> None:
    new = validate(net, _opened("system", b"[ttl]\nanswer = 60\nreferral = 3600\n"))
    assert new.ttl == TTLs(referral=3600, answer=60, negative=300)
    assert msgspec.structs.replace(new, ttl=net.ttl) == net
    assert net.ttl.answer == 20


def test_a_system_bundle_changes_dns_and_edge_settings_that_need_no_restart(net: Network) -> None:
    content = b"[dns]\nrrl_rate = 10\n\n[edge]\nmemory_bytes = 1048576\n"
    new = validate(net, _opened("system", content))
    assert new.dns.rrl_rate == 10 and new.edge.memory_bytes == 1048576
    assert new.ttl == net.ttl
    four = msgspec.structs.replace(net, edge=msgspec.structs.replace(net.edge, workers=4))
    again = validate(four, _opened("system", b"[edge]\nworkers = 4\ndisk_bytes = 0\n"))  # unchanged: fine
    assert again.edge.workers == 4 and again.edge.disk_bytes == 0


@pytest.mark.parametrize(("section", "what"), [("edge", "edge.workers"), ("dns", "dns.workers")])
def test_changing_the_workers_needs_a_restart(net: Network, section: str, what: str) -> None:
    reason = _refusal(net, "system", f"[{section}]\nworkers = 2\n".encode())
    assert reason == f"{what} changes only with a restart: not a release"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"[recovery]\nroll_limit = 2\n", "unknown field `recovery`"),
        (b"[ports]\nhttp = 8080\n", "unknown field `ports`"),
        (b"[ttl]\nanswer = 0\n", "$.ttl.answer"),
        (b"[ttl]\nlifetime = 5\n", "unknown field `lifetime`"),
        (b"[ttl\n", "not valid TOML"),
    ],
)
def test_a_system_bundle_the_network_would_refuse(net: Network, content: bytes, why: str) -> None:
    reason = _refusal(net, "system", content)
    assert reason.startswith("bad system configuration: bundle:system.toml: ") and why in reason


def test_a_software_bundle_changes_no_configuration(net: Network) -> None:
    assert validate(net, _opened("software", b"", version="1.2.3")) is net


# --- fault injection ------------------------------------------------------------------------


def _with_faults(net: Network, enabled: bool, **faults: list[Fault]) -> Network:
    """`faults`: by customer name (a second customer, "shop" with serial 456, is added)."""
    shop = msgspec.structs.replace(net.customers[0], name="shop", serial=456, hostnames=["www.shop.example"])
    customers = tuple(msgspec.structs.replace(c, faults=faults.get(c.name, [])) for c in (*net.customers, shop))
    return _faults_on(msgspec.structs.replace(net, customers=customers), enabled)


EDGE_FAULTS = [Fault("edge", "crash", "/death/*"), Fault("edge", "wrong", "*.JPG"), Fault("edge", "crash", "*")]


def test_an_injector_only_when_enabled_and_a_customer_has_faults(net: Network) -> None:
    assert Injector.build(net) is None
    assert Injector.build(_with_faults(net, False, demo=EDGE_FAULTS)) is None
    assert Injector.build(_with_faults(net, True)) is None
    assert isinstance(Injector.build(_with_faults(net, True, shop=[Fault("dns", "wrong")])), Injector)


def test_edge_faults_match_their_glob_first_one_wins(net: Network) -> None:
    faults = [Fault("edge", "crash", "/death/*"), Fault("edge", "wrong", "*.JPG"), Fault("edge", "wrong", "/a.b")]
    inj = Injector.build(_with_faults(net, True, demo=faults))
    assert inj is not None
    with pytest.raises(InjectedFault, match="injected crash: edge request /death/row/1"):
        inj.at_edge(123, "/death/row/1")
    assert inj.at_edge(123, "/img/cat.jpg") == "wrong"  # case is ignored
    assert inj.at_edge(123, "/a.b") == "wrong"
    for path in ("/index.html", "/aXb", "/x/death/1", "/death", "/img/cat.jpg.html", "/a.b/c"):
        assert inj.at_edge(123, path) is None, path  # the whole path must match; only `*` is special
    assert inj.at_edge(456, "/death/row/1") is None  # another customer's
    assert inj.at_edge(999, "/death/row/1") is None


def test_the_first_matching_edge_fault_wins(net: Network) -> None:
    inj = Injector.build(_with_faults(net, True, demo=[Fault("edge", "wrong", "*.jpg"), Fault("edge", "crash", "*")]))
    assert inj is not None
    assert inj.at_edge(123, "/death/cat.jpg") == "wrong"
    with pytest.raises(InjectedFault):
        inj.at_edge(123, "/death/cat.png")


def test_dns_faults(net: Network) -> None:
    inj = Injector.build(_with_faults(net, True, demo=[Fault("dns", "wrong")], shop=[Fault("dns", "crash")]))
    assert inj is not None
    assert inj.at_dns(123) == "wrong"
    with pytest.raises(InjectedFault, match="query for serial 456"):
        inj.at_dns(456)
    assert inj.at_dns(999) is None
    assert inj.at_edge(123, "/anything") is None  # a DNS fault is no edge fault
    assert WRONG_ADDRESS == "192.0.2.66"


def test_a_hang_blocks_for_hang_seconds(net: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(inject, "time", SimpleNamespace(sleep=slept.append))
    n = msgspec.structs.replace(
        _with_faults(net, True, demo=[Fault("edge", "hang", "/slow")], shop=[Fault("dns", "hang")]),
        faults=msgspec.structs.replace(net.faults, enabled=True, hang_seconds=7.5),
    )
    inj = Injector.build(n)
    assert inj is not None
    assert inj.at_edge(123, "/slow") is None and inj.at_dns(456) is None
    assert slept == [7.5, 7.5]


_PATH = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="*"), min_size=1, max_size=30)


@PROPS
@given(_PATH, st.data())
def test_a_glob_matches_every_path_it_spans_and_a_literal_only_itself(path: str, data: st.DataObject) -> None:
    """Cut a path in three, head + middle + tail: `head*tail` matches it (in any case); the
    path itself as a pattern matches nothing else (regex characters are literal)."""
    i = data.draw(st.integers(0, len(path)))
    j = data.draw(st.integers(i, len(path)))
    assert glob_regex(f"{path[:i]}*{path[j:]}").fullmatch(path.swapcase())
    assert glob_regex(path).fullmatch(path.upper())
    other = data.draw(_PATH)
    assert bool(glob_regex(path).fullmatch(other)) == (other.lower() == path.lower())
