"""Reports: ``metrics.json``, PNG plots (matplotlib, Agg backend) and a ``report.md``.

A run report shows the convergence curves (fraction of nodes holding the latest version
of each key, over time) with the fault timeline drawn on them, and the traffic. A sweep
report plots chosen metrics against the swept parameter. The Markdown embeds the PNGs by
relative path, so a report directory can be moved or committed as a whole.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use: the backend is chosen first
from matplotlib.axes import Axes

FAULT_COLOURS = {
    "partition": "tab:red",
    "heal": "tab:green",
    "crash": "tab:orange",
    "restart": "tab:blue",
    "link": "tab:purple",
    "clock": "tab:brown",
}


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_run_report(metrics: dict[str, Any], out_dir: Path, command: str = "") -> list[Path]:
    """Write metrics.json, convergence.png, traffic.png and report.md into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "metrics.json", metrics)
    written = [out_dir / "metrics.json"]
    written.append(plot_convergence(metrics, out_dir / "convergence.png"))
    written.append(plot_traffic(metrics, out_dir / "traffic.png"))
    report = out_dir / "report.md"
    report.write_text(run_markdown(metrics, [p.name for p in written[1:]], command), "utf-8")
    written.append(report)
    return written


def verdict(metrics: dict[str, Any]) -> str:
    """The one-line outcome the CLI prints and the report leads with."""
    if metrics["converged"]:
        return (
            f"converged in {metrics['convergence_time_s']:.3f} s "
            f"(at t = {metrics['converged_at_s']:.3f} s; last disturbance at "
            f"{metrics['last_disturbance_s']:.3f} s)"
        )
    return (
        f"NOT converged by t = {metrics['end_s']:.3f} s: {metrics['keys_incomplete']} of "
        f"{metrics['keys']} keys not held by every node, "
        f"{metrics['divergent_keys']} keys divergent"
    )


def _fault_lines(ax: Axes, metrics: dict[str, Any]) -> None:
    seen: set[str] = set()
    scenario = metrics["scenario"]
    for fault in metrics.get("events", []):
        action = fault["action"]
        ax.axvline(
            fault["at_s"],
            color=FAULT_COLOURS.get(action, "grey"),
            linestyle="--",
            linewidth=1,
            label=None if action in seen else action,
        )
        seen.add(action)
    workload = scenario.get("workload", {})
    if workload.get("writes_per_s", 0) > 0:
        stop = workload.get("stop_s")
        stop = scenario["duration_s"] if stop is None else stop
        ax.axvspan(workload.get("start_s", 0), stop, color="grey", alpha=0.08, label="writes")


def plot_convergence(metrics: dict[str, Any], path: Path) -> Path:
    series = metrics["series"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    t = series["t_s"]
    ax.plot(t, series["mean_fraction"], label="mean over keys", linewidth=1.5)
    ax.plot(t, series["min_fraction"], label="worst key", linewidth=1)
    ax.plot(t, series["nodes_current"], label="nodes current on every key", linewidth=1)
    _fault_lines(ax, metrics)
    if metrics["converged_at_s"] is not None:
        ax.axvline(metrics["converged_at_s"], color="black", linewidth=1, label="converged")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("fraction of nodes holding the latest version")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(_title(metrics))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_traffic(metrics: dict[str, Any], path: Path) -> Path:
    series = metrics["series"]
    interval_s = metrics["scenario"]["sample_interval_ms"] / 1000
    fig, ax = plt.subplots(figsize=(9, 4))
    t = series["t_s"]
    ax.plot(t, [m / interval_s for m in series["messages"]], label="messages/s")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("messages per second")
    twin = ax.twinx()
    twin.plot(t, [b / interval_s / 1024 for b in series["bytes"]], color="tab:orange")
    twin.set_ylabel("KiB per second", color="tab:orange")
    _fault_lines(ax, metrics)
    ax.set_title(f"traffic: {metrics['messages_sent']} messages, {metrics['bytes_sent']} bytes")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _title(metrics: dict[str, Any]) -> str:
    name = metrics.get("name") or "scenario"
    return f"{name}: {metrics['nodes']} nodes, seed {metrics['seed']}"


def run_markdown(metrics: dict[str, Any], images: Sequence[str], command: str) -> str:
    s = metrics["scenario"]
    d = metrics["dissemination_s"]
    w = metrics["writes"]
    rows = [
        ("outcome", verdict(metrics)),
        ("nodes (up at the end)", f"{metrics['nodes']} ({metrics['nodes_up']})"),
        ("keys written", metrics["keys"]),
        ("divergent keys (sample)", f"{metrics['divergent_keys']} {metrics['divergent_sample']}"),
        ("client writes (deletes)", f"{w['writes']} ({w['deletes']})"),
        ("messages sent", metrics["messages_sent"]),
        ("bytes sent", metrics["bytes_sent"]),
        ("dissemination p50 / p90 / max (s)", _triple(d)),
        ("LWW inversions (write lost to an earlier concurrent one)", metrics["lww_inversions"]),
        ("causal writes lost (must be 0)", metrics["causal_writes_lost"]),
        ("stale reads", _stale(metrics)),
        ("trace hash", f"`{metrics['trace_hash']}`"),
    ]
    lines = [f"# {s.get('name') or 'Simulation'} (seed {metrics['seed']})", ""]
    if s.get("description"):
        lines += [s["description"].strip(), ""]
    lines += ["| | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows), ""]
    lines += [f"![{Path(name).stem}]({name})" for name in images]
    lines += ["", "## Fault timeline", ""]
    faults = s.get("faults", [])
    lines += [_fault_text(f) for f in faults] or ["(none)"]
    lines += ["", "## Messages by kind", "", "| kind | messages |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in metrics["messages_by_kind"].items()]
    lines += ["", "## Definitions", "", _DEFINITIONS, ""]
    if command:
        lines += ["Reproduce with:", "", f"    {command}", ""]
    return "\n".join(lines)


_DEFINITIONS = (
    "A node holds the latest version of a key when its stored version is the LWW winner "
    "among every version ever written (or the winner is a tombstone and the node has no "
    "record). Only nodes that are up count (with sharding, only the key's owners). "
    "Convergence time runs from the last disturbance (last write or fault) to the moment "
    "from which every counted node held the latest version of every key."
)


def _fault_text(fault: dict[str, Any]) -> str:
    details = {
        k: v
        for k, v in fault.items()
        if k not in ("at_s", "action") and v is not None and not (k == "state" and v == "keep")
    }
    extra = ", ".join(f"{k}={v}" for k, v in details.items())
    return f"- t = {fault['at_s']} s: **{fault['action']}** {extra}".rstrip()


def _triple(d: dict[str, Any]) -> str:
    if not d["count"]:
        return "n/a"
    return f"{d['p50']:.3f} / {d['p90']:.3f} / {d['max']:.3f} ({d['count']} versions)"


def _stale(metrics: dict[str, Any]) -> str:
    w = metrics["writes"]
    if not w["reads"]:
        return "no reads"
    return f"{w['stale_reads']} of {w['reads']} ({metrics['stale_read_fraction']:.1%})"


def plot_sweep(
    rows: list[dict[str, Any]], param: str, series_by: list[str], metric: str, path: Path
) -> Path:
    """``metric`` (mean, with min-max bars over seeds) against ``param``; a line per group."""
    groups: dict[tuple[Any, ...], dict[Any, list[float]]] = {}
    for row in rows:
        value = row["metrics"].get(metric)
        if value is None:
            continue
        group = tuple(row["params"][p] for p in series_by)
        groups.setdefault(group, {}).setdefault(row["params"][param], []).append(float(value))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for group, points in groups.items():
        xs = sorted(points)
        means = [sum(points[x]) / len(points[x]) for x in xs]
        low = [m - min(points[x]) for x, m in zip(xs, means, strict=True)]
        high = [max(points[x]) - m for x, m in zip(xs, means, strict=True)]
        label = ", ".join(f"{p}={v}" for p, v in zip(series_by, group, strict=True)) or metric
        ax.errorbar(xs, means, yerr=[low, high], marker="o", capsize=3, label=label)
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {param}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
