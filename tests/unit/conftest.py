"""Shared fixtures: a realistic devnet Network, loaded from the files `write_config` writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from akacdn.config import Network, load_network
from akacdn.devnet.network import Layout, write_config

LAYOUT = Layout(net=0, dns_port=53, http_port=80)


@pytest.fixture
def devnet_path(tmp_path: Path) -> Path:
    """The devnet's network.toml (customers.toml and keys/ beside it)."""
    return write_config(tmp_path / "devnet", LAYOUT)


@pytest.fixture
def net(devnet_path: Path) -> Network:
    return load_network(devnet_path)


@pytest.fixture(scope="session")
def shared_net(tmp_path_factory: pytest.TempPathFactory) -> Network:
    """One devnet Network for the whole session (for hypothesis tests: no function-scoped fixtures)."""
    return load_network(write_config(tmp_path_factory.mktemp("devnet"), LAYOUT))
