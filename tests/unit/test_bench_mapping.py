"""bench/mapping's tables, the scale bench at a tiny size, the steering bench's model."""

from __future__ import annotations

import json
from pathlib import Path

from bench.mapping import report
from bench.mapping.run import pct


def test_table_names_each_fault_with_its_percentiles() -> None:
    doc = {"faults": {"leader_kill": {"trials": [{"seconds": 2.0}] * 3, "median": 2.0, "p95": 2.1, "p99": 2.2,
                                      "max": 2.3}}}  # fmt: skip
    text = report.table(doc)
    assert "| leader killed -> every nameserver on a newer term's map | 3 | 2.00 | 2.10 | 2.20 | 2.30 |" in text
    assert pct([3.0, 1.0, 2.0], 0.5) == 2.0


def test_scale_runs_every_step_at_a_tiny_size(tmp_path: Path) -> None:
    from bench.mapping import scale

    argv = ["--networks", "40", "--regions", "8", "--servers", "24", "--serials", "30", "--paths", "4",
            "--repeat", "1", "--out", str(tmp_path), "--no-chart"]  # fmt: skip
    assert scale.main(argv) == 0
    doc = json.loads((tmp_path / "mapping_scale.json").read_text())
    steps = doc["steps"]
    for key, _ in scale.STEPS:
        assert steps[key]["median"] >= 0, key
    info = doc["info"]
    assert info["refused_reports"] == 0 and info["routes"] == 40 and info["serving_regions"] == 8
    assert info["answers"] == 30 and info["empty_answers"] == 0
    assert info["bytes"]["low"] > info["bytes"]["top"] > 0
    assert info["probe_results"] == 40 * 4 * scale.PROBERS and info["between_results"] == 8 * 7 * scale.PROBERS
    assert "probe data -> signed maps" in scale.table(doc)


def test_steering_model_counts_the_ewma_rounds_to_cross_the_margin() -> None:
    from bench.mapping import steer

    # lab: alpha 0.5, 50 -> 900 ms against 400: 475 after one report, over 400 / 0.85 = 470.6
    assert steer.reports_to_cross(50, 900, 400, 0.5, 0.15, leave=True) == 1
    # defaults: alpha 0.3: 305 (not yet), then 483.5
    assert steer.reports_to_cross(50, 900, 400, 0.3, 0.15, leave=True) == 2
    lab, defaults = steer.model(steer.LAB, 80), steer.model(steer.DEFAULTS, 80)
    assert lab["slow"]["move_mean"] < 3 < defaults["slow"]["move_mean"]
    assert defaults["slow"]["return_mean"] >= steer.DEFAULTS["mapping"]["hold"]
    doc = {"settings": {"loss": 80}, "results": {}, "trials": [], "computed": {"lab": lab, "defaults": defaults}}
    assert "| slow | defaults | " in steer.table(doc)
