"""bench/sureroute's pure parts: the Zipf mix, Via chains, per-second aggregation,
summaries, offload arithmetic, the tables, the options."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from bench.sureroute import analysis, report
from bench.sureroute.analysis import Result
from bench.sureroute.net import HOSTS, LAYOUT, TIMINGS, tweaker
from bench.sureroute.run import check, parser

FAILED = 'kind="direct",outcome="failed"'
REGION_OF = {f"{r}-e{i}": r for r in ("r1", "r2", "r3") for i in (1, 2, 3)}


def test_zipf_weights_are_normalized_and_fall_with_rank() -> None:
    w = analysis.zipf_weights(4, 1.0)
    assert math.isclose(sum(w), 1.0)
    assert w[0] / w[1] == pytest.approx(2.0) and w[0] / w[3] == pytest.approx(4.0)
    assert analysis.zipf_weights(3, 0.0) == pytest.approx([1 / 3] * 3)
    with pytest.raises(ValueError):
        analysis.zipf_weights(0, 1.0)


def test_the_zipf_sample_is_seeded_in_range_and_skewed() -> None:
    a = analysis.zipf_sample(2000, 1.0, 6000, seed=1)
    assert a == analysis.zipf_sample(2000, 1.0, 6000, seed=1)
    assert a != analysis.zipf_sample(2000, 1.0, 6000, seed=2)
    assert len(a) == 6000 and min(a) >= 0 and max(a) < 2000
    counts = Counter(a)
    # rank 1 has 1/H(2000) ≈ 12% of the mass
    assert 0.10 < counts[0] / 6000 < 0.14
    assert counts[0] > counts[1] > counts[9]
    assert analysis.zipf_sample(1, 1.0, 5, seed=3) == [0] * 5


def test_requests_are_dealt_round_robin_and_the_ideal_counts_follow() -> None:
    reqs = analysis.spread([0, 0, 1, 0, 2, 0, 0], 3)
    assert reqs == [(0, 0), (1, 0), (2, 1), (0, 0), (1, 2), (2, 0), (0, 0)]
    assert analysis.ideal_origin(reqs, tiered=False) == 5  # (0,0) (1,0) (2,1) (1,2) (2,0)
    assert analysis.ideal_origin(reqs, tiered=True) == 3  # objects 0, 1, 2


def test_offload_arithmetic() -> None:
    assert analysis.offload(6000, 1500) == pytest.approx(0.75)
    assert analysis.offload(10, 10) == 0.0
    assert analysis.offload(10, 12) == pytest.approx(-0.2)
    assert math.isnan(analysis.offload(0, 0))
    counts = {"/img/photo-2.png?zipf=flat-1": 2, "/img/photo-2.png?zipf=tiered-1": 1, "/css/site.css": 9}
    assert analysis.origin_requests(counts, "zipf=flat-") == 2
    assert analysis.origin_requests(counts, "zipf=tiered-") == 1
    assert analysis.origin_requests({}, "zipf=flat-") == 0


def test_via_chains_are_read_across_repeated_fields_and_comma_lists() -> None:
    assert analysis.via_hops(["1.1 r2-e1 (akacdn)", "1.1 r1-e1 (akacdn)"]) == ["r2-e1", "r1-e1"]
    assert analysis.via_hops(["1.1 r1-e1 (akacdn), 1.1 r2-e3 (akacdn)"]) == ["r1-e1", "r2-e3"]
    assert analysis.via_hops(["HTTP/1.1 proxy.example:8080, 1.0 fred"]) == ["proxy.example:8080", "fred"]
    assert analysis.via_hops([]) == []
    # the answer came through r2's edge: its Via is one field, the asking edge's another
    assert analysis.other_regions(["1.1 r2-e1 (akacdn)", "1.1 r1-e1 (akacdn)"], "r1", REGION_OF) == ["r2"]
    assert analysis.other_regions(["1.1 r1-e1 (akacdn)"], "r1", REGION_OF) == []
    assert analysis.other_regions(["1.1 r3-e2 (akacdn), 1.1 r2-e1 (akacdn)", "1.1 r3-e1"], "r1", REGION_OF) == [
        "r3",
        "r2",
    ]
    assert analysis.other_regions(["1.1 someproxy (x)"], "r1", REGION_OF) == []  # unknown names: ignored


def _results() -> list[Result]:
    return [
        Result(0.1, "demo", True, 0.004, "200", False),
        Result(0.6, "demo", True, 0.006, "200", False),
        Result(1.2, "demo", True, 1.2, "200", True),
        Result(1.7, "demo", True, 0.005, "200", True),
        Result(2.5, "demo", True, 0.004, "200", True),
        Result(3.1, "demo", True, 0.004, "200", False),
        Result(1.2, "plain", False, 3.0, "502", False),
        Result(1.8, "plain", False, 10.0, "timeout", False),
        Result(3.2, "plain", True, 0.003, "200", False),
        Result(9.0, "demo", True, 0.004, "200", False),  # past the run's seconds: left out of per_second
    ]


def test_per_second_rows_count_by_when_requests_were_due() -> None:
    rows = analysis.per_second(_results(), "demo", 4)
    assert [r["requests"] for r in rows] == [2, 2, 1, 1]
    assert [r["detoured"] for r in rows] == [0, 2, 1, 0]
    assert rows[1]["success"] == 1.0 and rows[1]["p50"] == 1.2 and rows[1]["p99"] == 1.2
    plain = analysis.per_second(_results(), "plain", 4)
    assert [r["ok"] for r in plain] == [0, 0, 0, 1]
    assert math.isnan(plain[0]["success"]) and math.isnan(plain[0]["p99"])
    assert plain[1]["success"] == 0.0 and plain[1]["p99"] == 10.0  # failures count at their time to fail


def test_windows_and_route_times() -> None:
    w = analysis.window(_results(), "plain", 1.0, 3.0)
    assert (w["requests"], w["ok"], w["success"]) == (2, 0, 0.0)
    assert w["failures"] == {"502": 1, "timeout": 1} and w["max"] == 10.0
    d = analysis.window(_results(), "demo", 1.0, 3.0)
    assert (d["requests"], d["ok"], d["detoured"]) == (3, 3, 3)
    empty = analysis.window([], "demo", 0, 1)
    assert empty["requests"] == 0 and math.isnan(empty["success"]) and math.isnan(empty["max"])
    t = analysis.route_times(_results(), "demo", cut=1.0, heal=2.0)
    assert t["first_detour"] == pytest.approx(1.7 + 0.005 - 1.0)  # the first answer to arrive, not the first due
    assert t["last_detour"] == pytest.approx(0.5)
    never = analysis.route_times(_results(), "plain", 1.0, 2.0)
    assert math.isnan(never["first_detour"]) and math.isnan(never["last_detour"])


def test_primary_changes_keep_the_first_poll_and_each_change() -> None:
    polls = [(0.0, "direct"), (0.5, "direct"), (1.0, "via r2"), (1.5, "via r2"), (2.0, "direct")]
    assert analysis.primary_changes(polls) == [(0.0, "direct"), (1.0, "via r2"), (2.0, "direct")]
    assert analysis.primary_changes([]) == []


def test_route_events_keep_one_customers_sureroute_events_in_run_seconds() -> None:
    events = [
        {"ts": 1000.0, "event": "map_accepted", "map": "low"},
        {"ts": 1003.5, "event": "sureroute_race", "customer": "demo", "ms": {"direct": 1.0}, "primary": "direct"},
        {"ts": 1004.0, "event": "sureroute_race", "customer": "other", "ms": {}, "primary": "direct"},
        {"ts": 1011.04, "event": "sureroute_failover", "customer": "demo", "primary": "via r3",
         "previous": "direct", "reason": "direct failed a request; routing around"},
    ]  # fmt: skip
    got = analysis.route_events(events, "demo", 1000.0)
    assert [(e["t"], e["event"]) for e in got] == [(3.5, "sureroute_race"), (11.04, "sureroute_failover")]
    assert got[1]["previous"] == "direct" and "customer" not in got[1] and "ts" not in got[1]
    assert analysis.route_events([], "demo", 0.0) == []


def _doc() -> dict:
    res = _results()
    customers = {}
    for name, sr in (("demo", True), ("plain", False)):
        customers[name] = {
            "sureroute": sr,
            "all": analysis.window(res, name, 0, 4),
            "cut": analysis.window(res, name, 1, 3),
            "after_heal": analysis.window(res, name, 3, 4),
            **analysis.route_times(res, name, 1, 3),
            "per_second": analysis.per_second(res, name, 4),
        }
    peering = {"edge": "r1-e1", "region": "r1", "rate": 2.0, "duration": 4.0, "cut_at": 1.0, "heal_at": 3.0,
               "customers": customers, "primary": [(0.0, "direct"), (1.5, "via r2")], "cap": 512,
               "events": [{"t": 0.5, "event": "sureroute_race", "ms": {"direct": 1.0}, "primary": "direct"},
                          {"t": 1.4, "event": "sureroute_failover", "primary": "via r2", "previous": "direct",
                           "reason": "direct failed a request; routing around"}],
               "edge_counters": {"akacdn_edge_upstream_attempts_total": {FAILED: 3.0}}}  # fmt: skip
    off = {"objects": 10, "exponent": 1.0, "requests": 100, "seed": 1, "concurrency": 4, "children": ["a"] * 6,
           "distinct_objects": 8, "customers": {
               "flat": {"parents": [], "requests": 100, "ok": 100, "outcomes": {"200": 100}, "through_parent": 0,
                        "seconds": 1.0, "origin": 40, "ideal_origin": 40, "offload": 0.6, "ideal_offload": 0.6},
               "tiered": {"parents": ["r3"], "requests": 100, "ok": 99, "outcomes": {"200": 99, "502": 1},
                          "through_parent": 99, "seconds": 1.0, "origin": 9, "ideal_origin": 8, "offload": 0.91,
                          "ideal_offload": 0.92}}}  # fmt: skip
    return {"peering": peering, "offload": off}


def test_the_tables_judge_only_the_sureroute_customer_and_show_offload() -> None:
    text = report.table(_doc())
    demo = next(line for line in text.splitlines() if line.startswith("| demo |"))
    plain = next(line for line in text.splitlines() if line.startswith("| plain |"))
    assert "100.00%" in demo and "meets" in demo and ">= 99.9%" in demo
    assert "meets" not in plain and "MISSES" not in plain and "33.33%" in plain
    assert "| 1 cut |" in text and "| 3 |" in text
    assert "1.5 s via r2" in text and "direct,failed 3" in text
    assert "races on r1-e1 (1;" in text and "1.4 s sureroute_failover: direct -> via r2: direct failed" in text
    assert "| tiered | r3 | 100 | 99 | 9 | 8 | 91.00% | 92.00% | 99 |" in text
    assert "tiered: failures by outcome 502: 1" in text
    doc = _doc()
    doc["peering"]["customers"]["demo"]["cut"]["success"] = 0.998
    assert "MISSES" in report.table(doc)
    assert report.table({}) == ""


def test_options_and_the_network_tweak() -> None:
    a = parser().parse_args([])
    assert (a.duration, a.cut_at, a.heal_at, a.rate, a.timeout) == (45.0, 10.0, 30.0, 40.0, 10.0)
    assert (a.objects, a.exponent, a.requests, a.concurrency) == (2000, 1.0, 6000, 16)
    assert {k: getattr(a, k) for k in TIMINGS} == TIMINGS
    assert parser().parse_args(["--head-timeout", "3"]).head_timeout == 3.0
    check(a)
    with pytest.raises(SystemExit):
        check(parser().parse_args(["--cut-at", "30", "--heal-at", "10"]))
    with pytest.raises(SystemExit):
        parser().parse_args(["--skip", "nothing"])
    network: dict = {}
    customers = {"customers": [{"name": "demo", "serial": 123, "origin": "http://o:1"}]}
    tweaker(TIMINGS)(network, customers)
    assert network["sureroute"] == TIMINGS
    by = {c["name"]: c for c in customers["customers"]}
    assert by["demo"]["sureroute"] is True and by["demo"]["sureroute_test_object"] == "/css/site.css"
    assert by["tiered"]["parent_regions"] == ["r3"] and "parent_regions" not in by["flat"]
    assert len({c["serial"] for c in by.values()}) == 4 and all(c["origin"] == "http://o:1" for c in by.values())
    others = {c["hostnames"][0] for c in by.values() if c["name"] != "demo"}
    assert others == {HOSTS[n] for n in ("plain", "flat", "tiered")}
    assert LAYOUT.net == 92  # its own loopback range (bench/recovery has 91)
