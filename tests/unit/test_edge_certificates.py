"""Certificates by SNI (`edge/tls.py`) and their checks at config load (`config.check_tls`)."""

from __future__ import annotations

import os
import ssl
import tomllib
from pathlib import Path

import msgspec
import pytest
import tomli_w

from akacdn.config import ConfigError, Network, load_network
from akacdn.devnet import certs
from akacdn.edge.tls import Certificates


def _subject(ctx: ssl.SSLContext | None) -> str:
    """The CN of the certificate a context serves (through a real in-memory handshake)."""
    assert ctx is not None
    client = ssl.create_default_context()
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    cli = client.wrap_bio(c_in, c_out, server_hostname="x.example")
    srv = ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (cli, srv):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    der = cli.getpeercert(binary_form=True)
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    return cert.subject.rfc4514_string()


def test_sni_picks_the_customer_then_the_network_certificate(net: Network) -> None:
    certs_ = Certificates(net)
    assert certs_.enabled
    assert _subject(certs_.for_name("www.demo.example")) == "CN=www.demo.example"
    assert _subject(certs_.for_name("WWW.Demo.Example.")) == "CN=www.demo.example", "case and a trailing dot"
    assert _subject(certs_.for_name("a123.g.akacdn.test")) == "CN=*.g.akacdn.test"
    assert _subject(certs_.for_name(None)) == "CN=*.g.akacdn.test", "no SNI: the network's"
    assert _subject(certs_.for_name("unknown.example")) == "CN=*.g.akacdn.test"


def test_no_certificate_means_no_https(net: Network) -> None:
    bare = msgspec.structs.replace(
        net,
        edge=msgspec.structs.replace(net.edge, tls_cert="", tls_key=""),
        customers=tuple(msgspec.structs.replace(c, tls_cert="", tls_key="") for c in net.customers),
    )
    assert not Certificates(bare).enabled
    assert Certificates(bare).for_name("www.demo.example") is None


def test_a_renewed_file_is_loaded_and_a_broken_one_keeps_the_old(net: Network) -> None:
    refused: list[tuple[str, str]] = []
    certs_ = Certificates(net, lambda f, why: refused.append((f, why)))
    first = certs_.for_name("www.demo.example")
    certs_.update(net)
    assert certs_.for_name("www.demo.example") is first, "unchanged files: the same context"
    tls = Path(net.path).parent / "tls"
    certs.leaf(tls, "demo", ["www.demo.example", "renewed.example"], replace=True)
    later = os.stat(tls / "demo.pem").st_mtime + 5
    os.utime(tls / "demo.pem", (later, later))
    certs_.update(net)
    renewed = certs_.for_name("www.demo.example")
    assert renewed is not first and not refused
    (tls / "demo.pem").write_text("garbage\n")
    os.utime(tls / "demo.pem", (later + 5, later + 5))
    certs_.update(net)
    assert certs_.for_name("www.demo.example") is renewed, "a broken file: the context in use is kept"
    assert refused and refused[0][0].endswith("demo.pem")


def _rewrite(path: Path, change: object) -> None:
    doc = tomllib.loads(path.read_text())
    change(doc)  # type: ignore[operator]
    path.write_text(tomli_w.dumps(doc))


def test_config_load_refuses_bad_certificates_naming_the_file(devnet_path: Path) -> None:
    tls = devnet_path.parent / "tls"
    (tls / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    customers = devnet_path.parent / "customers.toml"
    _rewrite(customers, lambda d: d["customers"][0].update(tls_cert="tls/broken.pem"))
    with pytest.raises(ConfigError) as e:
        load_network(devnet_path)
    assert e.value.key == "$.customers[0].tls_cert" and "broken.pem" in e.value.reason
    _rewrite(customers, lambda d: d["customers"][0].update(tls_cert="tls/missing.pem"))
    with pytest.raises(ConfigError) as e:
        load_network(devnet_path)
    assert "missing.pem" in e.value.reason and "no such file" in e.value.reason
    # a certificate with another's key
    _rewrite(customers, lambda d: d["customers"][0].update(tls_cert="tls/demo.pem", tls_key="tls/network.key"))
    with pytest.raises(ConfigError) as e:
        load_network(devnet_path)
    assert "demo.pem" in e.value.reason
    _rewrite(customers, lambda d: d["customers"][0].update(tls_key=""))
    with pytest.raises(ConfigError, match="go together"):
        load_network(devnet_path)


@pytest.mark.parametrize(
    ("side", "name", "why"),
    [
        ("request_headers", "Transfer-Encoding", "the edge's to set"),
        ("response_headers", "Cache-Status", "the edge's to set"),
        ("response_headers", "Bad Name", "matching regex"),
    ],
)
def test_header_rules_are_checked(devnet_path: Path, side: str, name: str, why: str) -> None:
    customers = devnet_path.parent / "customers.toml"
    _rewrite(customers, lambda d: d["customers"][0].update({side: [{"action": "set", "name": name, "value": "x"}]}))
    with pytest.raises(ConfigError, match=why):
        load_network(devnet_path)


def test_header_rule_values_cannot_inject_lines(devnet_path: Path) -> None:
    customers = devnet_path.parent / "customers.toml"
    rule = {"action": "add", "name": "X-A", "value": "1\r\nX-Injected: 1"}
    _rewrite(customers, lambda d: d["customers"][0].update(request_headers=[rule]))
    with pytest.raises(ConfigError, match="request_headers"):
        load_network(devnet_path)
