"""bench/mapping's table."""

from __future__ import annotations

from bench.mapping import report
from bench.mapping.run import pct


def test_table_names_each_fault_with_its_percentiles() -> None:
    doc = {"faults": {"leader_kill": {"trials": [{"seconds": 2.0}] * 3, "median": 2.0, "p95": 2.1, "p99": 2.2,
                                      "max": 2.3}}}  # fmt: skip
    text = report.table(doc)
    assert "| leader killed -> every nameserver on a newer term's map | 3 | 2.00 | 2.10 | 2.20 | 2.30 |" in text
    assert pct([3.0, 1.0, 2.0], 0.5) == 2.0
