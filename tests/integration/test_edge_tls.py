"""TLS termination at the edge, and HTTPS to origins, end to end: SNI picks each
customer's certificate, TLS 1.2 and 1.3, ALPN http/1.1, reloads that change certificates
without dropping connections, a bad certificate file refused (the old one kept), and an
https origin verified against the customer's CA bundle.

Real edge and origin processes (test_edge_semantics' `start_sem`), real curl and openssl;
certificates from a local CA (`akacdn.devnet.certs`).
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w

from akacdn.devnet import certs
from akacdn.devnet.supervisor import http_get

from .conftest import Proc, curl, wait_for
from .test_edge_semantics import HOST, Sem, start_sem

TWO = "www.two.example"


def two_customers(network: dict, customers: dict) -> None:
    """The module's customers: sem (www.sem.example) and two (www.two.example), each with
    its own certificate (written by `tls_sem` before the config is)."""
    sem = customers["customers"][0]
    sem["tls_cert"], sem["tls_key"] = "tls/sem.pem", "tls/sem.key"
    two = dict(sem, name="two", serial=322, hostnames=[TWO], tls_cert="tls/two.pem", tls_key="tls/two.key")
    customers["customers"].append(two)


def tls_sem(tmp_path: Path, net: int, procs: Callable[..., Proc], origin_tls: bool = False) -> Sem:
    tls = tmp_path / "net" / "tls"
    certs.leaf(tls, "sem", [HOST])
    certs.leaf(tls, "two", [TWO])
    if not origin_tls:
        return start_sem(tmp_path, net, procs, tweak=two_customers)
    origin_cert = certs.leaf(tmp_path / "origin-ca", "origin", [f"127.{net}.40.1"])

    def tweak(network: dict, customers: dict) -> None:
        two_customers(network, customers)
        customers["customers"][0]["origin_ca_file"] = str(tmp_path / "origin-ca" / "ca.pem")

    return start_sem(tmp_path, net, procs, tweak=tweak, origin_tls=origin_cert)


def ca(sem: Sem) -> Path:
    return sem.config.parent / "tls" / "ca.pem"


def https(sem: Sem, name: str, path: str, *opts: str) -> tuple[int, dict[str, str], bytes]:
    port = sem.lay.https_port
    return curl(
        f"https://{name}:{port}{path}", "--cacert", str(ca(sem)), "--resolve", f"{name}:{port}:{sem.edge}", *opts
    )


def peer_cert(sem: Sem, name: str | None) -> dict:
    """The certificate the edge serves for SNI `name` (verified against the local CA)."""
    ctx = ssl.create_default_context(cafile=str(ca(sem)))
    ctx.check_hostname = name is not None
    if name is None:
        ctx.verify_mode = ssl.CERT_REQUIRED
    with socket.create_connection((sem.edge, sem.lay.https_port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            return s.getpeercert()


def subject_cn(cert: dict) -> str:
    return dict(x[0] for x in cert["subject"])["commonName"]


class KeptConnection:
    """One keep-alive HTTPS connection, for requests before and after a reload."""

    def __init__(self, sem: Sem, name: str) -> None:
        ctx = ssl.create_default_context(cafile=str(ca(sem)))
        raw = socket.create_connection((sem.edge, sem.lay.https_port), timeout=5)
        self.sock = ctx.wrap_socket(raw, server_hostname=name)
        self.name = name
        self.buf = b""

    def get(self, path: str) -> tuple[int, bytes]:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {self.name}\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "the edge closed the kept connection"
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            int(v) for k, _, v in (line.partition(":") for line in lines[1:]) if k.lower() == "content-length"
        )
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            assert chunk, "the edge closed the kept connection"
            rest += chunk
        self.buf = rest[length:]
        return int(lines[0].split()[1]), rest[:length]

    def close(self) -> None:
        self.sock.close()


def reload(sem: Sem) -> None:
    sem.edge_proc.popen.send_signal(signal.SIGHUP)


def events(sem: Sem) -> list[dict]:
    status, body = http_get(f"http://{sem.edge}:9400/events", timeout=5)
    assert status == 200, body
    got = json.loads(body)
    return got if isinstance(got, list) else got.get("events", [])


def test_sni_selects_each_customers_certificate(tmp_path: Path, net: int, procs: Callable[..., Proc]) -> None:
    sem = tls_sem(tmp_path, net, procs)
    assert subject_cn(peer_cert(sem, HOST)) == HOST
    assert subject_cn(peer_cert(sem, TWO)) == TWO
    assert subject_cn(peer_cert(sem, "a321.g.akacdn.test")) == "*.g.akacdn.test", "the network's certificate"
    for name in (HOST, TWO):
        status, headers, body = https(sem, name, "/fresh")
        assert status == 200 and body == b"fresh body\n", (name, status, headers, body)
    got = json.loads(https(sem, HOST, "/echo")[2])
    fields = {k.lower(): v for k, v in got["fields"]}
    assert fields["x-forwarded-proto"] == "https" and "proto=https" in fields["forwarded"], fields


def test_tls_versions_and_alpn(tmp_path: Path, net: int, procs: Callable[..., Proc]) -> None:
    sem = tls_sem(tmp_path, net, procs)
    for opts in (("--tlsv1.2", "--tls-max", "1.2"), ("--tlsv1.3",)):
        status, _, body = https(sem, HOST, "/fresh", *opts)
        assert status == 200 and body == b"fresh body\n", (opts, status)
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"{sem.edge}:{sem.lay.https_port}", "-servername", HOST,
         "-alpn", "h2,http/1.1", "-CAfile", str(ca(sem))],
        input=b"", capture_output=True, timeout=20,
    ).stdout.decode(errors="replace")  # fmt: skip
    assert "ALPN protocol: http/1.1" in out, out[-2000:]
    assert "Verify return code: 0 (ok)" in out, out[-2000:]
    old = subprocess.run(
        ["openssl", "s_client", "-connect", f"{sem.edge}:{sem.lay.https_port}", "-servername", HOST, "-tls1_1"],
        input=b"", capture_output=True, timeout=20,
    )  # fmt: skip
    assert b"Cipher is (NONE)" in old.stdout or old.returncode != 0, "TLS 1.1 is refused"


def test_a_reload_changes_certificates_without_dropping_connections(
    tmp_path: Path, net: int, procs: Callable[..., Proc]
) -> None:
    sem = tls_sem(tmp_path, net, procs)
    before = peer_cert(sem, TWO)["serialNumber"]
    kept = KeptConnection(sem, TWO)
    try:
        assert kept.get("/fresh") == (200, b"fresh body\n")
        certs.leaf(sem.config.parent / "tls", "two", [TWO], replace=True)  # a renewed certificate
        reload(sem)
        wait_for(lambda: peer_cert(sem, TWO)["serialNumber"] != before, 10, "the renewed certificate to be served")
        assert kept.get("/fresh") == (200, b"fresh body\n"), "the connection opened before the reload still serves"
        assert subject_cn(peer_cert(sem, HOST)) == HOST, "the other customer's certificate is unchanged"
    finally:
        kept.close()


def test_a_bad_certificate_file_is_refused_and_the_old_one_kept(
    tmp_path: Path, net: int, procs: Callable[..., Proc]
) -> None:
    sem = tls_sem(tmp_path, net, procs)
    before = peer_cert(sem, TWO)["serialNumber"]
    pem = sem.config.parent / "tls" / "two.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    reload(sem)

    def refused() -> dict | None:
        return next((e for e in events(sem) if e.get("event") == "config_refused"), None)

    event = wait_for(refused, 10, "the reload to be refused")
    assert "two.pem" in event.get("reason", "") and event.get("key", "").endswith("tls_cert"), event
    assert peer_cert(sem, TWO)["serialNumber"] == before, "the certificate in use is kept"
    status, _, body = https(sem, TWO, "/fresh")
    assert status == 200 and body == b"fresh body\n"
    metrics = http_get(f"http://{sem.edge}:9400/metrics", timeout=5)[1].decode()
    assert 'akacdn_config_reloads_total{result="refused"} 1.0' in metrics, metrics[-1500:]


def test_an_https_origin_is_verified(tmp_path: Path, net: int, procs: Callable[..., Proc]) -> None:
    sem = tls_sem(tmp_path, net, procs, origin_tls=True)
    r = sem.get("/fresh")
    assert r.status == 200 and r.body == b"fresh body\n", f"verified against the customer's CA:\n{r}\n{sem.logs()}"
    customers_file = sem.config.parent / "customers.toml"

    def change(**fields: object) -> None:
        doc = tomllib.loads(customers_file.read_text())
        doc["customers"][0].pop("origin_ca_file", None)
        doc["customers"][0].update(fields)
        customers_file.write_text(tomli_w.dumps(doc))
        seen = len([e for e in events(sem) if e.get("event") == "config_reloaded"])
        reload(sem)
        wait_for(lambda: len([e for e in events(sem) if e.get("event") == "config_reloaded"]) > seen, 10, "a reload")

    change()  # the system CAs do not know the local CA: refused
    r = sem.get("/nostore")
    assert r.status == 502, f"an origin certificate nobody vouches for is refused:\n{r}"
    change(origin_verify=False)
    r = sem.get("/nostore")
    assert r.status == 200, f"origin_verify = false:\n{r}"


@pytest.fixture(scope="module")
def net() -> int:
    from .conftest import _nets

    return next(_nets)
