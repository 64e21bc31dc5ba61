"""``rumor sim``: run simulated scenarios, sweeps and the dissemination experiment.

Exit codes: 0 done (and, for ``run``, converged); 2 bad scenario or arguments; 3 the run
did not converge (so scripts and make targets notice). The same scenario and seed give
the same trace on every run, whatever the process's string hash salt.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rumordb.cli.compare_cmd import compare_cmd
from rumordb.sim.scenario import ScenarioError, load_scenario

if TYPE_CHECKING:
    from rumordb.sim.engine import Simulation

# The engine, reports and sweeps (SimPy, NetworkX, matplotlib) are imported inside the
# commands: every other `rumor` command would otherwise pay for them at start-up.


@click.group()
def sim() -> None:
    """Simulate a RumorDB cluster (SimPy + NetworkX over the real core)."""


sim.add_command(compare_cmd)
_err = Console(stderr=True)

scenario_argument = click.argument(
    "scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
dask_option = click.option(
    "--dask",
    metavar="ADDRESS",
    help="Run each run as a task on this Dask scheduler (tcp://host:8786); --jobs is then unused.",
)


def _command() -> str:
    return "rumor " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["sim"] else ""


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(2)


@sim.command("run")
@scenario_argument
@click.option("--out", type=click.Path(path_type=Path), help="Report directory.")
@click.option("--seed", type=int, help="Override the scenario's seed.")
@click.option(
    "--trace",
    type=click.Path(path_type=Path),
    help="Also write the event trace (text) to this file.",
)
def run(scenario: Path, out: Path | None, seed: int | None, trace: Path | None) -> None:
    """Run one scenario (a TOML file); write metrics.json, PNG plots and report.md."""
    from rumordb.sim.engine import Simulation
    from rumordb.sim.report import verdict, write_run_report

    try:
        spec = load_scenario(scenario, seed=seed)
    except ScenarioError as exc:
        _fail(str(exc))
        return
    out_dir = out or Path("sim-out") / scenario.stem
    trace_file = trace.open("w", encoding="utf-8") if trace else None
    try:
        metrics = _run_with_progress(spec.duration_s, Simulation(spec, trace_file))
    finally:
        if trace_file is not None:
            trace_file.close()
    write_run_report(metrics, out_dir, _command())
    click.echo(verdict(metrics))
    click.echo(
        f"{metrics['messages_sent']} messages, {metrics['bytes_sent']} bytes; "
        f"wall time {metrics['wall_time_s']:.2f} s; trace {metrics['trace_hash']}"
    )
    click.echo(f"report: {out_dir / 'report.md'}")
    if not metrics["converged"]:
        raise click.exceptions.Exit(3)


def _run_with_progress(duration_s: float, simulation: Simulation) -> dict[str, Any]:
    columns = (
        TextColumn("[bold]simulating"),
        BarColumn(),
        TextColumn("t = {task.completed:.1f} / {task.total:.1f} s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_err, transient=True) as progress:
        task = progress.add_task("sim", total=duration_s)
        return simulation.run(lambda now: progress.update(task, completed=now))


@sim.command("sweep")
@scenario_argument
@click.option(
    "--param",
    multiple=True,
    required=True,
    help="NAME=V1,V2,... (repeatable), e.g. gossip.fanout=1,2,3",
)
@click.option("--out", type=click.Path(path_type=Path), help="Report directory.")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Parallel worker processes.")  # fmt: skip
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs per point (seeds seed..seed+K-1).")  # fmt: skip
@click.option("--seed", type=int, help="First seed (default: the file's).")
@click.option("--metric", multiple=True, help="Metric to plot (repeatable).")
@dask_option
def sweep(
    scenario: Path,
    param: tuple[str, ...],
    out: Path | None,
    jobs: int,
    seeds: int,
    seed: int | None,
    metric: tuple[str, ...],
    dask: str | None,
) -> None:
    """Run a grid of parameter values in parallel; plot metrics against the parameter."""
    from rumordb.sim.executor import ExecutorError
    from rumordb.sim.sweep import DEFAULT_METRICS, parse_params, run_sweep, write_sweep_report

    try:
        params = parse_params(list(param))
        base = load_scenario(scenario, seed=seed)
    except ScenarioError as exc:
        _fail(str(exc))
        return
    seed_list = list(range(base.seed, base.seed + seeds))
    total = len(seed_list) * _grid_size(params)
    out_dir = out or Path("sim-out") / f"{scenario.stem}-sweep"
    columns = (TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=_err, transient=True) as progress:
            task = progress.add_task("sweep", total=total)
            rows = run_sweep(
                scenario, params, seed_list, jobs, lambda _row: progress.advance(task), dask
            )
    except (ScenarioError, ExecutorError) as exc:
        _fail(str(exc))
        return
    metrics = list(metric) or list(DEFAULT_METRICS)
    write_sweep_report(rows, params, metrics, out_dir, _command(), base.description)
    not_converged = [r for r in rows if not r["metrics"].get("converged")]
    click.echo(f"{len(rows)} runs; {len(rows) - len(not_converged)} converged")
    for row in not_converged:
        click.echo(f"NOT converged: {row['params']} seed {row['seed']}")
    click.echo(f"report: {out_dir / 'report.md'}")


def _grid_size(params: dict[str, list[Any]]) -> int:
    size = 1
    for values in params.values():
        size *= len(values)
    return size


@sim.command("dissemination")
@scenario_argument
@click.option("--nodes", default="100,300,1000,3000,10000", show_default=True,
              help="Cluster sizes, comma separated.")  # fmt: skip
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs per size and limit.")  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path), help="Report directory.")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Parallel worker processes.")  # fmt: skip
@dask_option
def dissemination_cmd(
    scenario: Path, nodes: str, seeds: int, out: Path | None, jobs: int, dask: str | None
) -> None:
    """Measure rounds for one update to reach N nodes against log2 N + ln N."""
    from rumordb.sim import dissemination
    from rumordb.sim.executor import ExecutorError

    try:
        sizes = [int(n) for n in nodes.split(",") if n.strip()]
        base = load_scenario(scenario)
    except (ValueError, ScenarioError) as exc:
        _fail(f"--nodes or scenario: {exc}")
        return
    if not sizes or min(sizes) < 2:
        _fail("--nodes: give sizes >= 2")
    out_dir = out or Path("sim-out") / "dissemination"
    seed_list = list(range(base.seed, base.seed + seeds))
    columns = (TextColumn("[bold]runs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=_err, transient=True) as progress:
            task = progress.add_task("runs", total=len(sizes) * len(seed_list) * 2)
            rows = dissemination.run_experiment(
                scenario, sizes, seed_list, jobs, lambda _row: progress.advance(task), dask
            )
    except (ValueError, ScenarioError, ExecutorError) as exc:
        _fail(str(exc))
        return
    dissemination.write_report(rows, out_dir, _command())
    ok, text = dissemination.verdict(dissemination.summarise(rows))
    click.echo(text if ok else f"NOT as predicted: {text}")
    click.echo(f"report: {out_dir / 'report.md'}")


@sim.command("calibrate")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("calibration.toml"), show_default=True,
              help="Where to write the constants (TOML).")  # fmt: skip
@click.option("--rounds", type=click.IntRange(1, 100), default=15, show_default=True,
              help="Alternating rounds of each kind of request (medians are kept).")  # fmt: skip
@click.option("--node-process/--in-process", default=True, show_default=True,
              help="Service times from a node process over loopback (its CPU, every "
              "thread), or from the app in this process (no HTTP server).")  # fmt: skip
def calibrate(out: Path, rounds: int, node_process: bool) -> None:
    """Measure the live send path's constants on this machine for the simulator.

    Framing bytes from the real envelope, seal and request head; each node's service
    times (receive per post, message and version; send per post and message; a client
    write) from a node process started here (or the app in-process), a sync group commit
    on this disk, and how late a sleeping event loop wakes on this machine now (see
    live/calibrate.py). The file records the machine and its load. Use it with a
    scenario's ``[network] calibration = "FILE"`` or ``compare --calibration``.
    """
    import asyncio

    import msgspec

    from rumordb.live import calibrate as measure
    from rumordb.sim.calibration import Calibration, Constants, to_toml

    costs = _node_costs(rounds) if node_process else None
    constants = msgspec.convert(asyncio.run(measure.constants(rounds, costs)), Constants)
    machine = {**measure.machine(), "command": _command()}
    machine["service_times"] = "node process" if node_process else "in-process app"
    out.write_text(to_toml(Calibration(constants=constants, machine=machine)))
    c = constants
    click.echo(
        f"{out}: receive {c.post_cost_us} µs/post + {c.message_cost_us} µs/message + "
        f"{c.update_cost_us} µs/version; send {c.send_post_cost_us} µs/post + "
        f"{c.send_message_cost_us} µs/message; write {c.write_cost_us} µs; commit "
        f"{c.commit_cost_us} µs; wake-up p50 {c.wakeup_us[len(c.wakeup_us) // 2]} µs; "
        f"service time p90/p50 {_p90(c.service_spread)}"
    )


def _p90(quantiles: list[float]) -> str:
    return f"{quantiles[int(0.9 * len(quantiles))]}" if quantiles else "n/a"


def _node_costs(rounds: int) -> dict[str, Any]:
    """Service times measured on one node process started (and stopped) here."""
    import asyncio
    import tempfile
    import time

    from rumordb.cli import credentials
    from rumordb.cli.cluster import ClusterState, spawn_node, stop_nodes, wait_until_joined
    from rumordb.cli.compare_live import free_tcp_port
    from rumordb.live.calibrate import NodeTarget, node_costs_us, startup_ms

    with tempfile.TemporaryDirectory(prefix="rumor-calibrate-node-") as tmp:
        root = Path(tmp)
        secrets, _ = credentials.load_or_create(root)
        state = ClusterState(False, 3, secrets.discovery_port, [])
        env = {"RUMOR_DURABILITY": "batch", "RUMOR_LOG_LEVEL": "warning"}
        started_s = time.monotonic()
        node = spawn_node("c0", free_tcp_port(), root, secrets, state, env)
        try:
            startup = asyncio.run(startup_ms(node.url, started_s))
            wait_until_joined([node], secrets.reader_key, 30.0)
            target = NodeTarget(
                "127.0.0.1", node.port, node.pid, secrets.cluster_secret, secrets.admin_key
            )
            return {**asyncio.run(node_costs_us(target, rounds)), "startup_ms": startup}
        finally:
            stop_nodes([node])
