"""bench/recovery's pure parts: summaries, the storm's tally, the table."""

from __future__ import annotations

import math

from bench.recovery import report
from bench.recovery.run import parser
from bench.recovery.storm import tally


def test_summaries_leave_timed_out_trials_out_and_count_them() -> None:
    assert report.pct([3.0, 1.0, 2.0], 0.5) == 2.0
    assert math.isnan(report.pct([], 0.5))
    s = report.summarize([0.2, float("nan"), 0.4, 0.3])
    assert (s["n"], s["timeouts"], s["median"], s["max"]) == (4, 1, 0.3, 0.4)


def test_the_storm_tally_splits_the_quarantine_set_and_the_time_before_it() -> None:
    results = [(0.1, "e1", 200), (0.2, "e2", 0), (2.5, "e2", 200), (2.6, "e3", 0), (3.5, "e3", 503)]
    t = tally(results, ["e3"], 1.0, 3.0)
    assert t["all"] == {"requests": 5, "ok": 2, "ratio": 0.4}
    assert t["outside_set"] == {"requests": 3, "ok": 2, "ratio": 2 / 3}
    assert t["outside_set_after"] == {"requests": 1, "ok": 1, "ratio": 1.0}
    assert t["failures"] == {"e2 0": 1, "e3 0": 1, "e3 503": 1}
    assert t["failures_before_quarantine"] == 1
    assert t["per_second"] == [[1, 1], [0, 0], [1, 1]]  # the request after the storm's end is left out
    never = tally(results, [], float("nan"), 4.0)
    assert never["failures_before_quarantine"] == 3 and never["outside_set_after"]["requests"] == 0


def test_the_table_judges_nameservers_against_the_goal_and_the_storm_against_its_own() -> None:
    fast, slow = report.summarize([0.2, 0.25]), report.summarize([0.2, 0.5])
    doc = {
        "restart": {
            "llns": {"trials": [], **fast},
            "tlns (supervised)": {"trials": [], **slow},
            "edge": {"trials": [], **slow},
        },
        "quarantine": {"trials": [], "listed": report.summarize([0.5]), "confined": report.summarize([0.6])},
        "storm": {
            "seconds": 30.0,
            "clients": 4,
            "quarantined_after": 1.2,
            "servers": ["r1-e1"],
            "death_requests": {"0": 3, "503": 100},
            "rolls": {"r1-e1": 3},
            **tally([(0.5, "r1-e2", 200), (2.0, "r1-e1", 0)], ["r1-e1"], 1.2, 30.0),
        },
    }
    text = report.table(doc)
    assert "| llns | DNS answer (a123.g.akacdn.test A) | 2 | 0.225 | 0.250 | 0.250 | < 0.3 s | meets |" in text
    assert "| tlns (supervised) | DNS answer (akacdn.test SOA) | 2 | 0.350 | 0.500 | 0.500 | < 0.3 s | MISSES |" in text
    assert "| edge | HTTP 200 (www.demo.example /) | 2 | 0.350 | 0.500 | 0.500 |  |  |" in text
    assert "| the leader's /v1/status lists it | 1 | 0.500 | 0.500 | 0.500 |" in text
    assert "| every edge | 2 | 1 | 50.00% | >= 99.9% | MISSES |" in text
    assert "| outside the quarantine set | 1 | 1 | 100.00% | >= 99.9% | meets |" in text
    assert "outside the set, from 1 s after the quarantine" not in text  # no request there: no line
    assert "rolls seen: 3 (r1-e1 3)" in text


def test_the_command_line_takes_the_parts_to_skip() -> None:
    a = parser().parse_args(["--trials", "3", "--skip", "storm,quarantine"])
    assert (a.trials, a.quarantine_trials, a.storm, a.skip) == (3, 5, 30.0, ["storm", "quarantine"])
