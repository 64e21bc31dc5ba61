"""Dissemination against theory: rounds for one update to reach every node.

Pittel (1987): with push gossip, where every informed node tells one uniformly random
node per round, a rumor started at one node of N reaches all of them in
``log2 N + ln N + O(1)`` rounds. The experiment runs the real core under exactly those
conditions: a complete graph, fanout 1, aligned timers (``jitter_timers = false``), a
message latency far below the round length, anti-entropy off, and a retransmit limit high
enough that informed nodes keep pushing (the theory never stops them). It measures the
rounds until the last node holds the update, over several seeds, and repeats the runs
with the default limit (``retransmit_mult = 4``): a node then stops pushing after
``4 * ceil(log10(N + 1))`` sends. With fanout 1 that is one send per round, so each node
pushes for about as many rounds as the theory needs in all; nodes informed early go
quiet before the end, which can lengthen the tail or leave a node uninformed (in a real
cluster anti-entropy then finishes the job). The tables show which happens.

Counting rounds: the client write is pushed at once (round 1); gossip rounds then happen
at every multiple of the interval. A run that completes at ``t_full`` took
``1 + (gossip ticks in (t_write, t_full - latency])`` rounds.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from rumordb.sim.engine import Simulation
from rumordb.sim.executor import run_tasks
from rumordb.sim.report import write_json
from rumordb.sim.scenario import Scenario, parse_scenario, read_raw

DEFAULT_RETRANSMIT_MULT = 4
TOLERANCE = 0.15


def theory_rounds(n: int) -> float:
    return math.log2(n) + math.log(n)


def rounds_of(scenario: Scenario, metrics: dict[str, Any]) -> int | None:
    """Rounds until every node held the update, or None if some never did."""
    if not metrics["dissemination_s"]["count"]:
        return None
    interval_s = scenario.gossip.interval_ms / 1000
    t_write = scenario.workload.start_s
    t_full = t_write + metrics["dissemination_s"]["max"]
    sent_by = t_full - scenario.network.latency_ms / 1000 + 1e-9
    return int(1 + math.floor(sent_by / interval_s) - math.floor(t_write / interval_s))


def check_conditions(scenario: Scenario) -> None:
    """The theory's assumptions; a scenario that breaks one measures something else."""
    g, n, w = scenario.gossip, scenario.network, scenario.workload
    problems = [
        (g.fanout != 1, "gossip.fanout must be 1"),
        (g.jitter_timers, "gossip.jitter_timers must be false"),
        (n.topology != "complete", "network.topology must be complete"),
        (n.latency_ms + n.jitter_ms >= g.interval_ms / 2, "latency must be << interval"),
        (w.writes != 1 or w.keys != 1, "workload must be one write (writes = 1, keys = 1)"),
        (n.loss > 0, "network.loss must be 0"),
    ]
    for broken, text in problems:
        if broken:
            raise ValueError(f"dissemination experiment: {text}")


def run_one(
    raw: dict[str, Any], nodes: int, seed: int, retransmit_mult: int | None
) -> dict[str, Any]:
    overrides: dict[str, Any] = {"cluster.nodes": nodes}
    if retransmit_mult is not None:
        overrides["gossip.retransmit_mult"] = retransmit_mult
    scenario = parse_scenario(copy.deepcopy(raw), overrides, seed)
    metrics = Simulation(scenario).run()
    series = metrics["series"]
    return {
        "nodes": nodes,
        "seed": seed,
        "retransmit_mult": scenario.gossip.retransmit_mult,
        "limit": "high" if retransmit_mult is None else "default",
        "rounds": rounds_of(scenario, metrics),
        "reached_fraction": series["mean_fraction"][-1],
        "messages_sent": metrics["messages_sent"],
        "wall_time_s": metrics["wall_time_s"],
        "trace_hash": metrics["trace_hash"],
    }


def run_experiment(
    path: Path,
    nodes: list[int],
    seeds: list[int],
    jobs: int,
    on_done: Callable[[dict[str, Any]], None] | None = None,
    dask: str | None = None,
) -> list[dict[str, Any]]:
    """Every (N, limit, seed), on ``jobs`` local processes or the ``dask`` scheduler."""
    raw = read_raw(path)
    check_conditions(parse_scenario(copy.deepcopy(raw)))
    work = [
        (n, seed, mult) for n in nodes for mult in (None, DEFAULT_RETRANSMIT_MULT) for seed in seeds
    ]
    work.sort(key=lambda item: -item[0])  # biggest first: better packing across workers
    tasks = [(raw, n, seed, mult) for n, seed, mult in work]
    rows = run_tasks(run_one, tasks, jobs, dask, on_done)
    rows.sort(key=lambda r: (r["limit"], r["nodes"], r["seed"]))
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (limit, N): mean rounds over seeds, its error against theory, coverage."""
    table: list[dict[str, Any]] = []
    keys = sorted({(r["limit"], r["nodes"]) for r in rows})
    for limit, n in keys:
        runs = [r for r in rows if r["limit"] == limit and r["nodes"] == n]
        done = [r["rounds"] for r in runs if r["rounds"] is not None]
        mean = sum(done) / len(done) if done else None
        theory = theory_rounds(n)
        table.append(
            {
                "limit": limit,
                "retransmit_mult": runs[0]["retransmit_mult"],
                "nodes": n,
                "runs": len(runs),
                "completed": len(done),
                "mean_rounds": mean,
                "min_rounds": min(done) if done else None,
                "max_rounds": max(done) if done else None,
                "theory_rounds": theory,
                "relative_error": (mean - theory) / theory if mean is not None else None,
                "mean_reached_fraction": sum(r["reached_fraction"] for r in runs) / len(runs),
                "mean_messages": sum(r["messages_sent"] for r in runs) / len(runs),
            }
        )
    return table


def write_report(rows: list[dict[str, Any]], out_dir: Path, command: str = "") -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    table = summarise(rows)
    write_json(out_dir / "dissemination.json", {"summary": table, "runs": rows})
    rounds_png = _plot_rounds(table, out_dir / "rounds.png")
    reached_png = _plot_reached(table, out_dir / "reached.png")
    report = out_dir / "report.md"
    report.write_text(_markdown(table, command), "utf-8")
    return [out_dir / "dissemination.json", rounds_png, reached_png, report]


def _plot_rounds(table: list[dict[str, Any]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ns = sorted({row["nodes"] for row in table})
    dense = [ns[0] * (ns[-1] / ns[0]) ** (i / 100) for i in range(101)] if ns else []
    ax.plot(dense, [theory_rounds(round(n)) for n in dense], "k-", label="log2 N + ln N")
    ax.fill_between(
        dense,
        [theory_rounds(round(n)) * (1 - TOLERANCE) for n in dense],
        [theory_rounds(round(n)) * (1 + TOLERANCE) for n in dense],
        color="grey",
        alpha=0.15,
        label="theory ± 15%",
    )
    for limit, marker, shift in (("high", "o", 1.0), ("default", "s", 1.08)):
        rows = [r for r in table if r["limit"] == limit and r["mean_rounds"] is not None]
        if not rows:
            continue
        xs = [r["nodes"] * shift for r in rows]  # side by side on the log axis
        means = [r["mean_rounds"] for r in rows]
        err = [
            [m - r["min_rounds"] for m, r in zip(means, rows, strict=True)],
            [r["max_rounds"] - m for m, r in zip(means, rows, strict=True)],
        ]
        label = f"measured, {limit} retransmit limit (mult {rows[0]['retransmit_mult']})"
        ax.errorbar(xs, means, yerr=err, marker=marker, capsize=3, linestyle="", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("nodes N")
    ax.set_ylabel("rounds until every node holds the update")
    ax.set_title("push gossip, fanout 1: measured rounds vs theory")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_reached(table: list[dict[str, Any]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4))
    for limit, marker in (("high", "o"), ("default", "s")):
        rows = [r for r in table if r["limit"] == limit]
        if rows:
            ax.plot(
                [r["nodes"] for r in rows],
                [r["mean_reached_fraction"] for r in rows],
                marker=marker,
                label=f"{limit} retransmit limit (mult {rows[0]['retransmit_mult']})",
            )
    ax.set_xscale("log")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("nodes N")
    ax.set_ylabel("fraction of nodes reached by push alone")
    ax.set_title("coverage when the rumor stops (no anti-entropy)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def verdict(table: list[dict[str, Any]]) -> tuple[bool, str]:
    """Whether the high-limit runs are within 15% of theory for every N >= 1000."""
    checked = [r for r in table if r["limit"] == "high" and r["nodes"] >= 1000]
    if not checked:
        return False, "no run with N >= 1000"
    bad = [
        r for r in checked if r["relative_error"] is None or abs(r["relative_error"]) > TOLERANCE
    ]
    worst = max(abs(r["relative_error"] or math.inf) for r in checked)
    if bad:
        return False, f"outside ±15% for N = {[r['nodes'] for r in bad]} (worst {worst:.1%})"
    return True, f"within ±15% of log2 N + ln N for every N >= 1000 (worst {worst:.1%})"


def _markdown(table: list[dict[str, Any]], command: str) -> str:
    ok, text = verdict(table)
    lines = [
        "# Dissemination vs theory: push gossip, fanout 1",
        "",
        __doc__.split("\n\n", 1)[1].strip() if __doc__ else "",
        "",
        f"**Result: {text}.**" if ok else f"**Result: NOT as predicted: {text}.**",
        "",
        "![rounds](rounds.png)",
        "![reached](reached.png)",
        "",
        "| limit | N | runs | completed | mean rounds (min-max) | log2 N + ln N | error "
        "| reached | messages |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in table:
        rounds = (
            f"{r['mean_rounds']:.2f} ({r['min_rounds']}-{r['max_rounds']})"
            if r["mean_rounds"] is not None
            else "n/a"
        )
        error = f"{r['relative_error']:+.1%}" if r["relative_error"] is not None else "n/a"
        lines.append(
            f"| {r['limit']} (mult {r['retransmit_mult']}) | {r['nodes']} | {r['runs']} "
            f"| {r['completed']} | {rounds} | {r['theory_rounds']:.2f} | {error} "
            f"| {r['mean_reached_fraction']:.4f} | {r['mean_messages']:.0f} |"
        )
    if command:
        lines += ["", "Reproduce with:", "", f"    {command}"]
    return "\n".join(lines) + "\n"
