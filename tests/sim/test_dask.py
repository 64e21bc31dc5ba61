"""Sweeps on Dask: each (parameter, seed) is a task on a scheduler; results match a local run.

The cluster is a ``distributed.LocalCluster`` of 2 worker processes bound to 127.0.0.1
(scheduler, nannies and workers; no dashboards), shared by this module and closed at its
end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from distributed import Client, LocalCluster

from rumordb.cli.main import app
from rumordb.sim.executor import ExecutorError, run_tasks
from rumordb.sim.sweep import run_sweep
from tests.live.harness import free_tcp_port
from tests.sim.helpers import MINIMAL_TOML

pytestmark = pytest.mark.timeout(180)

runner = CliRunner()
SMALL = MINIMAL_TOML.replace("duration_s = 30", "duration_s = 12")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address=None,
    ) as cluster:
        yield cluster.scheduler_address


def test_the_cluster_listens_on_loopback_only(scheduler: str) -> None:
    assert scheduler.startswith("tcp://127.0.0.1:")
    with Client(scheduler, set_as_default=False) as client:
        workers = client.scheduler_info()["workers"]
    assert len(workers) == 2
    assert all(address.startswith("tcp://127.0.0.1:") for address in workers)


def test_a_sweep_on_dask_gives_the_trace_hashes_of_a_local_run(
    scheduler: str, tmp_path: Path
) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text(SMALL)
    params = {"gossip.fanout": [1, 2]}
    done: list[int] = []
    remote = run_sweep(
        path, params, [7, 8], jobs=1, on_done=lambda _r: done.append(1), dask=scheduler
    )
    local = run_sweep(path, params, [7, 8], jobs=1)
    assert len(done) == 4  # streamed back one by one
    assert [_simulated(r) for r in remote] == [_simulated(r) for r in local]
    assert len({r["metrics"]["trace_hash"] for r in remote}) == 4


def _simulated(row: dict[str, Any]) -> tuple[Any, ...]:
    """A run's outcome without its wall-clock figures (those differ between machines)."""
    metrics = {k: v for k, v in row["metrics"].items() if "wall" not in k}
    return (row["params"], row["seed"], metrics)


def _hashes(runs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (r.get("params"), r.get("nodes"), r.get("limit"), r["seed"], r.get("trace_hash"))
        if "trace_hash" in r
        else (r["params"], r["seed"], r["metrics"]["trace_hash"])
        for r in runs
    ]


def test_sweep_command_takes_dask_and_matches_jobs(scheduler: str, tmp_path: Path) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text(SMALL)
    outs = []
    for flags in (["--dask", scheduler], ["--jobs", "1"]):
        out = tmp_path / flags[0].strip("-")
        args = ["sim", "sweep", str(path), "--param", "gossip.fanout=1,3", "--seeds", "2"]
        result = runner.invoke(app, [*args, *flags, "--out", str(out)])
        assert result.exit_code == 0, result.output
        outs.append(json.loads((out / "sweep.json").read_text()))
    assert _hashes(outs[0]["runs"]) == _hashes(outs[1]["runs"])


def test_dissemination_command_takes_dask_and_matches_jobs(scheduler: str, tmp_path: Path) -> None:
    scenario = "experiments/dissemination_vs_theory/scenario.toml"
    outs = []
    for flags in (["--dask", scheduler], ["--jobs", "1"]):
        out = tmp_path / flags[0].strip("-")
        args = ["sim", "dissemination", scenario, "--nodes", "32,64", "--seeds", "1"]
        result = runner.invoke(app, [*args, *flags, "--out", str(out)])
        assert result.exit_code == 0, result.output
        outs.append(json.loads((out / "dissemination.json").read_text()))
    assert _hashes(outs[0]["runs"]) == _hashes(outs[1]["runs"])


def test_no_scheduler_at_the_address_is_a_clear_error() -> None:
    address = f"tcp://127.0.0.1:{free_tcp_port('127.0.0.1')}"
    with pytest.raises(ExecutorError, match=r"--dask tcp://127\.0\.0\.1:\d+: cannot reach"):
        run_tasks(divmod, [(7, 2)], dask=address, connect_timeout_s=1)
