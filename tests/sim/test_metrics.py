"""Run metrics: the summary table, ``collect`` over anything shaped like a run, and the
nodes' counts a real run sums from their ticks' counter deltas."""

from dataclasses import dataclass, field
from typing import Any

import pytest

from rumordb.core import Counters
from rumordb.core.counters import add_deltas
from rumordb.sim.checks import Convergence
from rumordb.sim.engine import Simulation
from rumordb.sim.metrics import NODE_COUNTERS, Series, Traffic, collect, summary
from tests.sim.helpers import build, minimal_raw


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}),
        ([2.0], {"count": 1, "mean": 2.0, "p50": 2.0, "p90": 2.0, "p99": 2.0, "max": 2.0}),
        (
            [4.0, 1.0, 3.0, 2.0],
            {"count": 4, "mean": 2.5, "p50": 2.0, "p90": 4.0, "p99": 4.0, "max": 4.0},
        ),
    ],
)
def test_summary(values: list[float], expected: dict[str, Any]) -> None:
    assert summary(values) == expected


@dataclass
class FakeRun:
    """Not a Simulation: ``collect`` needs only the ``Run`` protocol (no engine import)."""

    scenario: Any = field(default_factory=lambda: build(minimal_raw()))
    checker: Convergence = field(default_factory=lambda: Convergence(["n1"], lambda _: {}))
    traffic: Traffic = field(default_factory=lambda: Traffic(messages_sent=4, bytes_sent=40))
    series: Series = field(default_factory=Series)
    ids: list[str] = field(default_factory=lambda: ["n1", "n2"])
    last_disturbance_s: float = 1.0
    failed_ops: int = 0
    noop_deletes: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    end_s: float = 5.0
    trace_hash: str = "abc"

    def divergent(self) -> list[str]:
        return []

    def node_counters(self) -> list[Counters]:
        return [Counters(updates_applied=2, rumor_rounds=1), Counters(updates_applied=3)]


def test_collect_sums_node_counters_and_reports_the_run() -> None:
    metrics = collect(FakeRun(), wall_s=2.0)
    assert metrics["node_counters"]["updates_applied"] == 5
    assert metrics["node_counters"]["rumor_rounds"] == 1
    assert metrics["converged"] and metrics["convergence_time_s"] == 0.0
    assert metrics["end_s"] == 5.0 and metrics["messages_per_wall_s"] == 2.0
    assert metrics["trace_hash"] == "abc" and metrics["nodes"] == 2


def test_collect_reads_the_fault_timeline_and_the_lags_through_the_protocol() -> None:
    run = FakeRun(events=[{"at_s": 1.0, "action": "partition"}, {"at_s": 3.0, "action": "heal"}])
    run.checker.complete_since = 4.5
    run.checker.dissemination_s.extend([0.2, 0.1, 0.4])
    metrics = collect(run, wall_s=1.0)
    assert metrics["faults_cleared_s"] == 3.0 and metrics["heal_to_converged_s"] == 1.5
    assert metrics["lag_cdf_s"][0] == [0.0, 0.1] and metrics["lag_cdf_s"][-1] == [1.0, 0.4]
    assert metrics["dissemination_s"]["p99"] == 0.4


def test_collect_without_faults_has_no_heal_time() -> None:
    metrics = collect(FakeRun(), wall_s=1.0)
    assert metrics["faults_cleared_s"] is None and metrics["heal_to_converged_s"] is None
    assert metrics["lag_cdf_s"] == []


def test_a_runs_node_counters_are_the_tick_deltas_summed_over_nodes() -> None:
    raw = minimal_raw()
    raw.update(duration_s=6, faults=[])
    raw["workload"].update(stop_s=4)
    simulation = Simulation(build(raw))
    metrics = simulation.run()
    summed = metrics["node_counters"]
    assert summed["updates_applied"] > 0 and summed["anti_entropy_sessions"] > 0
    assert summed["updates_applied"] == simulation.counts.updates_applied
    nodes = [sim_node.node for sim_node in simulation.nodes.values()]
    for node in nodes:  # one more tick each reports the rest
        add_deltas(simulation.counts, node.tick(node.next_deadline()).counter_deltas)
    for name in NODE_COUNTERS:
        assert getattr(simulation.counts, name) == sum(
            getattr(node.view.counters(), name) for node in nodes
        ), name
