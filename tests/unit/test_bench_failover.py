"""The failover benchmark's pure parts: the probe's lines, outage and gap arithmetic, the
agents' /events read into steps, the statistics and tables, and the configs it writes."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from akacdn.config import load_network
from bench.failover import analysis, lab, report
from bench.failover.analysis import Answer
from bench.failover.probe import served_by

V, B = "198.19.1.111", "198.19.1.112"


def ans(start: float, who: str | None, address: str = V, took: float = 0.002) -> Answer:
    return Answer(start, start + took, address, who, "" if who else "connect-timeout")


def test_probe_lines_are_read() -> None:
    assert analysis.parse_line("10.000100 10.001200 198.19.1.111 e1\n") == Answer(10.0001, 10.0012, V, "e1")
    assert analysis.parse_line("10.0 10.05 198.19.1.111 !connect-timeout") == Answer(
        10.0, 10.05, V, None, "connect-timeout"
    )
    for junk in ("", "Traceback (most recent call last):", "a b c d", "1 2 3"):
        assert analysis.parse_line(junk) is None


def test_the_probe_finds_x_served_by_in_any_case() -> None:
    head = b"HTTP/1.1 404 Not Found\r\nVia: 1.1 e2\r\nx-served-by:  e2 \r\nX-Cache: MISS"
    assert served_by(head) == "e2"
    assert served_by(b"HTTP/1.1 200 OK\r\nServer: x") is None


def test_percentiles_interpolate_like_numpy() -> None:
    xs = [float(x) for x in range(1, 21)]  # 1..20
    assert analysis.percentile(xs, 50) == pytest.approx(10.5)
    assert analysis.percentile(xs, 95) == pytest.approx(19.05)
    assert analysis.percentile(xs, 100) == 20
    assert analysis.percentile([3.0], 95) == 3.0
    assert analysis.percentile([], 50) is None
    s = analysis.summary([0.2, None, 0.1, 0.3])
    assert (s["n"], s["median"], s["max"], s["min"]) == (3, pytest.approx(0.2), 0.3, 0.1)
    assert analysis.summary([None])["median"] is None


def test_outage_is_kill_to_the_first_buddy_answer() -> None:
    t_kill = 100.0
    xs = [ans(99.99, "e1"), ans(100.0, "e1", took=0.003)]  # in flight at the kill: answered
    xs += [ans(100.0 + 0.01 * k, None, took=0.05) for k in range(1, 14)]
    xs += [ans(100.14, "e2"), ans(100.15, "e2"), ans(100.15, "e1", address=B)]
    out = analysis.outage(xs, V, "e2", "e1", t_kill)
    assert out["outage"] == pytest.approx(0.142)
    assert out["late_victim_answers"] == 1
    assert out["failed"] == 9  # those that failed before the first buddy answer completed
    assert out["reasons"] == ["connect-timeout"]
    assert analysis.outage(xs, V, "e9", "e1", t_kill)["outage"] is None


def test_steady_needs_k_answers_in_a_row_started_after() -> None:
    xs = [ans(1.0 + 0.01 * k, "e1") for k in range(5)]  # before `after`: not counted
    xs += [ans(2.0, "e1"), ans(2.01, None), ans(2.02, "e2")]
    xs += [ans(2.03 + 0.01 * k, "e1") for k in range(3)]
    assert analysis.steady_since(xs, V, "e1", 1.5, 3) == pytest.approx(2.05 + 0.002)
    assert analysis.steady_since(xs, V, "e1", 1.5, 4) is None
    assert analysis.steady_since(xs, B, "e1", 0.0, 1) is None


def test_gaps_count_from_the_last_answer_before_the_window() -> None:
    xs = [ans(0.99, "e2"), ans(1.05, None), ans(1.06, None), ans(1.10, "e2"), ans(1.14, "e1"), ans(1.15, "e1")]
    g = analysis.gaps(xs, V, 1.0, 2.0)
    assert g["max_gap"] == pytest.approx(0.11)  # 0.992 -> 1.102
    assert (g["failed"], g["answered"], g["changes"], g["served"]) == (2, 3, 1, ["e1", "e2"])
    assert g["slowest_answer"] == pytest.approx(0.002)
    flap = [ans(1.0 + 0.01 * k, w) for k, w in enumerate(["e2", "e1", "e2", "e1"])]
    assert analysis.gaps(flap, V, 0.5, 2.0)["changes"] == 3
    assert analysis.gaps([], V, 0.0, 1.0)["max_gap"] is None


EVENTS = [
    {"event": "declared_dead", "subject": "e1", "at": 49.0},  # an earlier trial: before the kill
    {"event": "declared_dead", "subject": "e1", "at": 50.13},
    {"event": "took", "subject": V, "at": 50.13},
    {"event": "address_added", "address": V, "at": 50.131},
    {"event": "announced", "address": V, "first_arp": 50.1312},
    {"event": "address_added", "address": B, "at": 50.2},
]


def test_the_buddys_steps_after_the_kill() -> None:
    b = analysis.takeover_breakdown(EVENTS, 50.0, "e1", V)
    assert b == pytest.approx({"declared_dead": 0.13, "took": 0.13, "address_added": 0.131, "first_arp": 0.1312})
    assert analysis.takeover_breakdown(EVENTS, 51.0, "e1", V) == dict.fromkeys(b)


def test_the_hand_back_and_dual_holding() -> None:
    buddy = [{"event": "released", "subject": V, "at": 10.9}, {"event": "address_released", "address": V, "at": 11.2}]
    victim = [
        {"event": "address_added", "address": V, "at": 11.0},
        {"event": "announced", "address": V, "first_arp": 11.01},
    ]
    r = analysis.return_breakdown(buddy, victim, 10.0, V)
    assert r == pytest.approx(
        {"buddy_releases": 0.9, "buddy_removed": 1.2, "victim_added": 1.0, "victim_first_arp": 1.01, "dual_hold": 0.2}
    )


def test_false_takeovers_in_a_window() -> None:
    evs = [*EVENTS, {"event": "unhealthy", "subject": "e2", "at": 50.5}]
    assert analysis.false_takeovers(evs, V, "e1", 50.0, 60.0) == {
        "took": 1,
        "address_added": 1,
        "declared_dead": 1,
        "unhealthy": 1,
    }
    assert analysis.false_takeovers(evs, V, "e1", 55.0, 60.0)["took"] == 0


def test_prometheus_samples_and_keepalived_transitions() -> None:
    text = (
        "# HELP akacdn_agent_actions_total Address actions carried out\n"
        'akacdn_agent_actions_total{action="add"} 3.0\n'
        'akacdn_agent_actions_total{action="announce"} 7.0\n'
        "akacdn_agent_addresses_held 1.0\n"
    )
    assert analysis.metric(text, "akacdn_agent_actions_total", {"action": "add"}) == 3.0
    assert analysis.metric(text, "akacdn_agent_actions_total", {"action": "release"}) == 0.0
    assert analysis.metric(text, "akacdn_agent_addresses_held") == 1.0
    log = "x: (VI_1) Entering MASTER STATE\nx: (VI_2) Entering MASTER STATE\nx: (VI_1) Entering BACKUP STATE\n"
    assert analysis.vrrp_master_entries(log, "VI_1") == 1


def _row(i: int, outage: float | None, gap: float, changes: int = 1) -> dict[str, object]:
    row: dict[str, object] = {
        "trial": i,
        "outage": outage,
        "failed": 9,
        "return": {"max_gap": gap, "failed": 0, "changes": changes},
        "baseline": {"max_gap": 0.012},
        "back_after": 1.5,
        "stale_address_dropped": True,
    }
    return row


def test_summary_and_tables() -> None:
    ak = [_row(i, 0.13 + i / 1000, 0.04) for i in range(1, 21)]
    for r in ak:
        r["breakdown"] = {"declared_dead": 0.12, "address_added": 0.121, "first_arp": 0.122}
    ka = [_row(i, 0.15, 0.013, changes=3 if i == 1 else 1) for i in range(1, 21)]
    ka[0]["outage"] = None
    s = report.summarize({"akacdn": ak, "keepalived": ka}, argparse.Namespace(interval=0.05))
    assert s["akacdn"]["outage"]["median"] == pytest.approx(0.1405)
    assert s["akacdn"]["breakdown"]["arp_to_answer"]["median"] == pytest.approx(0.0185)
    assert (s["keepalived"]["taken_over"], s["keepalived"]["return_flapping_trials"]) == (19, 1)
    t = report.table(s)
    assert "| akacdn agent (50 ms)" in t and "20/20" in t and "19/20" in t
    assert len({len(line) for line in t.splitlines()}) == 1, "aligned columns"
    steps = report.breakdown_table(s)
    assert "kill -> declared dead" in steps and "keepalived" not in steps
    assert report.breakdown_table({"keepalived": s["keepalived"]}) == ""
    soak = {
        "seconds": 60.0,
        "stress_cpus_per_machine": 2,
        "false_takeovers": 0,
        "wrong_machine": 0,
        "failed": 3,
        "requests": 11000,
        "machine_busy": 0.99,
        "loadavg_during": [6.1, 5.0, 4.0],
        "buddy": {"declared_dead": 0},
        "victim": {"declared_dead": 1},
    }
    st = report.soak_table({"akacdn": soak})
    assert "| akacdn agent" in st and "3/11000" in st and "99%" in st
    assert report.trial_line(ak[0]).startswith("outage 131 ms (9 failed requests); dead/added/ARP at 120/121/122")


def test_the_lab_configs(tmp_path: Path) -> None:
    lb = lab.Lab(prefix="akfo1", dir=tmp_path, net="198.19.30")
    path = lab.akacdn_config(lb, 0.05, 3, 0.5)
    net = load_network(path)
    assert (net.agent.interval, net.agent.misses, net.agent.recover_after) == (0.05, 3, 0.5)
    edges = {m.id: (m.address, m.host_address) for m in net.machines if m.role == "edge"}
    assert edges == {"e1": ("198.19.30.111", "198.19.30.11"), "e2": ("198.19.30.112", "198.19.30.12")}
    conf = lab.keepalived_config(lb, lab.BUDDY, 0.05).read_text()
    assert "vrrp_version 3" in conf and "nopreempt" not in conf
    vi1 = conf.split("vrrp_instance VI_1")[1].split("vrrp_instance VI_2")[0]
    assert "state BACKUP" in vi1 and "priority 100" in vi1 and "advert_int 0.05" in vi1
    assert "198.19.30.111/24 dev akfo1b0" in vi1
    argv = lab.keepalived_argv(lb, lab.BUDDY, tmp_path / "keepalived-b" / "keepalived.conf")
    assert {"-p", "-r", "-c", "--dont-fork"} <= set(argv)
    assert all(str(tmp_path) in argv[i + 1] for i, a in enumerate(argv) if a in ("-p", "-r", "-c"))
