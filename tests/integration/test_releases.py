"""Zoned releases on a devnet (the paper's §5, Table 1 scaled down): `akacdn release`
rolls a signed customer configuration out in phases; a bad one is caught in phase one,
aborted and rolled back, and never reaches phase two; a good one reaches the world; the
timeline is printed and kept; bad bundles never reach phase one."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from akacdn.devnet.supervisor import Devnet
from akacdn.recovery.bundle import make

from .conftest import curl, supervised_devnet, wait_for

SCALE = 0.005  # Table 1 x 0.005: a customer release's phases last 4.5 s and 6 s


def tweak(network: dict[str, Any], customers: dict[str, Any]) -> None:
    network["release"] = {"time_scale": SCALE, "min_requests": 10, "apply_timeout": 15.0, "data_wait": 4.0}


@pytest.fixture(scope="module")
def dn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    with supervised_devnet(tmp_path_factory.mktemp("releases") / "devnet", tweak) as d:
        yield d


def akacdn(dn: Devnet, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "akacdn", *args, "--config", str(dn.config_path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def customers_file(dn: Devnet, path: Path, origin_port: int | None = None, shop: bool = False) -> Path:
    doc: dict[str, Any] = {"customers": [{"name": "demo", "serial": 123, "hostnames": ["www.demo.example"],
                                          "origin": f"http://{dn.layout.origin}:{origin_port or dn.layout.http_port}",
                                          "default_ttl": 300}]}  # fmt: skip
    if shop:
        doc["customers"].append({"name": "shop", "serial": 200, "hostnames": ["www.shop.example"],
                                 "origin": f"http://{dn.layout.origin}:{dn.layout.http_port}"})  # fmt: skip
    path.write_text(tomli_w.dumps(doc))
    return path


def submit(dn: Devnet, file: Path, version: str) -> subprocess.CompletedProcess[str]:
    key = dn.dir / "keys" / "release.key"
    return akacdn(dn, "release", "submit", "--type", "customer", "--file", str(file), "--version", version,
                  "--key", str(key), "--signer", "devnet", "--wait")  # fmt: skip


class Traffic:
    """Misses for the demo customer at every edge (a fresh query string each time), so
    each phase has requests to judge."""

    def __init__(self, dn: Devnet) -> None:
        self.dn = dn
        self.codes: dict[str, list[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = itertools.count()
        edges = self.dn.net.by_role("edge")
        while not self._stop.is_set():
            for e in edges:
                url = f"http://{e.address}:{self.dn.layout.http_port}/?n={next(n)}"
                code, _, _ = curl(url, "-H", "Host: www.demo.example", "--max-time", "3")
                self.codes.setdefault(e.id, []).append(code)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)


def release_doc(dn: Devnet) -> dict[str, Any]:
    r = akacdn(dn, "release", "history", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def bundles(dn: Devnet) -> set[str]:
    """The bundles the serving machines say they run (`akacdn status`)."""
    r = akacdn(dn, "status", "--json")
    assert r.returncode == 0, r.stderr
    return {m["bundle"] for m in json.loads(r.stdout)["machines"]}


def post_bundle(dn: Devnet, data: bytes) -> tuple[int, dict[str, Any]]:
    center = dn.net.by_role("mapper")[0]
    req = urllib.request.Request(
        f"http://{center.address}:{dn.net.ports.management}/v1/operator/release",
        data=data,
        headers={"Authorization": f"Bearer {dn.net.operator_token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_bad_bundles_are_refused_with_a_reason_before_phase_one(dn: Devnet, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex((dn.dir / "keys" / "release.key").read_text().strip()))
    good = customers_file(dn, tmp_path / "c.toml").read_bytes()
    forged = bytearray(make(key, "devnet", "customer", good, "forged"))
    forged[-1] ^= 1
    cases = {
        "bad signature": bytes(forged),
        "unknown signer": make(Ed25519PrivateKey.generate(), "mallory", "customer", good),
        "unknown release type": make(key, "devnet", "firmware", good),
        "bad customer configuration": make(key, "devnet", "customer", good.replace(b"serial = 123", b"serial = -1")),
        "malformed": b"\x93garbage",
    }
    for reason, data in cases.items():
        code, answer = post_bundle(dn, data)
        assert code == 400 and reason in answer["error"], (reason, code, answer)
    assert release_doc(dn)["release"] is None  # nothing reached phase one
    r = akacdn(dn, "release", "submit", "--type", "customer", "--file", str(tmp_path / "c.toml"),
               "--key", str(dn.dir / "keys" / "release.key"), "--signer", "nobody")  # fmt: skip
    assert r.returncode == 2 and "unknown signer 'nobody'" in r.stderr


def test_a_bad_customer_configuration_is_caught_in_phase_one_aborted_and_rolled_back(
    dn: Devnet, tmp_path: Path
) -> None:
    bad = customers_file(dn, tmp_path / "bad.toml", origin_port=1)  # the demo's origin on a dead port
    with Traffic(dn) as traffic:
        r = submit(dn, bad, "bad-origin")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "aborted" in r.stdout and "error rate" in r.stdout, r.stdout  # the timeline, printed
    doc = release_doc(dn)
    rel = doc["release"]
    assert rel["state"] == "aborted" and "error rate" in rel["reason"]
    one, two, world = rel["phases"]
    assert one["started_at"] is not None and one["verdict"] != "passed"
    assert two["started_at"] is None and world["started_at"] is None  # never reached phase two
    canary = one["machines"][0]
    # rolled back: the canary runs the previous configuration again, and serves
    wait_for(lambda: bundles(dn) == {""}, 20, "the rollback")
    edge = dn.net.machine(canary)
    code, _, _ = curl(f"http://{edge.address}:{dn.layout.http_port}/?n=after", "-H", "Host: www.demo.example")
    assert code == 200
    # the rest of the network never saw the bad configuration
    assert all(c != 502 for e, codes in traffic.codes.items() if e != canary for c in codes)
    assert doc["history"] and doc["history"][-1]["state"] == "aborted"  # kept
    assert any("aborted" in line for line in doc["history"][-1]["timeline"])


def test_a_good_customer_configuration_reaches_the_world(dn: Devnet, tmp_path: Path) -> None:
    good = customers_file(dn, tmp_path / "good.toml", shop=True)  # a new customer, www.shop.example
    with Traffic(dn):
        r = submit(dn, good, "add-shop")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = release_doc(dn)
    rel = doc["release"]
    assert rel["state"] == "done"
    assert [p["verdict"] for p in rel["phases"]] == ["passed", "passed", "passed"]
    one, two, world = rel["phases"]
    assert one["ended_at"] - one["started_at"] >= 900 * SCALE  # Table 1's minimum, scaled
    assert two["ended_at"] - two["started_at"] >= 1200 * SCALE
    assert one["machines"][0] not in two["machines"]
    assert len({dn.net.machine(m).region for m in two["machines"]}) == 1
    for line in ("phase one machine", "phase one region", "phase world"):
        assert any(line in t for t in rel["timeline"]), rel["timeline"]
    assert doc["history"][-1]["state"] == "done"
    wait_for(lambda: bundles(dn) == {rel["bundle"]}, 20, "every machine to run the bundle")
    for e in dn.net.by_role("edge"):  # the new customer is served everywhere
        code, _, _ = curl(f"http://{e.address}:{dn.layout.http_port}/", "-H", "Host: www.shop.example")
        assert code == 200, e.id
    # the centers run it too: operators can act on the new serial
    r = akacdn(dn, "quarantine", "add", "200", "--seconds", "30", "--reason", "check")
    assert r.returncode == 0 and "serial 200" in r.stdout, r.stderr
    assert akacdn(dn, "quarantine", "lift", "200").returncode == 0


def test_a_release_carries_on_when_its_leader_dies(dn: Devnet, tmp_path: Path) -> None:
    leader = dn.leader()
    assert leader is not None
    file = customers_file(dn, tmp_path / "again.toml", shop=True)
    (tmp_path / "again.toml").write_text(file.read_text().replace("default_ttl = 300", "default_ttl = 120"))
    key = dn.dir / "keys" / "release.key"
    with Traffic(dn):
        r = akacdn(dn, "release", "submit", "--type", "customer", "--file", str(file), "--version", "ttl-120",
                   "--key", str(key), "--signer", "devnet")  # fmt: skip
        assert r.returncode == 0, r.stderr
        bid = r.stdout.split()[1]
        dn.kill(leader)  # in phase one: the other center takes over and carries the release on
        other = next(m.id for m in dn.net.by_role("mapper") if m.id != leader)
        wait_for(lambda: dn.leader() == other, 20, f"{other} to lead")
        done = wait_for(lambda: (d := release_doc(dn)["release"]) and d["bundle"] == bid and d["state"] != "running"
                        and d, 60, "the release to end")  # fmt: skip
    assert isinstance(done, dict) and done["state"] == "done", done
    wait_for(lambda: bundles(dn) == {bid}, 20, "every machine to run the bundle")
    dn.start_machine(leader)  # back as a follower
