"""The bounded-growth report: tables over time and one figure, from the bench's JSON files.

``write_report(out_dir, command, commit)`` reads ``live_forget.json``, ``live_reap.json``,
``sim_forget.json`` and ``sim_reap.json`` (those that exist, written by
``bench.growth_bench``) and writes ``report.md`` and ``growth.png`` beside them. Times are
seconds since the node died (the kill -9; the crash fault in the simulator). The figure
keeps ``sim.plots``' rules: one colour per run in both panels, every line and span in
the legend, the constant delete load drawn as the span it was in force.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use: the backend is chosen first
from matplotlib.ticker import FuncFormatter

from rumordb.sim.plots import DPI, SPAN_ALPHA, save

RUNS = ("live_forget", "live_reap", "sim_forget", "sim_reap")
COLOURS = {  # one per run; the span and event colours are not reused
    "live_forget": "tab:blue",
    "live_reap": "tab:purple",
    "sim_forget": "tab:cyan",
    "sim_reap": "tab:pink",
}
LOAD_COLOUR = "tab:gray"
WINDOW_S = 10.0
MIB = 1024 * 1024


def load_runs(out_dir: Path) -> dict[str, dict[str, Any]]:
    runs = {}
    for name in RUNS:
        path = out_dir / f"{name}.json"
        if path.exists():
            runs[name] = json.loads(path.read_text())
    return runs


def _phase(run: dict[str, Any], t: float) -> str:
    ev = run["events_s"]
    if t < 0:
        return "all up, keys written"
    if "churn_start" in ev and ev["churn_start"] <= t <= ev.get("churn_end", 1e9):
        return f"{run.get('churn_rate', 100):.0f} deletes/s"
    if "churn_end" in ev and t > ev["churn_end"]:
        return "load over"
    forgotten = ev.get("forgotten")
    if forgotten is not None and t >= forgotten:
        return "after forget"
    purged = ev.get("purged")
    if run["variant"] == "reap" and purged is not None and t >= purged - 5:
        return "reaped, purging"
    if t >= ev.get("deleted", 1e9):
        return "dead member remembered"
    return "member dead"


def live_table(run: dict[str, Any]) -> list[str]:
    lines = [
        "| t (s) | phase | tombstones (min-max over survivors) | rows (max) "
        "| SQLite file MiB (max) | WAL MiB (max) | free MiB (max) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for lo, samples in _windows(run["samples"]):
        tomb = [s["tombstones"] for s in samples]
        lines.append(
            f"| {lo:.0f} | {_phase(run, lo)} | {min(tomb)}-{max(tomb)} "
            f"| {max(s['rows'] for s in samples)} "
            f"| {max(s['db_bytes'] for s in samples) / MIB:.2f} "
            f"| {max(s['wal_bytes'] for s in samples) / MIB:.2f} "
            f"| {max(s['free_bytes'] for s in samples) / MIB:.2f} |"
        )
    return lines


def sim_table(run: dict[str, Any]) -> list[str]:
    lines = [
        "| t (s) | phase | tombstones (min-max over survivors) | disk rows (max) |",
        "|---:|---|---:|---:|",
    ]
    for lo, samples in _windows(run["samples"]):
        lo_t = min(s["tombstones_min"] for s in samples)
        hi_t = max(s["tombstones_max"] for s in samples)
        rows = max(s["rows_max"] for s in samples)
        lines.append(f"| {lo:.0f} | {_phase(run, lo)} | {lo_t}-{hi_t} | {rows} |")
    return lines


def _windows(samples: list[dict[str, Any]]) -> list[tuple[float, list[dict[str, Any]]]]:
    """Samples grouped by ``WINDOW_S`` windows of time since the death, in order."""
    found: dict[float, list[dict[str, Any]]] = {}
    for s in samples:
        lo = (s["t_s"] // WINDOW_S) * WINDOW_S
        found.setdefault(lo, []).append(s)
    return sorted(found.items())


def _series(run: dict[str, Any], field: str) -> tuple[list[float], list[float]]:
    """Time and the largest value over survivors at each sample instant (live: per round)."""
    if run["mode"] == "sim":
        name = {"tombstones": "tombstones_max", "rows": "rows_max"}[field]
        return [s["t_s"] for s in run["samples"]], [s[name] for s in run["samples"]]
    rounds: dict[float, float] = {}
    for s in run["samples"]:
        instant = round(s["t_s"])  # a sampling round reads every node within ~0.1 s
        value = s["db_bytes"] + s["wal_bytes"] if field == "bytes" else s[field]
        rounds[instant] = max(rounds.get(instant, 0.0), float(value))
    times = sorted(rounds)
    return times, [rounds[t] for t in times]


def figure(runs: dict[str, dict[str, Any]], path: Path) -> Path:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7.5), sharex=True)
    for name, run in runs.items():
        colour, label = COLOURS[name], name.replace("_", ", ")
        top.plot(*_series(run, "tombstones"), color=colour, lw=1.4, label=label)
        forgotten = run["events_s"].get("forgotten")
        if forgotten is not None:
            top.axvline(forgotten, color=colour, ls=":", lw=1.0, label=f"{label}: forget")
        if run["mode"] == "live":
            bottom.plot(*_series(run, "bytes"), color=colour, lw=1.4, label=f"{label}: file + WAL")
    spans = [r["events_s"] for r in runs.values() if "churn_start" in r["events_s"]]
    if spans:
        lo = min(e["churn_start"] for e in spans)
        hi = max(e.get("churn_end", e["churn_start"]) for e in spans)
        for ax in (top, bottom):
            ax.axvspan(lo, hi, color=LOAD_COLOUR, alpha=SPAN_ALPHA, label="100 deletes/s")
    top.set_ylabel("tombstones (most on a survivor)")
    top.set_title("A member dead for good, 10 000 keys deleted: tombstones and database size")
    bottom.set_ylabel("SQLite file + WAL (MiB, live)")
    bottom.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / MIB:.0f}"))
    bottom.set_xlabel("seconds since the node died")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.set_dpi(DPI)
    return save(fig, path)


def write_report(out_dir: Path, command: str, commit: str) -> Path:
    runs = load_runs(out_dir)
    if not runs:
        raise SystemExit(f"no results in {out_dir}: run `python -m bench.growth_bench all`")
    figure(runs, out_dir / "growth.png")
    lines = [
        "# Bounded growth: a member dead for good, 10 000 deletes (issue 15)",
        "",
        f"Made by `{command}` at commit {commit}, on a {os.cpu_count()}-CPU machine shared "
        "with other work (the load average of each run is listed). Times are seconds "
        "since the node died (kill -9 live, a crash fault in the simulator); each row is "
        f"a {WINDOW_S:.0f} s window starting there. Do not edit by hand: rerun the bench.",
        "",
        "![tombstones and database size over time](growth.png)",
        "",
    ]
    for name, run in runs.items():
        lines += _section(name, run)
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _section(name: str, run: dict[str, Any]) -> list[str]:
    ev = run["events_s"]
    how = (
        f"reaped after `--reap-dead-after-s {run['reap_after_s']:.0f}`"
        if run["variant"] == "reap"
        else "`rumor cluster forget`"
    )
    head = [f"## {name.replace('_', ', ')}", ""]
    load = ", ".join(f"{v:.1f}" for v in run["load"])
    facts = f"{run['nodes']} nodes, {run['keys']} keys; the dead member {how}; "
    facts += f"wall time {run['wall_s']} s; load average after the run {load}."
    events = ", ".join(f"{k} {v:.1f}" for k, v in ev.items())
    head += [facts, "", f"Events (s since the death): {events}.", ""]
    if run["mode"] == "live":
        head += [f"Rows left in each survivor's SQLite file at the end: {run['file_rows']}.", ""]
        return [*head, *live_table(run), ""]
    head += [f"Scenario `{run['scenario']}`, trace {run['trace_hash']}.", ""]
    return [*head, *sim_table(run), ""]
