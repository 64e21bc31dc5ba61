"""``rumor sim``: run, sweep and dissemination end to end, through the click app."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from rumordb.cli.main import app
from tests.sim.helpers import MINIMAL_TOML

runner = CliRunner()


def _scenario(tmp_path: Path, text: str = MINIMAL_TOML) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return path


def test_run_writes_metrics_plots_and_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = runner.invoke(app, ["sim", "run", str(_scenario(tmp_path)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "converged in " in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["converged"] is True
    assert metrics["convergence_time_s"] >= 0
    assert metrics["messages_sent"] > 0 and metrics["bytes_sent"] > metrics["messages_sent"]
    assert metrics["scenario"]["seed"] == 7
    series = metrics["series"]
    assert len(series["t_s"]) == len(series["mean_fraction"]) > 100
    for png in ("convergence.png", "traffic.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "![convergence](convergence.png)" in report
    assert "![traffic](traffic.png)" in report


def test_seed_option_overrides_the_file(tmp_path: Path) -> None:
    out = tmp_path / "r"
    args = ["sim", "run", str(_scenario(tmp_path)), "--out", str(out), "--seed", "42"]
    assert runner.invoke(app, args).exit_code == 0
    assert json.loads((out / "metrics.json").read_text())["scenario"]["seed"] == 42


def test_a_run_that_does_not_converge_says_so_and_exits_3(tmp_path: Path) -> None:
    never_healed = MINIMAL_TOML.split("[[faults]]\nat_s = 8")[0].replace(
        "duration_s = 30", "duration_s = 12"
    )
    out = tmp_path / "r"
    result = runner.invoke(
        app, ["sim", "run", str(_scenario(tmp_path, never_healed)), "--out", str(out)]
    )
    assert result.exit_code == 3
    assert "NOT converged" in result.output
    assert json.loads((out / "metrics.json").read_text())["converged"] is False


def test_a_bad_scenario_exits_2_naming_the_field(tmp_path: Path) -> None:
    bad = MINIMAL_TOML.replace('["n3", "n4", "n5"]', '["n3", "n4", "n9"]')
    result = runner.invoke(app, ["sim", "run", str(_scenario(tmp_path, bad))])
    assert result.exit_code == 2
    assert "faults[0].groups: unknown node 'n9'" in result.output


def test_sweep_runs_the_grid_in_parallel_and_plots_each_metric(tmp_path: Path) -> None:
    small = MINIMAL_TOML.replace("duration_s = 30", "duration_s = 14")
    out = tmp_path / "sweep"
    args = ["sim", "sweep", str(_scenario(tmp_path, small)), "--param", "gossip.fanout=1,3"]
    args += ["--jobs", "2", "--out", str(out), "--metric", "convergence_time_s"]
    args += ["--metric", "messages_sent"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "sweep.json").read_text())
    assert [r["params"]["gossip.fanout"] for r in data["runs"]] == [1, 3]
    fanout1, fanout3 = (r["metrics"]["messages_sent"] for r in data["runs"])
    assert fanout3 > fanout1
    assert (out / "convergence_time_s.png").exists() and (out / "messages_sent.png").exists()
    assert "![messages_sent](messages_sent.png)" in (out / "report.md").read_text()


def test_sweep_rejects_a_bad_value_before_running(tmp_path: Path) -> None:
    args = ["sim", "sweep", str(_scenario(tmp_path)), "--param", "gossip.fanout=2,0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "gossip.fanout: must be >= 1" in result.output


def test_dissemination_matches_theory_shape_on_small_clusters(tmp_path: Path) -> None:
    scenario = Path("experiments/dissemination_vs_theory/scenario.toml")
    out = tmp_path / "d"
    args = ["sim", "dissemination", str(scenario), "--nodes", "64,256", "--seeds", "2"]
    result = runner.invoke(app, [*args, "--jobs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "dissemination.json").read_text())["summary"]
    high = {row["nodes"]: row for row in summary if row["limit"] == "high"}
    assert high[64]["completed"] == 2 and high[256]["completed"] == 2
    assert high[256]["mean_rounds"] > high[64]["mean_rounds"]
    for row in high.values():
        assert abs(row["relative_error"]) < 0.3
    assert (out / "rounds.png").exists() and (out / "reached.png").exists()
