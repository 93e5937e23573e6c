"""bench/messaging's pure parts: checkable bodies, percentiles, the tables, the lab's
result reading."""

from __future__ import annotations

import json
from pathlib import Path

from bench.messaging import report
from bench.messaging.lab import MessagingLab
from bench.messaging.node import check_body, make_body
from bench.messaging.run import pct


def test_bodies_say_whether_they_arrived_whole() -> None:
    body = make_body(42, 5000)
    assert len(body) == 5000 and check_body(body) == (42, True)
    assert check_body(body[:-1])[1] is False
    assert check_body(body[:100] + b"!" + body[101:])[1] is False
    assert check_body(b"short") == (-1, False)
    assert len(make_body(1, 3)) == 12  # never below the header


def test_percentiles() -> None:
    assert pct([5.0, 1.0, 3.0], 0.5) == 3.0
    assert pct(list(map(float, range(100))), 0.99) == 99.0
    assert pct([], 0.5) != pct([], 0.5)  # nan


def test_tables_name_every_row() -> None:
    doc = {
        "delivery": [
            {"paths": 2, "nack": True, "loss": 10.0, "ratio_mean": 0.9995, "ratio_min": 0.999,
             "latency_median_ms": 0.6, "latency_p99_ms": 120.0, "recovered": 40, "dropped_by_nft": 900},
        ],  # fmt: skip
        "map": [{"loss": 0.0, "bytes": 1, "runs": 3, "reached_all": 3, "median_ms": 250.0, "max_ms": 300.0}],
        "relay": {"subscribers": 5, "datagrams_in": 1000, "datagrams_out": 5000, "relay_cpu_s": 0.5,
                  "in_per_cpu_s": 2000, "out_per_cpu_s": 10000, "out_per_s": 1000, "delivered_ratio_min": 1.0},
        "relay_peer": {"server": "nats-server 2.9.10", "subscribers": 5, "datagrams_in": 1000, "datagrams_out": 5000,
                       "relay_cpu_s": 0.25, "in_per_cpu_s": 4000, "out_per_cpu_s": 20000, "out_per_s": 1000,
                       "delivered_ratio_min": 1.0},
    }  # fmt: skip
    text = report.tables(doc)
    assert "| 2 | on | 10 | 99.95% | 99.90% | 0.6 | 120.0 | 40 |" in text
    assert "| 0 | 3 | 3 | 250.0 | 300.0 |" in text
    assert "| 1000 | 5000 | 0.50 | 2000 | 10000 | 1000 | 100.00% |" in text
    assert "| akacdn relay | 1000 | 5000 | 0.50 | 2000 | 10000 | 1000 | 100.00% | 0.50 |" in text
    assert "| nats-server 2.9.10 | 1000 | 5000 | 0.25 | 4000 | 20000 | 1000 | 100.00% | 1.00 |" in text
    failed = report.tables({**doc, "relay_peer": {"error": "nats-server missing:\napt-get | install"}})
    assert "| akacdn relay | 1000 | 5000 | 0.50 | 2000 | 10000 | 1000 | 100.00% | - |" in failed
    assert "| nats-server | nats-server missing: apt-get / install | - |" in failed
    assert "delivered 99.95%" in report.delivery_line(doc["delivery"][0])


def test_results_count_distinct_intact_messages(tmp_path: Path) -> None:
    lab = MessagingLab(tmp_path, subscribers=2, prefix="akmtest", net=250)
    lab.run_no = 1
    rows = [
        {"i": 0, "ok": True, "rec": False, "lat": 0.001},
        {"i": 1, "ok": True, "rec": True, "lat": 0.2},
        {"i": 1, "ok": True, "rec": False, "lat": 0.3},  # twice: must be reported
        {"i": 2, "ok": False, "rec": False, "lat": 0.1},  # damaged
        {"i": 99, "ok": True, "rec": False, "lat": 0.1},  # not of this run's count
    ]
    (tmp_path / "s1.1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    s1, s2 = lab.results(count=10)
    assert (s1.received, s1.damaged, s1.twice, s1.recovered) == (2, 1, 1, 1)
    assert s2.received == 0  # no file: nothing received
