"""The edge's disk tier: atomic files, an index rebuilt at start, damage dropped and counted."""

from __future__ import annotations

import os
from pathlib import Path

from akacdn.edge.disk import DiskStore
from akacdn.edge.rfc9111 import make_entry
from akacdn.edge.store import Variant


def obj(body: bytes, ttl: int = 60) -> list[Variant]:
    entry = make_entry(200, [("Content-Type", "image/png"), ("ETag", '"x"')], 1000.0, 1000.0, ttl)
    return [Variant(None, entry, body), Variant((("accept-language", "fr"),), entry, body[::-1])]


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*"))


def test_objects_survive_a_new_store_on_the_same_directory(tmp_path: Path) -> None:
    d = DiskStore(tmp_path, budget=10**6)
    d.load()
    d.put(("demo", "/a.png"), obj(b"A" * 100))
    d.put(("demo", "/b.png"), obj(b"B" * 50, ttl=7))
    again = DiskStore(tmp_path, budget=10**6)
    assert again.load() == 2
    got = again.get(("demo", "/b.png"))
    assert got == obj(b"B" * 50, ttl=7)  # both variants, entries and bodies
    assert got[0].entry.lifetime == 7 and got[1].vary_key == (("accept-language", "fr"),)
    assert again.get(("other", "/b.png")) is None


def test_a_truncated_file_is_dropped_at_start_and_never_served(tmp_path: Path) -> None:
    d = DiskStore(tmp_path, budget=10**6)
    d.load()
    d.put(("demo", "/a.png"), obj(b"A" * 100))
    d.put(("demo", "/b.png"), obj(b"B" * 100))
    victim = files(tmp_path)[0]
    victim.write_bytes(victim.read_bytes()[:-10])
    again = DiskStore(tmp_path, budget=10**6)
    assert again.load() == 1 and again.dropped == 1 and not victim.exists()


def test_a_damaged_body_is_dropped_when_read(tmp_path: Path) -> None:
    d = DiskStore(tmp_path, budget=10**6)
    d.load()
    d.put(("demo", "/a.png"), obj(b"A" * 100))
    path = files(tmp_path)[0]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, wrong CRC
    path.write_bytes(bytes(data))
    assert d.get(("demo", "/a.png")) is None
    assert d.dropped == 1 and len(d) == 0 and not path.exists()


def test_leftover_temporary_files_and_garbage_are_removed(tmp_path: Path) -> None:
    (tmp_path / "ab").mkdir(parents=True)
    (tmp_path / "ab" / ".abc.999999999.1").write_bytes(b"half a write of a process that is gone")
    (tmp_path / "ab" / f".abd.{os.getppid()}.1").write_bytes(b"being written by a live process")
    (tmp_path / "ab" / "abcdef").write_bytes(b"not ours")
    d = DiskStore(tmp_path, budget=10**6)
    assert d.load() == 0 and d.dropped == 1
    assert files(tmp_path) == [tmp_path / "ab" / f".abd.{os.getppid()}.1"], "a live writer's file stays"


def test_budget_evicts_least_recently_used(tmp_path: Path) -> None:
    probe = DiskStore(tmp_path / "probe", budget=10**6)
    probe.load()
    probe.put(("demo", "/x"), obj(b"x" * 150))
    d = DiskStore(tmp_path / "store", budget=probe.used * 3 - 1)  # room for two objects, not three
    d.load()
    for name in ("a", "b", "c"):
        d.put(("demo", f"/{name}"), obj(name.encode() * 150))
    assert d.used <= d.budget and len(d) == 2
    d.get(("demo", "/b"))  # b is now the most recent
    d.put(("demo", "/d"), obj(b"d" * 150))
    assert d.get(("demo", "/b")) is not None and d.get(("demo", "/d")) is not None
    assert d.get(("demo", "/a")) is None
    assert len(files(tmp_path / "store")) == len(d)


def test_second_request_admission_keeps_one_hit_wonders_out() -> None:
    from akacdn.edge.store import SecondRequest

    gate = SecondRequest(max_keys=2)
    assert not gate.admit(("c", "/a"))  # first time: not stored
    assert gate.admit(("c", "/a"))  # second time: stored
    assert not gate.admit(("c", "/a"))  # (once stored, the store answers; if evicted, start again)
    for p in ("/b", "/c", "/d"):
        gate.admit(("c", p))
    assert not gate.admit(("c", "/b"))  # forgotten: the once-seen list is bounded


def test_worker_processes_sharing_the_directory_keep_one_budget_between_them(tmp_path: Path) -> None:
    """Two stores on one directory (as `[edge] workers = 2`): the bytes are counted once
    for both, so together they stay within the budget; an object one of them evicted is a
    plain miss for the other, not damage."""
    probe = DiskStore(tmp_path / "probe", budget=10**6)
    probe.load()
    probe.put(("demo", "/x0"), obj(b"x" * 150))
    one = probe.used  # the size of each object below
    a = DiskStore(tmp_path / "store", budget=one * 4, shared=True)
    b = DiskStore(tmp_path / "store", budget=one * 4, shared=True)
    a.load(), b.load()
    for i in range(3):
        a.put(("demo", f"/a{i}"), obj(b"a" * 150))
        b.put(("demo", f"/b{i}"), obj(b"b" * 150))
    on_disk = sum(p.stat().st_size for p in files(tmp_path / "store"))
    assert on_disk <= a.budget, f"{on_disk} bytes on disk for a budget of {a.budget}"
    assert a.used == b.used == on_disk, "one count, kept right by both"
    assert len(files(tmp_path / "store")) == 4
    assert a.get(("demo", "/a0")) is None and a.dropped == 0, "evicted by the other: a miss, not damage"
    assert b.get(("demo", "/a2")) is not None, "stored by the other: found on disk"
    a.put(("demo", "/b2"), obj(b"c" * 150))  # a replaces b's file: the old size comes off
    assert a.used == sum(p.stat().st_size for p in files(tmp_path / "store"))
    c = DiskStore(tmp_path / "store", budget=one * 4, shared=True)
    assert c.load() == len(files(tmp_path / "store")) and c.used == a.used, "recounted at start"
