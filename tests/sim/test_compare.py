"""``sim.compare`` figures from observations, and ``rumor sim compare`` end to end on a tiny
scenario (3 real nodes on loopback for a few seconds, and the simulator)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rumordb.cli.compare_live import timed
from rumordb.cli.main import app
from rumordb.sim.compare import FIGURES, compare, live_figures

SCENARIO = {"duration_s": 4.0, "faults": [], "workload": {}}


def observed(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "nodes": ["n1", "n2"],
        "acks": [(1.0, "k", 5, "n1")],
        "arrivals": [(0.99, "n1", "k", 5, "n1"), (1.02, "n2", "k", 5, "n1")],
        "traffic": [(0.0, 10, 1000), (1.0, 30, 4000), (2.0, 40, 5000)],
        "transitions": {"suspect": 1},
        "events": [],
        "failed_ops": 0,
        "fault_lateness_s": [],
        "end_s": 2.0,
    }
    return base | changes


def test_lag_runs_from_the_ack_to_the_last_node_that_shows_the_version() -> None:
    figures = live_figures(observed(), SCENARIO)
    assert figures["lag_p50_s"] == pytest.approx(0.02)
    assert figures["lag_max_s"] == pytest.approx(0.02)
    assert (figures["messages"], figures["bytes"]) == (30, 4000)
    assert figures["suspect"] == 1 and figures["dead"] == 0


def test_a_live_arrival_is_when_its_node_applied_it_not_when_the_driver_read_it() -> None:
    event = {"key": "k", "hlc": 5, "origin": "n1", "applied_us": 1_000_001_250_000}
    arrival, late_s = timed("n2", event, read_s=1.3, wall0=1_000_000.0)
    assert arrival == (pytest.approx(1.25), "n2", "k", 5, "n1")
    assert late_s == pytest.approx(0.05)
    older = {"key": "k", "hlc": 5, "origin": "n1"}  # a node from before applied_us
    assert timed("n2", older, read_s=1.3, wall0=1_000_000.0) == ((1.3, "n2", "k", 5, "n1"), None)
    figures = live_figures(observed(delivery_s=[0.05, 0.01, 0.02]), SCENARIO)
    assert figures["watch_delivery_p50_s"] == 0.02 and figures["watch_delivery_p99_s"] == 0.05


def test_a_version_overwritten_before_it_reached_every_node_has_no_lag() -> None:
    figures = live_figures(observed(arrivals=[(0.99, "n1", "k", 5, "n1")]), SCENARIO)
    assert figures["lag_p50_s"] is None and figures["lag_cdf_s"] == []


def test_a_node_down_at_the_ack_is_not_waited_for() -> None:
    events = [{"at_s": 0.5, "action": "crash", "nodes": ["n2"]}]
    figures = live_figures(observed(arrivals=[(1.01, "n1", "k", 5, "n1")], events=events), SCENARIO)
    assert figures["lag_p50_s"] == pytest.approx(0.01)


def test_heal_to_identical_counts_from_the_last_fault_cleared() -> None:
    events = [
        {"at_s": 0.2, "action": "partition", "nodes": []},
        {"at_s": 0.5, "action": "heal", "nodes": []},
    ]
    figures = live_figures(observed(events=events), SCENARIO)
    assert figures["heal_to_identical_s"] == pytest.approx(1.02 - 0.5)


def test_an_older_version_shown_after_a_newer_one_does_not_undo_the_heal() -> None:
    # n2 applied version 6 at 1.02 (its stream's stamp); a resync read version 5 back at 1.05
    arrivals = [
        (0.99, "n1", "k", 5, "n1"),
        (1.01, "n1", "k", 6, "n1"),
        (1.02, "n2", "k", 6, "n1"),
        (1.05, "n2", "k", 5, "n1"),
    ]
    acks = [(0.98, "k", 5, "n1"), (1.0, "k", 6, "n1")]
    events = [{"at_s": 0.2, "action": "partition"}, {"at_s": 0.5, "action": "heal"}]
    figures = live_figures(observed(arrivals=arrivals, acks=acks, events=events), SCENARIO)
    assert figures["heal_to_identical_s"] == pytest.approx(1.02 - 0.5)


def test_nodes_current_drops_at_the_ack_and_recovers_at_the_arrival() -> None:
    current = live_figures(observed(), SCENARIO)["current"]
    by_t = dict(zip(current["t_s"], current["fraction"], strict=True))
    assert by_t[0.5] == 1.0 and by_t[1.0] == 0.5 and by_t[1.1] == 1.0


def test_the_observer_is_charged_apart_from_the_nodes_loops() -> None:
    from rumordb.sim.compare import sim_figures

    metrics = {
        "dissemination_s": {"p50": 0.01},
        "posts": {"busy_s": 3.0, "observer_s": 1.0, "messages": 5, "sealed_bytes": 50},
        "heal_to_converged_s": None,
        "messages_sent": 5,
        "bytes_sent": 50,
        "lag_cdf_s": [],
        "series": {"t_s": [0.0], "nodes_current": [1.0], "messages": [0]},
        "scenario": {"sample_interval_ms": 100},
    }
    figures = sim_figures(metrics)
    assert (figures["node_cpu_s"], figures["driver_cpu_s"]) == (2.0, 1.0)
    metrics["posts"] = {}  # without the send path: nothing charged
    assert sim_figures(metrics)["node_cpu_s"] is None


def test_an_explanation_gives_the_runs_measured_gaps() -> None:
    from rumordb.cli.compare_cmd import explanations, facts_of

    live = [{"dead": 11.0, "lag_p99_s": 0.02}, {"dead": 11.0, "lag_p99_s": 0.02}]
    sim = [{"dead": 5.0, "lag_p99_s": 0.01}, {"dead": 12.0, "lag_p99_s": 0.01}]
    rows = compare(live, sim)
    scenario = {
        "gossip": {"suspicion_mult": 3, "probe_interval_ms": 1000},
        "cluster": {"nodes": 5},
        "faults": [{"at_s": 4.0, "action": "partition"}, {"at_s": 10.0, "action": "heal"}],
        "duration_s": 16,
    }
    result = {
        "scenario": scenario,
        "sim": {"node_cpu_s": 2.0, "driver_cpu_s": 1.0, "events": [
            {"at_s": 4.0, "action": "partition", "nodes": []},
            {"at_s": 10.0, "action": "heal", "nodes": []},
        ]},
        "live": {"node_cpu_s": 3.0, "driver_cpu_s": 1.5, "fault_lateness_s": 0.0},
        "calibration": {"constants": {}, "machine": {"cores": 2, "load_1m": 1.0}},
        "load_per_core": 0.6,
    }  # fmt: skip
    texts = {t.split("`")[1]: t for t in explanations(rows, facts_of(result))}
    assert "1.50x the CPU the model charged their loops (3.00 against 2.00 s)" in texts["lag_p99_s"]
    assert "load was 0.6 per core (at calibration 0.5)" in texts["lag_p99_s"]
    dead = texts["dead"]
    assert "marked dead 3.0 s later (6.0 s), and the faults lasted 6.0-6.0 s" in dead
    assert "within the simulator's 2 seeds (5-12)" in dead
    assert "within the simulator" not in texts["lag_p99_s"]  # 0.02 is no sim run's


def test_rows_give_the_ratio_of_means_and_the_band() -> None:
    live = [{"messages": 110.0, "bytes": 200.0}, {"messages": 130.0, "bytes": 200.0}]
    sim = [{"messages": 100.0, "bytes": 100.0}]
    rows = {row["figure"]: row for row in compare(live, sim)}
    assert rows["messages"]["ratio"] == pytest.approx(1.2) and rows["messages"]["in_band"]
    assert rows["bytes"]["ratio"] == pytest.approx(2.0) and not rows["bytes"]["in_band"]
    assert rows["messages"]["live"] == {"mean": 120.0, "min": 110.0, "max": 130.0, "n": 2}
    assert rows["lag_p50_s"]["ratio"] is None and not rows["lag_p50_s"]["in_band"]


TINY = """\
name = "tiny"
seed = 2
duration_s = 4
[cluster]
nodes = 3
[network]
latency_ms = 0.2
[gossip]
interval_ms = 200
anti_entropy_interval_ms = 500
probe_interval_ms = 500
[[workload.phases]]
start_s = 0.3
stop_s = 1.8
nodes = ["n1", "n2"]
key_range = [0, 30]
rate_per_s = 20
[[faults]]
at_s = 0.8
action = "partition"
groups = [["n1"], ["n2", "n3"]]
[[faults]]
at_s = 1.5
action = "heal"
"""


def test_compare_runs_both_sides_and_writes_the_report(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "sim",
            "compare",
            str(scenario),
            "--out",
            str(out),
            "--seeds",
            "1",
            "--runs",
            "1",
            "--loop-monitor-ms",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    found = json.loads((out / "compare.json").read_text())
    rows = {row["figure"]: row for row in found["rows"]}
    assert set(rows) == set(FIGURES)
    for side in ("live", "sim"):
        run = found[side]["runs"][0]
        assert 0 < run["lag_p50_s"] <= run["lag_p99_s"] <= run["lag_max_s"] < 4
        assert run["heal_to_identical_s"] is not None and run["heal_to_identical_s"] >= 0
        assert 0 < run["messages"] < run["bytes"]
        assert min(run["current"]["fraction"]) < 1.0 == run["current"]["fraction"][-1]
    for name in ("lag_p50_s", "messages", "bytes"):
        assert rows[name]["ratio"] == pytest.approx(
            rows[name]["live"]["mean"] / rows[name]["sim"]["mean"]
        )
    assert found["calibration"]["machine"]["cpu"] and found["live"]["fault_lateness_s"] < 0.5
    live = found["live"]["runs"][0]
    # the CPU both sides spent, beside the figures; lags end at the nodes' applied instants
    assert live["node_cpu_s"] > 0 and live["driver_cpu_s"] > 0
    assert found["sim"]["runs"][0]["node_cpu_s"] > 0 and found["sim"]["node_cpu_s"] > 0
    assert live["watch_delivery_p50_s"] is not None and live["watch_delivery_p50_s"] >= 0
    # the nodes' loop monitors logged their busy turns; the model says its longest job
    assert live["loop_busy_turns"] >= 0 and found["live"]["loop_monitor_ms"] == 1
    assert found["sim"]["longest_job_s"] > 0  # (the default calibration has no observer)
    assert found["sim"]["runs"][0]["driver_cpu_s"] is not None
    report = (out / "report.md").read_text()
    assert "CPU over a run: live nodes" in report and "`applied_us`" in report
    assert "Loop stalls: live loops logged" in report and "the model's longest job" in report
    assert all(f"| {name} |" in report for name in FIGURES)
    for png in ("lag_cdf.png", "nodes_current.png", "traffic.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_membership_transitions_are_read_from_json_and_text_log_lines(tmp_path: Path) -> None:
    from rumordb.cli.cluster import NodeProcess
    from rumordb.cli.compare_live import LiveCluster

    log = tmp_path / "n1.log"
    log.write_text(
        '{"member": "n4", "old": "alive", "new": "suspect", "event": "member_state"}\n'
        "2026-12-01 [info] member_state member=n4 new=dead old=suspect\n"
        '{"member": "n1", "old": "alive", "new": "left", "event": "member_state"}\n'
        '{"event": "node_ready"}\n'
    )
    cluster = LiveCluster.__new__(LiveCluster)
    cluster.nodes = {"n1": NodeProcess("n1", "", 0, 0, 0.0, "", str(log))}
    assert cluster.transitions_since({"n1": 0}) == {"suspect": 1, "dead": 1}
    assert cluster.transitions_since({"n1": log.stat().st_size}) == {}


def test_busy_loop_turns_are_read_from_the_nodes_logs(tmp_path: Path) -> None:
    from rumordb.cli.cluster import NodeProcess
    from rumordb.cli.compare_live import LiveCluster

    log = tmp_path / "n1.log"
    log.write_text(
        '{"cpu_ms": 6.3, "wall_ms": 16.0, "gc_ms": 0.0, "stacks": [], "event": "loop_busy"}\n'
    )
    offset = log.stat().st_size
    with log.open("a") as more:
        more.write('{"cpu_ms": 2.5, "wall_ms": 3.0, "gc_ms": 0.0, "event": "loop_busy"}\n')
        more.write('{"event": "node_ready"}\n')
    cluster = LiveCluster.__new__(LiveCluster)
    cluster.nodes = {"n1": NodeProcess("n1", "", 0, 0, 0.0, "", str(log))}
    assert cluster.busy_since({"n1": 0}) == [(6.3, 16.0), (2.5, 3.0)]
    assert cluster.busy_since({"n1": offset}) == [(2.5, 3.0)]
    figures = live_figures(observed(loop_busy=[(6.3, 16.0), (2.5, 30.0)]), SCENARIO)
    assert figures["loop_busy_turns"] == 2
    assert (figures["loop_busy_max_cpu_ms"], figures["loop_busy_max_wall_ms"]) == (6.3, 30.0)


def test_the_report_explains_figures_outside_the_band_and_warns_of_load() -> None:
    from rumordb.cli.compare_cmd import explanations
    from rumordb.sim.compare_report import markdown

    rows = compare([{"messages": 50.0, "bytes": 100.0}], [{"messages": 100.0, "bytes": 100.0}])
    texts = explanations(rows)
    assert any(t.startswith("`messages`: live is 50% lower (ratio 0.50)") for t in texts)
    assert not any("`bytes`:" in t for t in texts)  # in band
    assert not any("heal_to_identical_s" in t for t in texts)  # neither side has it
    result = {
        "scenario": {"name": "x", "cluster": {"nodes": 3}, "duration_s": 4},
        "command": "rumor sim compare x",
        "sim": {"seeds": [1]},
        "live": {"runs": [{}], "fault_lateness_s": 0.01, "ack_rtt_p50_s": 0.002},
        "machine": "cpu, 2 cores",
        "calibration": {
            "source": "c.toml",
            "constants": {"post_cost_us": 1, "wakeup_us": [float(i) for i in range(50)]},
            "machine": {},
        },
        "rows": rows,
        "explanations": texts,
        "load_per_core": 4.0,
    }
    text = markdown(result, [])
    assert "post_cost_us = 1, wakeup_us = (p50 25.0, p90 45.0, p99 49.0)" in text
    assert (
        "load of 4.0 per core" in text
        and "| messages | 50 (50-50) | 100 (100-100) | 0.50 | **no** |" in text
    )
    assert "| heal_to_identical_s | n/a | n/a | n/a | n/a |" in text
    assert "load of" not in markdown({**result, "load_per_core": 0.5}, [])
