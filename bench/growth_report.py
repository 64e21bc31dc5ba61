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
WINDOW_S = 5.0
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
    forgotten = ev.get("forget_sent", ev.get("forgotten"))
    if forgotten is not None and t >= forgotten:
        return "forget sent" if t < ev.get("purged", 1e9) else "after forget"
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
        value = s["db_bytes"] + s["wal_bytes"] if field == "bytes" else s[field]  # or one field
        rounds[instant] = max(rounds.get(instant, 0.0), float(value))
    times = sorted(rounds)
    return times, [rounds[t] for t in times]


def figure(runs: dict[str, dict[str, Any]], path: Path) -> Path:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7.5), sharex=True)
    for name, run in runs.items():
        colour, label = COLOURS[name], name.replace("_", ", ")
        top.plot(*_series(run, "tombstones"), color=colour, lw=1.4, label=label)
        forgotten = run["events_s"].get("forget_sent", run["events_s"].get("forgotten"))
        if forgotten is not None:
            top.axvline(forgotten, color=colour, ls=":", lw=1.0, label=f"{label}: forget")
        if run["mode"] == "live":
            bottom.plot(*_series(run, "bytes"), color=colour, lw=1.4, label=f"{label}: file + WAL")
            bottom.plot(*_series(run, "db_bytes"), color=colour, lw=1.0, ls="--",
                        label=f"{label}: file only")  # fmt: skip
    label = "100 deletes/s (each run's span)"
    for run in runs.values():
        ev = run["events_s"]
        if "churn_start" in ev:
            for ax in (top, bottom):
                ax.axvspan(ev["churn_start"], ev["churn_end"], color=LOAD_COLOUR,
                           alpha=SPAN_ALPHA / 2, label=label)  # fmt: skip
            label = "_nolegend_"
    top.set_ylabel("tombstones (most on a survivor)")
    top.set_title("A member dead for good, 10 000 keys deleted: tombstones and database size")
    bottom.set_ylabel("SQLite on disk (MiB, live; most on a survivor)")
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
    lines += [*summary_table(runs), "", COLUMNS, "", FINDINGS, ""]
    for name, run in runs.items():
        lines += _section(name, run)
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


COLUMNS = """Live columns, per 5 s window, the most on one survivor unless a range: *tombstones*
is `rumor_tombstones`; *rows* is `rumor_storage_rows`, the rows of the keyed records
table at its last count: the newest versions wait in the commit log until a compaction
folds them in (every 512 group commits or 4 096 keys, or after 1 s idle), so under load
it lags the tombstones. *SQLite file* and *WAL* are `rumor_storage_db_bytes` and
`rumor_storage_wal_bytes`; SQLite checkpoints the WAL at 1 000 pages and reuses it
without truncating below `journal_size_limit` (8 MiB), so it stays near its ~5 MiB
high-water mark. *free* is `rumor_storage_free_bytes`, free pages inside the file. The
simulator's disk is a dict per node: its rows, no bytes. Live and sim differ in timing
(the live nodes run on 2 shared CPUs; the forget command itself took several seconds
there), not in the rule: nothing purges while the dead member counts."""

FINDINGS = """Found and fixed on the way (each with a test that fails without the fix):

* Under a constant delete load the tombstone count grew without bound (sim: ~90 of every
  100 deletes per second stayed) even with every member alive: the maintenance window
  (`core/round_robin.py`) stopped at the end of the list, so on a list growing between
  intervals it only ever examined the newest tombstones. It now wraps within a window.
* A survivor kept tombstones in its SQLite file after purging them from memory (50 of
  the constant load's in the 3-node namespace test): a replicated write persisted
  "behind" (a task) could be queued after the tick's purge of the same key. `Storage.persist` now takes its place in the queue when
  called, not when first awaited.
* Purged rows only freed pages inside the file (reused, never returned): new data
  directories use `auto_vacuum=INCREMENTAL`, and the writer gives back free pages beyond
  25% of the file after a compaction; `journal_size_limit` truncates the WAL to 8 MiB
  after a checkpoint. The `purged` table (the purged-version memory, at most 100 000
  versions) stays: it is what refuses stale re-sends after a restart."""


def _zero_at(run: dict[str, Any]) -> float | None:
    """Seconds since the death when no survivor held a tombstone any more."""
    held = run["events_s"].get("held", 0.0)
    for t, value in zip(*_series(run, "tombstones"), strict=True):
        if t > held and value == 0:
            return t
    return None


def _under_load(run: dict[str, Any]) -> tuple[float, float] | None:
    ev = run["events_s"]
    if "churn_start" not in ev:
        return None
    values = [
        v
        for t, v in zip(*_series(run, "tombstones"), strict=True)
        if ev["churn_start"] + 5 <= t <= ev["churn_end"]
    ]
    return (sum(values) / len(values), max(values)) if values else None


def summary_table(runs: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| run | tombstones held while remembered | none left at (s) | "
        "under 100 deletes/s: mean / max | file + WAL peak / end (MiB) | rows at end |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, run in runs.items():
        times, values = _series(run, "tombstones")
        held = run["events_s"].get("held", 0.0)
        until = run["events_s"].get("forget_sent", run["events_s"].get("forgotten", 1e9))
        plateau = [v for t, v in zip(times, values, strict=True) if held <= t < until]
        zero = _zero_at(run)
        load = _under_load(run)
        size = "-"
        rows_end = str(run["samples"][-1].get("rows", run["samples"][-1].get("rows_max")))
        if run["mode"] == "live":
            sizes = _series(run, "bytes")[1]
            size = f"{max(sizes) / MIB:.1f} / {sizes[-1] / MIB:.1f}"
            rows_end = f"{rows_end} (files: {sorted(set(run['file_rows'].values()))})"
        lines.append(
            f"| {name.replace('_', ', ')} | {max(plateau, default=0):.0f} "
            f"| {'-' if zero is None else f'{zero:.1f}'} "
            f"| {'-' if load is None else f'{load[0]:.0f} / {load[1]:.0f}'} "
            f"| {size} | {rows_end} |"
        )
    return lines


def _section(name: str, run: dict[str, Any]) -> list[str]:
    ev = run["events_s"]
    how = (
        f"reaped {run['reap_after_s']:.0f} s after it was marked dead "
        "(`--reap-dead-after-s`; in the simulator `cluster.reap_dead_after_s`)"
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
