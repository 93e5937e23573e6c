"""Crash records: what a daemon was doing when it rolled, kept in its state directory
until the mapping centers have been told (`roll` reports them at the next start).

A record is written with one small fsynced file (`crashes/<time>-<component>.json`),
at most `KEEP` are kept (oldest dropped). Reading never raises: a damaged record is
deleted and skipped.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

import msgspec

from ..runtime import atomic_write

KEEP = 50


class CrashRecord(msgspec.Struct, frozen=True):
    at: float  # wall clock
    machine: str
    component: str
    error: str  # "ValueError: ..." (bounded)
    context: str = ""  # a summary of the request or query being served (bounded)
    serial: int = 0  # the customer's serial the work was for (0: none known)
    trace: list[str] = []  # the innermost frames, "file:line in function"
    reported: bool = False


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(CrashRecord)


def describe(e: BaseException) -> tuple[str, list[str]]:
    """(error, innermost frames) of an exception, bounded in size; for a group (a task
    group's), its first leaf: what actually failed."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    frames = traceback.extract_tb(e.__traceback__)[-8:]
    trace = [f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}" for f in frames]
    return f"{type(e).__name__}: {e}"[:300], trace


def record(
    state_dir: Path, machine: str, component: str, e: BaseException | str, context: str = "", serial: int = 0
) -> CrashRecord:
    """Write a crash record now (fsynced: the process is about to end)."""
    if isinstance(e, BaseException):
        error, trace = describe(e)
    else:
        error, trace = e[:300], []
    rec = CrashRecord(time.time(), machine, component, error, context[:300], serial, trace)
    directory = state_dir / "crashes"
    atomic_write(directory / f"{rec.at:.6f}-{component}.json", _enc.encode(rec))
    files = sorted(directory.glob("*.json"))
    for old in files[:-KEEP]:
        old.unlink(missing_ok=True)
    return rec


def unreported(state_dir: Path, component: str) -> list[tuple[Path, CrashRecord]]:
    """This component's records (its workers' too) the centers have not been told of,
    oldest first."""
    out = []
    for path in sorted((state_dir / "crashes").glob(f"*-{component}*.json")):
        try:
            rec = _dec.decode(path.read_bytes())
        except (OSError, msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            path.unlink(missing_ok=True)
            continue
        if not rec.reported:
            out.append((path, rec))
    return out


def mark_reported(path: Path, rec: CrashRecord) -> None:
    try:
        atomic_write(path, _enc.encode(msgspec.structs.replace(rec, reported=True)))
    except OSError:
        pass


def recent(state_dir: Path, limit: int = 20) -> list[CrashRecord]:
    """The newest records of every component (for an operator), newest first."""
    out = []
    for path in sorted((state_dir / "crashes").glob("*.json"), reverse=True)[:limit]:
        try:
            out.append(_dec.decode(path.read_bytes()))
        except (OSError, msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            continue
    return out
