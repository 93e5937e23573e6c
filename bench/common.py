"""What every benchmark runner shares: a temp dir and a clean stop around the measuring,
notes folded per server and round, and the results written (JSON, and a chart when
matplotlib is there)."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

RESULTS = Path(__file__).resolve().parent / "results"


def csv_arg(kind: type, allowed: tuple[str, ...] | None = None) -> Callable[[str], list[Any]]:
    """An argparse type for a comma-separated list of `kind`, from `allowed` if given."""

    def parse(text: str) -> list[Any]:
        items = [kind(x.strip()) for x in text.split(",") if x.strip()]
        if allowed:
            bad = [x for x in items if x not in allowed]
            if bad:
                raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {','.join(allowed)}")
        return items

    return parse


def gist(e: Exception) -> str:
    """First and last line of an error that may carry a log tail or a traceback."""
    lines = [x.strip(" |+-") for x in str(e).splitlines() if x.strip(" |+-^")]
    return lines[0] + (f" ... {lines[-1]}" if len(lines) > 1 else "")


def add_common_args(p: argparse.ArgumentParser, what: str, packages: str, start_timeout: float) -> None:
    """The options every runner has: --start-timeout, --no-install, --out, --keep."""
    p.add_argument("--start-timeout", type=float, default=start_timeout, help="seconds for a server to become ready")
    p.add_argument("--no-install", action="store_true", help=f"do not apt-get install {packages}")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"where {what}.json and .png go (default {RESULTS})")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, tool output)")


def stop_on_sigterm() -> None:
    """SIGTERM ends a run like Ctrl-C: the measuring step's clean stop runs."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


class _Procs(Protocol):
    def stop_all(self) -> None: ...


def measure_guarded(steps: Callable[[], None], procs: _Procs, tmp: Path, keep: bool, say: Callable[[str], None]) -> int:
    """Run the measuring steps; whatever happens, stop every process they started and
    remove the temp dir (unless kept). Returns 0, 130 (interrupted) or 1 (failed)."""
    code = 0
    try:
        steps()
    except KeyboardInterrupt:
        say("interrupted; stopping what was started")
        code = 130
    except RuntimeError as e:
        say(f"failed: {e}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs.stop_all()
        if keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return code


def fold_notes(rows: Iterable[dict[str, Any]], who: str, where: Callable[[dict[str, Any]], str]) -> list[str]:
    """One line per (server, round, note), naming the measurements it came up in."""
    seen: dict[tuple[object, object, str], list[str]] = {}
    for r in rows:
        for n in r["notes"]:
            seen.setdefault((r[who], r["round"], n), []).append(where(r))
    return [f"{server}, {rnd}-process round ({', '.join(at)}): {n}" for (server, rnd, n), at in seen.items()]


def write_results(
    out: Path, name: str, doc: dict[str, Any], chart: Callable[[Path], None], say: Callable[[str], None]
) -> None:
    """`<out>/<name>.json`, and `<name>.png` from `chart` when matplotlib is installed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    try:
        chart(out / f"{name}.png")
        say(f"wrote {out / (name + '.json')} and {out / (name + '.png')}")
    except ImportError:
        say(f"wrote {out / (name + '.json')}; no chart: matplotlib missing (pip install -e '.[bench]')")
