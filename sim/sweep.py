"""Parameter sweeps: one scenario, a grid of overrides, several seeds, in parallel processes.

``--param gossip.fanout=1,2,3 --param cluster.nodes=50,100`` is the grid's product; each
point runs once per seed in its own process (``spawn``, so a worker shares nothing with
the parent), or on a Dask cluster (``sim.executor``). Every point's scenario is validated in the parent first, so a bad value is
reported before any work starts. Each run keeps only its scalar metrics (no series), and
the report plots the chosen metrics against the first parameter, one line per value of
the others.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rumordb.sim.engine import Simulation
from rumordb.sim.executor import run_tasks
from rumordb.sim.plots import save, sweep_figure, sweep_lag_figure
from rumordb.sim.report import write_json
from rumordb.sim.scenario import ScenarioError, parse_scenario, parse_value, read_raw

DEFAULT_METRICS = (
    "convergence_time_s",
    "heal_to_converged_s",
    "dissemination_s.p99",
    "messages_sent",
    "bytes_sent",
)


def parse_params(specs: list[str]) -> dict[str, list[Any]]:
    """``["gossip.fanout=1,2,3"]`` -> ``{"gossip.fanout": [1, 2, 3]}``."""
    params: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise ScenarioError(f"--param {spec!r}: expected NAME=V1,V2,...")
        if name in params:
            raise ScenarioError(f"--param {name}: given twice")
        params[name] = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
    if not params:
        raise ScenarioError("--param: give at least one parameter to sweep")
    return params


def grid(params: dict[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(params)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*params.values())]


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The numbers a sweep compares (``dissemination_s.p50`` style for nested ones)."""
    flat: dict[str, Any] = {}
    for name, value in metrics.items():
        if isinstance(value, bool):
            flat[name] = int(value)
        elif isinstance(value, int | float) or value is None:
            flat[name] = value
        elif name in ("dissemination_s", "writes", "node_counters"):
            for inner, number in value.items():
                flat[f"{name}.{inner}"] = number
    flat["trace_hash"] = metrics["trace_hash"]
    return flat


def run_point(raw: dict[str, Any], overrides: dict[str, Any], seed: int) -> dict[str, Any]:
    """One run (anywhere: here, a worker process, a Dask worker): params and scalar metrics."""
    scenario = parse_scenario(copy.deepcopy(raw), overrides, seed)
    metrics = Simulation(scenario).run()
    row = {"params": overrides, "seed": seed, "metrics": scalar_metrics(metrics)}
    return {**row, "lag_cdf_s": metrics["lag_cdf_s"]}


def run_sweep(
    path: Path,
    params: dict[str, list[Any]],
    seeds: list[int],
    jobs: int,
    on_done: Callable[[dict[str, Any]], None] | None = None,
    dask: str | None = None,
) -> list[dict[str, Any]]:
    """Every (point, seed) of the grid, on ``jobs`` local processes or the ``dask`` scheduler."""
    raw = read_raw(path)
    points = [(overrides, seed) for overrides in grid(params) for seed in seeds]
    for overrides, seed in points:
        parse_scenario(copy.deepcopy(raw), overrides, seed)  # fail fast, naming the field
    tasks = [(raw, overrides, seed) for overrides, seed in points]
    rows = run_tasks(run_point, tasks, jobs, dask, on_done)
    rows.sort(key=lambda r: ([_sort_key(v) for v in r["params"].values()], r["seed"]))
    return rows


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float) else (1, str(value))


def write_sweep_report(
    rows: list[dict[str, Any]],
    params: dict[str, list[Any]],
    metrics: list[str],
    out_dir: Path,
    command: str = "",
    description: str = "",
) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(params)
    write_json(out_dir / "sweep.json", {"params": params, "metrics": metrics, "runs": rows})
    written = [out_dir / "sweep.json"]
    images = []
    for metric in metrics:
        png = out_dir / f"{metric.replace('.', '_')}.png"
        images.append(save(sweep_figure(rows, names[0], names[1:], metric), png))
    images.append(save(sweep_lag_figure(rows, names), out_dir / "lag_cdf.png"))
    written += images
    report = out_dir / "report.md"
    text = _sweep_markdown(rows, names, metrics, images, command, description)
    report.write_text(text, "utf-8")
    written.append(report)
    return written


def _sweep_markdown(
    rows: list[dict[str, Any]],
    names: list[str],
    metrics: list[str],
    images: list[Path],
    command: str,
    description: str,
) -> str:
    lines = [f"# Sweep over {', '.join(names)}", ""]
    if description:
        lines += [description.strip(), ""]
    converged = sum(1 for row in rows if row["metrics"].get("converged"))
    lines += [f"**{converged} of {len(rows)} runs converged.**", ""]
    lines += [f"![{p.stem}]({p.name})" for p in images]
    # Every report shows the lag tail, whichever metrics were chosen.
    metrics = [*metrics, *[m for m in ("dissemination_s.p99",) if m not in metrics]]
    header = [*names, "seed", "converged", *metrics]
    lines += ["", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        m = row["metrics"]
        cells = [*(row["params"][n] for n in names), row["seed"], bool(m.get("converged"))]
        cells += [_fmt(m.get(metric)) for metric in metrics]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if command:
        lines += ["", "Reproduce with:", "", f"    {command}"]
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
