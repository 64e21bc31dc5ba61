"""The figures of a report (matplotlib, Agg backend), drawn to be read without the code.

Rules every figure keeps: within a figure no colour stands for two things (a series and
its faint raw samples share one, and the legend says "raw"); every line and shaded span
is in the legend; faults are drawn as the spans they were in force (partition, node
down, link degraded), not only as instants; traffic that a partition, a down node or a
lossy link swallowed is drawn apart from delivered traffic; noisy per-sample series are
drawn as a moving average over ``SMOOTH_S`` with the raw samples faint behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use: the backend is chosen first
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rumordb.sim.lag import percentile_from_cdf
from rumordb.sim.timeline import Span, fault_spans

SMOOTH_S = 1.0
RAW_ALPHA = 0.25
SPAN_ALPHA = 0.12
DPI = 110

# One colour per meaning; within one figure no two meanings share a colour.
COLOURS = {
    "mean over keys": "tab:blue",
    "worst key": "tab:purple",
    "nodes current": "teal",
    "delivered": "tab:blue",
    "lost on a link": "tab:purple",
    "blocked": "tab:brown",
    "KiB sent": "tab:cyan",
    "writes": "tab:gray",
    "partition": "tab:red",
    "down": "tab:orange",
    "link": "tab:pink",
    "clock": "tab:olive",
    "faults cleared": "tab:green",
    "converged": "black",
}
SPAN_LABELS = {"partition": "partition in force", "down": "a node down", "link": "link degraded"}


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Centred mean over ``window`` samples (shorter at the edges): no shift in time."""
    if window <= 1 or not values:
        return [float(v) for v in values]
    prefix = [0.0]
    for value in values:
        prefix.append(prefix[-1] + value)
    half, n = window // 2, len(values)
    found = []
    for i in range(n):
        lo, hi = max(0, i - half), min(n, i - half + window)
        found.append((prefix[hi] - prefix[lo]) / (hi - lo))
    return found


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def convergence_figure(metrics: dict[str, Any]) -> Figure:
    series = metrics["series"]
    fig, ax = plt.subplots(figsize=(10, 4.8))
    t = series["t_s"]
    for name, key, width in (
        ("mean over keys", "mean_fraction", 1.6),
        ("worst key", "min_fraction", 1.0),
        ("nodes current", "nodes_current", 1.0),
    ):
        label = "nodes current on every key" if name == "nodes current" else name
        ax.plot(t, series[key], color=COLOURS[name], linewidth=width, label=label)
    _timeline(ax, metrics)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("fraction of nodes holding the latest version")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(_title(metrics))
    ax.grid(alpha=0.3)
    _legend(fig, ax)
    return fig


def traffic_figure(metrics: dict[str, Any]) -> Figure:
    series = metrics["series"]
    interval_s = metrics["scenario"]["sample_interval_ms"] / 1000
    window = max(1, round(SMOOTH_S / interval_s))
    t = series["t_s"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.4), sharex=True)
    lost = series.get("lost", [0] * len(t))
    blocked = series.get("blocked", [0] * len(t))
    delivered = [m - a - b for m, a, b in zip(series["messages"], lost, blocked, strict=True)]
    per_s = interval_s or 1.0
    for name, counts in (("delivered", delivered), ("lost on a link", lost), ("blocked", blocked)):
        label = "blocked (partition or down node)" if name == "blocked" else name
        _smoothed(top, t, [c / per_s for c in counts], window, COLOURS[name], label)
    top.set_ylabel("messages per second")
    top.set_title(
        f"traffic: {metrics['messages_sent']} messages, {metrics['bytes_sent']} bytes "
        f"(moving average over {SMOOTH_S:g} s, raw per {interval_s * 1000:g} ms faint)"
    )
    kib = [b / per_s / 1024 for b in series["bytes"]]
    _smoothed(bottom, t, kib, window, COLOURS["KiB sent"], "KiB sent per second")
    bottom.set_ylabel("KiB per second")
    bottom.set_xlabel("simulated time (s)")
    for ax in (top, bottom):
        _timeline(ax, metrics)
        ax.grid(alpha=0.3)
        _legend(fig, ax)
    return fig


def lag_figure(metrics: dict[str, Any]) -> Figure:
    """The CDF of replication lag (write -> held by every counted node), p50/p90/p99."""
    points = metrics.get("lag_cdf_s") or []
    fig, ax = plt.subplots(figsize=(8, 4.4))
    if points:
        lags_ms = [lag * 1000 for _, lag in points]
        ax.step(lags_ms, [q for q, _ in points], where="post", color="tab:blue", label="lag CDF")
        marks = (("p50", 0.5, "tab:green"), ("p90", 0.9, "tab:orange"), ("p99", 0.99, "tab:red"))
        for name, q, colour in marks:
            lag = percentile_from_cdf(points, q)
            if lag is not None:
                label = f"{name} = {lag * 1000:.1f} ms"
                ax.axvline(lag * 1000, color=colour, linestyle="--", linewidth=1, label=label)
        if 0 < lags_ms[0] < lags_ms[-1] / 20:
            ax.set_xscale("log")  # lags spread over decades: the body and the tail both legible
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no version reached every node", ha="center", transform=ax.transAxes)
    count = metrics["dissemination_s"]["count"]
    ax.set_title(f"replication lag: write -> held by every counted node ({count} versions)")
    ax.set_xlabel("lag (ms)")
    ax.set_ylabel("fraction of versions")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def _smoothed(
    ax: Axes, t: Sequence[float], values: Sequence[float], window: int, colour: str, label: str
) -> None:
    if window > 1:
        ax.plot(t, values, color=colour, alpha=RAW_ALPHA, linewidth=0.8, label=f"{label} (raw)")
    ax.plot(t, moving_average(values, window), color=colour, linewidth=1.6, label=label)


def _timeline(ax: Axes, metrics: dict[str, Any]) -> None:
    """Writes, fault spans, clock changes, the last fault clearing and convergence."""
    scenario = metrics["scenario"]
    for start, stop in _write_spans(scenario):
        ax.axvspan(start, stop, color=COLOURS["writes"], alpha=0.08, label="client writes")
    for kind, start, end in _merged(fault_spans(metrics.get("events", []), scenario)):
        stop = end if end is not None else metrics["end_s"]
        ax.axvspan(start, stop, color=COLOURS[kind], alpha=SPAN_ALPHA, label=SPAN_LABELS[kind])
    for event in metrics.get("events", []):
        if event["action"] == "clock":
            ax.axvline(event["at_s"], color=COLOURS["clock"], linestyle=":", label="clock change")
    cleared = metrics.get("faults_cleared_s")
    if cleared is not None:
        ax.axvline(cleared, color=COLOURS["faults cleared"], linestyle="--", label="faults cleared")
    if metrics.get("converged_at_s") is not None:
        ax.axvline(metrics["converged_at_s"], color=COLOURS["converged"], label="converged")


def _merged(spans: Sequence[Span]) -> list[tuple[str, float, float | None]]:
    """Overlapping spans of one kind drawn once (five nodes down is one shaded stretch)."""
    found: list[tuple[str, float, float | None]] = []
    for kind in ("partition", "down", "link"):
        current: list[Any] | None = None
        for span in sorted((s for s in spans if s.kind == kind), key=lambda s: s.start_s):
            if current is not None and (current[2] is None or span.start_s <= current[2]):
                current[2] = None if span.end_s is None else max(current[2], span.end_s)
                continue
            if current is not None:
                found.append((current[0], current[1], current[2]))
            current = [kind, span.start_s, span.end_s]
        if current is not None:
            found.append((current[0], current[1], current[2]))
    return found


def _write_spans(scenario: dict[str, Any]) -> list[tuple[float, float]]:
    workload = scenario.get("workload", {})
    duration = scenario["duration_s"]
    phases = workload.get("phases") or []
    if phases:
        return [(p["start_s"], duration if p["stop_s"] is None else p["stop_s"]) for p in phases]
    if workload.get("writes_per_s", 0) <= 0:
        return []
    stop = workload.get("stop_s")
    return [(workload.get("start_s", 0), duration if stop is None else stop)]


def _legend(fig: Figure, ax: Axes) -> None:
    """One entry per label (repeated spans share one), outside the plot on the right."""
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(
        unique.values(),
        unique.keys(),
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        fontsize=7,
        borderaxespad=0,
    )
    fig.tight_layout()


def _title(metrics: dict[str, Any]) -> str:
    name = metrics.get("name") or "scenario"
    return f"{name}: {metrics['nodes']} nodes, seed {metrics['seed']}"


def distinct_colours(n: int) -> list[Any]:
    """``n`` colours no two alike (tab10, then tab20, then evenly over a colormap)."""
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    if n <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(n)]
    cmap = plt.get_cmap("turbo")
    return [cmap(i / (n - 1)) for i in range(n)]


def sweep_figure(
    rows: list[dict[str, Any]], param: str, series_by: list[str], metric: str
) -> Figure:
    """``metric`` (mean, with min-max bars over seeds) against ``param``; a line per group."""
    groups: dict[tuple[Any, ...], dict[Any, list[float]]] = {}
    for row in rows:
        value = row["metrics"].get(metric)
        if value is None:
            continue
        group = tuple(row["params"][p] for p in series_by)
        groups.setdefault(group, {}).setdefault(row["params"][param], []).append(float(value))
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for colour, (group, points) in zip(distinct_colours(len(groups)), groups.items(), strict=True):
        xs = sorted(points)
        means = [sum(points[x]) / len(points[x]) for x in xs]
        low = [m - min(points[x]) for x, m in zip(xs, means, strict=True)]
        high = [max(points[x]) - m for x, m in zip(xs, means, strict=True)]
        label = ", ".join(f"{p}={v}" for p, v in zip(series_by, group, strict=True)) or metric
        ax.errorbar(xs, means, yerr=[low, high], marker="o", capsize=3, label=label, color=colour)
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {param} (mean over seeds, bars: min-max)")
    ax.grid(alpha=0.3)
    if groups:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def sweep_lag_figure(rows: list[dict[str, Any]], names: list[str]) -> Figure:
    """One lag CDF per grid point: each quantile averaged over the point's seeds."""
    curves: dict[tuple[Any, ...], list[list[list[float]]]] = {}
    for row in rows:
        if row.get("lag_cdf_s"):
            key = tuple(row["params"][n] for n in names)
            curves.setdefault(key, []).append(row["lag_cdf_s"])
    fig, ax = plt.subplots(figsize=(8, 4.4))
    low, high = float("inf"), 0.0
    for colour, (key, runs) in zip(distinct_colours(len(curves)), curves.items(), strict=True):
        qs = [q for q, _ in runs[0]]
        lags = [sum(run[i][1] for run in runs) / len(runs) * 1000 for i in range(len(qs))]
        label = ", ".join(f"{n}={v}" for n, v in zip(names, key, strict=True))
        ax.step(lags, qs, where="post", color=colour, label=f"{label} ({len(runs)} seeds)")
        low, high = min(low, lags[0]), max(high, lags[-1])
    if 0 < low < high / 20:
        ax.set_xscale("log")  # lags spread over decades: the body and the tail both legible
    ax.set_xlabel("lag (ms): write -> held by every counted node")
    ax.set_ylabel("fraction of versions")
    ax.set_title("replication lag CDF per point (quantiles averaged over seeds)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3, which="both")
    if curves:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
