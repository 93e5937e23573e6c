"""Crash records in a state directory: what a rolling daemon was doing, found again at the
next start (its workers' too), marked once reported, damaged ones dropped, at most KEEP."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest

from akacdn.recovery import crash
from akacdn.recovery.crash import KEEP, CrashRecord, describe, mark_reported, recent, record, unreported

T0 = 1_700_000_000.0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """The records' wall clock, set by the test (distinct times: distinct files)."""
    now = [T0]
    monkeypatch.setattr(crash, "time", SimpleNamespace(time=lambda: now[0]))

    def set_to(t: float) -> None:
        now[0] = t

    return set_to


def _raised(e: BaseException) -> BaseException:
    """`e` with a traceback (as the daemon catches it)."""
    try:
        raise e
    except BaseException as caught:  # noqa: BLE001 (any exception, for the test)
        return caught


def serve_request() -> None:
    parse_header()


def parse_header() -> None:
    raise ValueError("bad header 'X-Death'")


def _files(state: Path) -> list[Path]:
    return sorted((state / "crashes").glob("*.json"))


def test_a_record_names_the_error_frames_context_and_serial(tmp_path: Path, clock: Callable[[float], None]) -> None:
    try:
        serve_request()
    except ValueError as e:
        rec = record(tmp_path, "r1-e1", "edge", e, context="GET http://www.demo.example/death", serial=123)
    assert rec.error == "ValueError: bad header 'X-Death'"
    assert rec.trace[-2:] == [
        f"test_crash_records.py:{serve_request.__code__.co_firstlineno + 1} in serve_request",
        f"test_crash_records.py:{parse_header.__code__.co_firstlineno + 1} in parse_header",
    ]
    assert (rec.at, rec.machine, rec.component, rec.serial) == (T0, "r1-e1", "edge", 123)
    assert rec.context == "GET http://www.demo.example/death" and not rec.reported
    [path] = _files(tmp_path)
    assert path.name == f"{T0:.6f}-edge.json"
    assert msgspec.json.decode(path.read_bytes(), type=CrashRecord) == rec  # what a new process reads back


def test_a_record_is_bounded(tmp_path: Path, clock: Callable[[float], None]) -> None:
    def deep(n: int) -> None:
        if n:
            deep(n - 1)
        raise RuntimeError("x" * 1000)

    try:
        deep(20)
    except RuntimeError as e:
        rec = record(tmp_path, "r1-e1", "edge", e, context="c" * 1000)
    assert len(rec.error) == 300 and rec.error.startswith("RuntimeError: xxx")
    assert len(rec.context) == 300
    assert len(rec.trace) == 8 and all(f.endswith(" in deep") for f in rec.trace)  # the innermost frames


def test_a_record_of_a_message_has_no_frames(tmp_path: Path, clock: Callable[[float], None]) -> None:
    rec = record(tmp_path, "r1-e1", "edge", "event loop stalled for 31.0s" + "!" * 400)
    assert rec.error.startswith("event loop stalled for 31.0s") and len(rec.error) == 300
    assert rec.trace == []


def test_a_group_is_described_by_its_first_leaf() -> None:
    leaf = _raised(KeyError("serial"))
    nested = _raised(ExceptionGroup("outer", [ExceptionGroup("inner", [leaf]), _raised(ValueError("second"))]))
    error, trace = describe(nested)
    assert error == "KeyError: 'serial'"
    assert trace == describe(leaf)[1] and trace[-1].endswith(" in _raised")


def test_unreported_finds_the_components_and_its_workers_records_oldest_first(
    tmp_path: Path, clock: Callable[[float], None]
) -> None:
    clock(T0 + 1)
    worker = record(tmp_path, "r1-e1", "edge-worker1", "worker crashed")
    clock(T0 + 2)
    record(tmp_path, "r1-e1", "agent", "agent crashed")
    clock(T0 + 3)
    parent = record(tmp_path, "r1-e1", "edge", "parent crashed")
    assert [rec for _, rec in unreported(tmp_path, "edge")] == [worker, parent]
    assert [rec.error for _, rec in unreported(tmp_path, "agent")] == ["agent crashed"]
    assert [rec.error for _, rec in unreported(tmp_path, "edge-worker1")] == ["worker crashed"]
    assert unreported(tmp_path, "llns") == []
    assert unreported(tmp_path / "nowhere", "edge") == []  # no crashes directory yet


def test_marked_reported_records_are_not_found_again_but_kept(tmp_path: Path, clock: Callable[[float], None]) -> None:
    record(tmp_path, "r1-e1", "edge", "first")
    clock(T0 + 1)
    record(tmp_path, "r1-e1", "edge", "second")
    [(path, rec), _] = unreported(tmp_path, "edge")
    mark_reported(path, rec)
    assert [r.error for _, r in unreported(tmp_path, "edge")] == ["second"]
    assert len(_files(tmp_path)) == 2
    assert [(r.error, r.reported) for r in recent(tmp_path)] == [("second", False), ("first", True)]


def test_a_damaged_record_is_deleted_and_skipped(tmp_path: Path, clock: Callable[[float], None]) -> None:
    good = record(tmp_path, "r1-e1", "edge", "fine")
    directory = tmp_path / "crashes"
    torn = directory / f"{T0 - 2:.6f}-edge.json"
    torn.write_bytes(b'{"at": 1.0, "machine": "r1-')
    wrong = directory / f"{T0 - 1:.6f}-edge.json"
    wrong.write_bytes(b'{"at": "yesterday", "machine": 7}')
    assert [r.error for r in recent(tmp_path)] == ["fine"]  # skipped (an operator's view deletes nothing)
    assert [rec for _, rec in unreported(tmp_path, "edge")] == [good]
    assert not torn.exists() and not wrong.exists()


def test_a_record_that_is_not_utf8_is_deleted_and_skipped(tmp_path: Path, clock: Callable[[float], None]) -> None:
    good = record(tmp_path, "r1-e1", "edge", "fine")
    rotten = tmp_path / "crashes" / f"{T0 - 1:.6f}-edge.json"
    rotten.write_bytes(msgspec.json.encode(good).replace(b"r1-e1", b"r1-\xff\xfe"))
    assert [rec for _, rec in unreported(tmp_path, "edge")] == [good]
    assert not rotten.exists()


def test_at_most_keep_records_are_kept_the_oldest_dropped(tmp_path: Path, clock: Callable[[float], None]) -> None:
    n = KEEP + 7
    for i in range(n):
        clock(T0 + i)
        record(tmp_path, "r1-e1", "edge" if i % 2 else "agent", f"crash {i}")
    files = _files(tmp_path)
    assert len(files) == KEEP
    kept = sorted(int(r.error.split()[1]) for r in recent(tmp_path, limit=n))
    assert kept == list(range(n - KEEP, n))


def test_recent_lists_every_component_newest_first(tmp_path: Path, clock: Callable[[float], None]) -> None:
    for i, component in enumerate(["edge", "agent", "edge-worker2", "edge"]):
        clock(T0 + i)
        record(tmp_path, "r1-e1", component, f"crash {i}")
    assert [r.error for r in recent(tmp_path)] == ["crash 3", "crash 2", "crash 1", "crash 0"]
    assert [r.component for r in recent(tmp_path, limit=2)] == ["edge", "edge-worker2"]
    assert recent(tmp_path / "nowhere") == []
