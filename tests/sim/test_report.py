"""Reports a researcher can trust: heal -> converged, the lag CDF and p99, legible plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.colors as mcolors
import pytest
from click.testing import CliRunner
from matplotlib.figure import Figure

from rumordb.cli.main import app
from rumordb.sim.lag import cdf_points, nearest_rank, percentile_from_cdf
from rumordb.sim.plots import (
    convergence_figure,
    distinct_colours,
    lag_figure,
    moving_average,
    traffic_figure,
)
from rumordb.sim.timeline import Span, fault_spans, faults_cleared_s, heal_to_converged_s
from tests.sim.helpers import MINIMAL_TOML, minimal_raw, run

runner = CliRunner()


def test_every_run_report_shows_heal_to_converged_and_the_lag_cdf(tmp_path: Path) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text(MINIMAL_TOML)
    out = tmp_path / "report"
    result = runner.invoke(app, ["sim", "run", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["faults_cleared_s"] == 8.0  # the heal
    assert metrics["heal_to_converged_s"] == pytest.approx(metrics["converged_at_s"] - 8.0)
    assert (out / "lag.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert "| heal -> converged (from the last fault clearing) | " in report
    assert "| lag p50 / p90 / p99 / max (s) | " in report
    assert "![lag](lag.png)" in report
    lag = metrics["dissemination_s"]
    assert lag["p50"] <= lag["p90"] <= lag["p99"] <= lag["max"]
    assert percentile_from_cdf(metrics["lag_cdf_s"], 0.99) == lag["p99"]


def test_percentiles_are_lags_that_happened() -> None:
    values = [float(i) for i in range(1, 101)]
    assert [nearest_rank(values, q) for q in (0.5, 0.9, 0.99, 1.0)] == [50, 90, 99, 100]
    points = cdf_points(list(reversed(values)))
    assert points[0] == [0.0, 1.0] and points[-1] == [1.0, 100.0]
    assert [lag for _, lag in points] == sorted(lag for _, lag in points)
    assert cdf_points([]) == [] and percentile_from_cdf([], 0.5) is None


def _events(*items: tuple[float, str, list[str]]) -> list[dict[str, Any]]:
    return [{"at_s": at, "action": action, "nodes": nodes} for at, action, nodes in items]


def test_the_last_fault_clears_at_the_last_heal_or_restart() -> None:
    scenario = {"network": {"latency_ms": 5.0, "jitter_ms": 0.0, "loss": 0.0}, "faults": []}
    events = _events(
        (1, "partition", []), (3, "crash", ["n2"]), (4, "heal", []), (6, "restart", ["n2"])
    )
    spans = fault_spans(events, scenario)
    assert spans == [Span("partition", 1, 4, ""), Span("down", 3, 6, "n2")]
    assert faults_cleared_s(spans) == 6
    assert heal_to_converged_s(7.5, 6) == 1.5
    assert heal_to_converged_s(5.0, 6) == 0.0  # already converged when the last fault cleared


def test_a_fault_still_in_force_or_no_fault_gives_no_heal_time() -> None:
    scenario: dict[str, Any] = {"faults": []}
    assert faults_cleared_s(fault_spans(_events((1, "partition", [])), scenario)) is None
    assert faults_cleared_s(fault_spans(_events((1, "clock", ["n1"])), scenario)) is None
    assert heal_to_converged_s(None, 3.0) is None


def test_a_link_fault_clears_when_the_network_defaults_come_back() -> None:
    faults = [
        {"at_s": 2, "action": "link", "links": None, "loss": 0.3},
        {"at_s": 5, "action": "link", "links": None, "loss": 0.01},
    ]
    scenario = {"network": {"latency_ms": 5.0, "jitter_ms": 0.0, "loss": 0.01}, "faults": faults}
    spans = fault_spans(_events((2, "link", []), (5, "link", [])), scenario)
    assert spans == [Span("link", 2, 5, "every link")]


def test_sampled_drops_add_up_to_the_traffic_totals() -> None:
    raw = minimal_raw()
    raw["network"]["loss"] = 0.05
    metrics = run(raw)
    series, traffic = metrics["series"], metrics["traffic"]
    assert sum(series["lost"]) == traffic["lost"] > 0
    blocked = traffic["partitioned"] + traffic["unreachable"] + traffic["to_down_node"]
    assert sum(series["blocked"]) == blocked > 0


def test_moving_average_keeps_the_length_and_the_level() -> None:
    assert moving_average([0, 0, 9, 0, 0], 3) == [0, 3, 3, 3, 0]
    assert moving_average([2.0] * 7, 4) == [2.0] * 7
    assert moving_average([1, 2], 1) == [1.0, 2.0]


def _every_fault_metrics() -> dict[str, Any]:
    raw = minimal_raw()
    raw["network"]["loss"] = 0.02
    raw["faults"] += [
        {"at_s": 2, "action": "crash", "nodes": ["n4"]},
        {"at_s": 6, "action": "restart", "nodes": ["n4"]},
        {"at_s": 9, "action": "link", "loss": 0.2},
        {"at_s": 12, "action": "link", "loss": 0.02},
        {"at_s": 5, "action": "clock", "nodes": ["n3"], "offset_ms": 100},
    ]
    return run(raw)


def _drawn(fig: Figure) -> list[tuple[str, str]]:
    """(label, colour) of every line and shaded span, axis by axis."""
    found = []
    for ax in fig.axes:
        for artist in [*ax.get_lines(), *ax.patches]:
            colour = artist.get_color() if hasattr(artist, "get_color") else artist.get_facecolor()
            found.append((str(artist.get_label()), mcolors.to_hex(colour, keep_alpha=False)))
    return found


@pytest.mark.parametrize("figure", [convergence_figure, traffic_figure, lag_figure])
def test_no_colour_stands_for_two_things_and_every_line_is_in_the_legend(figure: Any) -> None:
    fig = figure(_every_fault_metrics())
    drawn = _drawn(fig)
    assert drawn
    meaning_of: dict[str, str] = {}
    for label, colour in drawn:
        assert not label.startswith("_"), f"unlabelled artist in colour {colour}"
        meaning = label.removesuffix(" (raw)")  # the faint raw series of a smoothed line
        assert meaning_of.setdefault(colour, meaning) == meaning, (colour, label)
    legend_labels = {
        t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()
    }
    assert {label for label, _ in drawn} <= legend_labels


def test_the_traffic_plot_draws_dropped_traffic_apart_and_smoothed() -> None:
    labels = {label for label, _ in _drawn(traffic_figure(_every_fault_metrics()))}
    assert {"delivered", "delivered (raw)", "lost on a link"} <= labels
    assert "blocked (partition or down node)" in labels
    assert {"partition in force", "a node down", "link degraded", "faults cleared"} <= labels


def test_sweep_lines_never_share_a_colour() -> None:
    for n in (3, 10, 15, 40):
        assert len({mcolors.to_hex(c) for c in distinct_colours(n)}) == n
