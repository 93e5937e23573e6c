"""The Mininet lab for tests: one lab per test module (2 regions x 3 edges, 2 client
networks, every daemon running in its host), built with a unique prefix and always torn
down, also when a test or the start fails.

Skipped (not failed) only when not root; as root a missing Mininet fails; everything
else the lab needs (brctl, nft, unbound, dig, curl, ping) missing is a failure. CI runs
as root with `apt-get install -y --no-install-recommends mininet bridge-utils nftables
iputils-ping` (plus the Makefile's DEBS: dnsutils unbound curl ...).
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import string
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

MININET_DIR = Path(__file__).resolve().parents[2] / "deploy" / "mininet"
TOOLS = ("mnexec", "brctl", "nft", "unbound", "dig", "curl", "ping")


def _load_lab() -> tuple[ModuleType | None, str | None]:
    """deploy/mininet/lab.py as a module (it imports topo.py, which imports Mininet);
    (None, why) when the lab cannot run here for a reason that means "skip"."""
    if os.geteuid() != 0:
        return None, "lab tests need root (Mininet network namespaces)"
    try:
        spec = importlib.util.spec_from_file_location("akacdn_mininet_lab", MININET_DIR / "lab.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    except ModuleNotFoundError as e:
        if "mininet" not in str(e):
            raise
        sys.modules.pop("akacdn_mininet_lab", None)
        return None, f"Mininet is not installed ({e})"
    return module, None


mnlab, SKIP_REASON = _load_lab()


def _prefix() -> str:
    # short (bridge ports are <prefix><segment>-ethN, at most 15 characters) and unique
    # enough; topo.build_lab claims /tmp/akacdn-mininet/<prefix>.json exclusively
    return "t" + "".join(random.choices(string.ascii_lowercase + string.digits, k=3))


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A running lab for the test module; a module's ``LAB_OPTIONS`` dict adds
    ``start_lab`` arguments (e.g. ``{"agents": True}``)."""
    if mnlab is None:
        if os.geteuid() == 0:  # root here and in CI: a missing Mininet is a failure, not a skip
            pytest.fail(f"{SKIP_REASON}: `make test` installs it (make lab-deps)")
        pytest.skip(SKIP_REASON or "lab unavailable")
    missing = [t for t in TOOLS if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]
    if missing:
        pytest.fail(
            f"the lab needs {missing}: apt-get install -y --no-install-recommends mininet bridge-utils "
            "nftables iputils-ping unbound dnsutils curl"
        )
    directory = tmp_path_factory.mktemp("lab")
    running = None
    prefix = ""
    for _ in range(5):
        prefix = _prefix()
        try:
            defaults = {"regions": 2, "edges_per_region": 3, "client_nets": 2, "clients_per_net": 1, "timeout": 60}
            options = {**defaults, **getattr(request.module, "LAB_OPTIONS", {})}  # a module's own win
            running = mnlab.start_lab(prefix=prefix, directory=directory, **options)
            break
        except RuntimeError as e:
            if "is running" not in str(e):  # another lab holds this prefix: take another
                raise
        finally:
            if running is None:
                _cleanup(prefix)
    assert running is not None, "no free lab prefix"
    print(f"\nlab {prefix} up in {running.timings['total']:.1f}s ({directory})")
    try:
        yield running
    finally:
        try:
            running.stop()
        finally:
            _cleanup(prefix)


def _cleanup(prefix: str) -> None:
    """Leftovers of a lab that failed to start or stop (by prefix; never `mn -c`)."""
    try:
        mnlab.topo.cleanup(prefix)
    except RuntimeError:  # our own state file while we live: stop_lab removes it
        pass


@pytest.fixture(autouse=True)
def healed(lab) -> Iterator[None]:
    """Each test starts on a whole lab and leaves none of its faults behind."""
    lab._check_alive()
    try:
        yield
    finally:
        mnlab.heal_all(lab, wait=True, timeout=30)
