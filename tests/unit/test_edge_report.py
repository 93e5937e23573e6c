"""Per-serial counts the edge reports to the mapping center."""

from __future__ import annotations

import msgspec

from akacdn.edge.report import SerialCounts
from akacdn.mapping.messages import Report, SerialReport


def test_counts_by_serial_and_outcome_then_reset() -> None:
    c = SerialCounts()
    assert c.drain("r1-e1", "r1", 1.0) is None  # nothing served: nothing to say
    for x_cache, status, size in [("HIT", 200, 100), ("MISS", 200, 50), ("STALE", 200, 10), ("MISS", 502, 27)]:
        c.record(123, x_cache, status, size)
    c.record(7, "REVALIDATED", 200, 5)
    report = c.drain("r1-e1", "r1", 1.0)
    assert report == Report("r1-e1", "r1", 1.0, [SerialReport(7, 1, 1, 0, 0, 5), SerialReport(123, 4, 2, 2, 1, 187)])
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(report), type=Report) == report
    assert c.drain("r1-e1", "r1", 1.0) is None


def test_origin_requests_and_requests_from_other_edges_are_counted() -> None:
    """Offload per serial: 1 - origin / (requests - tunneled)."""
    c = SerialCounts()
    c.record(9, "MISS", 200, 10)  # a client's miss, fetched from the origin
    c.origin(9)
    c.record(9, "MISS", 200, 10)  # a client's miss, answered by a parent
    c.record(9, "HIT", 200, 10, tunneled=True)  # a child's request, from this edge's store
    report = c.drain("r1-e1", "r1", 1.0)
    assert report is not None and report.serials == [SerialReport(9, 3, 1, 2, 0, 30, origin=1, tunneled=1)]
    merged = SerialCounts()
    merged.merge(report)
    assert merged.drain("r1-e1", "r1", 1.0) == report
    old = msgspec.msgpack.encode([9, 3, 1, 2, 0, 30])  # an older edge's report line
    assert msgspec.msgpack.decode(old, type=SerialReport) == SerialReport(9, 3, 1, 2, 0, 30, 0, 0)


def test_plain_hits_report_as_recorded_hits_and_a_stored_5xx_as_errors() -> None:
    c, r = SerialCounts(), SerialCounts()
    for status, hits in ((200, 3), (501, 2)):
        SerialCounts.add_plain_hits(c.row(5), hits, status >= 500, 10)
        for _ in range(hits):
            r.record(5, "HIT", status, 10)
    assert c.drain("e", "r", 1.0) == r.drain("e", "r", 1.0)


def test_a_serial_row_outlives_reports_that_zero_it() -> None:
    """The plain hit keeps its serial's row: a report zeroes it in place, so hits counted
    after a report go into the next one, and an interval with none reports nothing."""
    c = SerialCounts()
    row = c.row(5)
    SerialCounts.add_plain_hits(row, 1, False, 10)
    first = c.drain("e", "r", 1.0)
    assert first is not None and first.serials == [SerialReport(5, 1, 1, 0, 0, 10)]
    assert c.drain("e", "r", 1.0) is None
    SerialCounts.add_plain_hits(row, 1, False, 0)
    assert c.row(5) is row
    second = c.drain("e", "r", 1.0)
    assert second is not None and second.serials == [SerialReport(5, 1, 1, 0, 0, 0)]
