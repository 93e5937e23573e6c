"""The operator-facing shape: CLI help, systemd units, the CI entry point."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

from akacdn.cli import DAEMONS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "args",
    [[], *[[d] for d in DAEMONS], ["devnet"], ["origin"], ["check-config"], ["purge"], ["akamaize"], ["keygen"]],
)
def test_every_command_explains_itself(args: list[str]) -> None:
    p = subprocess.run([sys.executable, "-m", "akacdn", *args, "--help"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: akacdn") and len(p.stdout.splitlines()) > 3


@pytest.mark.parametrize("role", list(DAEMONS))
def test_systemd_unit_per_daemon(role: str) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "systemd" / f"akacdn-{role}@.service")
    svc = unit["Service"]
    assert svc["Type"] == "notify"
    assert f"akacdn {role} --config" in svc["ExecStart"] and "--machine %i" in svc["ExecStart"]
    assert "WatchdogSec" in svc and svc["Restart"] == "always"
    assert "StartLimitBurst" in unit["Unit"] and "StartLimitBurst" not in svc


def test_ci_runs_make_test() -> None:
    text = (ROOT / ".ci" / "run").read_text()
    assert "make test" in text


def test_readme_opens_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().split("\n## ")[0]
    assert "make run" in head and "make test" in head


def test_example_configs_are_valid() -> None:
    from akacdn.config import load_network

    net = load_network(ROOT / "deploy" / "examples" / "network.toml")
    assert {m.role for m in net.machines} == {"tlns", "llns", "edge", "mapper", "relay"}
    assert [c.name for c in net.customers] == ["shop", "news"] and net.dns.workers == 2 and net.edge.workers == 4


def test_keygen_writes_a_private_key_and_prints_the_public_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out = tmp_path / "keys" / "mc1.key"
    p = subprocess.run([sys.executable, "-m", "akacdn", "keygen", "--out", str(out)], capture_output=True, text=True)
    assert p.returncode == 0 and oct(out.stat().st_mode & 0o777) == "0o600"
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(out.read_text().strip()))
    public = key.public_key().public_bytes_raw().hex()
    assert f'public_key = "{public}"' in p.stdout
    again = subprocess.run([sys.executable, "-m", "akacdn", "keygen", "--out", str(out)], capture_output=True)
    assert again.returncode == 2  # never overwrites without --force
