"""The paper's §4.2 in network namespaces (`bench.mapping.lab`): the lead mapping center's
network goes bad (nftables cuts it off from most relays; its process lives on).
Leadership moves to the other center, the nameservers take the new leader's maps, and
the old leader stops publishing.

Needs root (network namespaces, nftables); runs here and in CI."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.mapping.lab import CENTERS, MappingLab

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, nftables)")

_labs = itertools.count()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[MappingLab]:
    lab = MappingLab(tmp_path, prefix=f"akc{os.getpid() % 1000}{next(_labs)}")
    try:
        lab.build()
        lab.write_config()
        lab.start_all()
        yield lab
    finally:
        lab.stop_all()


def test_a_leader_cut_off_from_most_relays_hands_over_and_stops_publishing(lab: MappingLab) -> None:
    old = lab.wait("a leader", lab.leader, 60)
    other = next(mc for mc in CENTERS if mc != old)
    term = lab.metric(old, "akacdn_center_term")
    lab.wait(f"the nameservers on {old}'s maps", lambda: set(lab.terms().values()) == {term}, 30)

    lab.cut_off(old, ["relay1", "relay2"])  # its network loses two of the three relays
    lab.wait(f"{other} to lead", lambda: lab.metric(other, "akacdn_center_leader") == 1, 60)
    new = lab.metric(other, "akacdn_center_term")
    assert new is not None and term is not None and new > term
    lab.wait(f"{old} to resign", lambda: lab.metric(old, "akacdn_center_leader") == 0, 30)
    lab.wait("the nameservers on the new leader's maps", lambda: set(lab.terms().values()) == {new}, 30)

    # the old leader publishes nothing any more (its process lives on, and hears relay3)
    published = lab.metric(old, "akacdn_maps_published_total")
    time.sleep(3.0)  # an observation window: several map intervals
    assert lab.metric(old, "akacdn_maps_published_total") == published
    assert any(e["event"] == "election_resigned" for e in lab.events(old))
