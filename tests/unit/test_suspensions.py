"""The operators' suspensions as a center keeps them: changes under the leader's term,
the newest set adopted, persisted, machines held out with the reason."""

from __future__ import annotations

from pathlib import Path

from akacdn.config import Network
from akacdn.mapping.suspensions import Suspensions


def test_changes_bump_the_version_under_the_leaders_term_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    s = Suspensions(path)
    assert s.version == (0, 0) and not s.listed()
    assert s.change(4, "machine", "r1-e1", "disk", True) and s.version == (4, 1)
    assert not s.change(4, "machine", "r1-e1", "disk", True)  # nothing new
    assert s.change(4, "region", "r2", "maintenance", True) and s.version == (4, 2)
    assert s.change(7, "machine", "r1-e1", "", False) and s.version == (7, 1)  # a new leader counts afresh
    assert not s.change(7, "machine", "nope", "", False)
    again = Suspensions(path)
    assert again.version == (7, 1) and [(x.kind, x.id) for x in again.listed()] == [("region", "r2")]


def test_only_a_newer_set_is_adopted(tmp_path: Path) -> None:
    leader, follower = Suspensions(tmp_path / "a"), Suspensions(tmp_path / "b")
    leader.change(2, "machine", "r1-e1", "x", True)
    assert follower.adopt(leader.version, leader.listed()) and follower.version == (2, 1)
    assert not follower.adopt((1, 9), [])  # an older leader's set
    assert [x.id for x in follower.listed()] == ["r1-e1"]


def test_machines_held_out_with_the_reason(tmp_path: Path, net: Network) -> None:
    s = Suspensions(tmp_path / "s")
    s.change(1, "machine", "r1-e1", "disk", True)
    s.change(1, "region", "r2", "maintenance", True)
    out = s.machines(net)
    assert out["r1-e1"] == "suspended: disk"
    assert {m for m, why in out.items() if why.startswith("region r2")} == {
        m.id for m in net.machines if m.region == "r2"
    }


def test_an_unreadable_file_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_text("{not json")
    assert Suspensions(path).version == (0, 0)
