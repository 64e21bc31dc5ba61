"""Reports: ``metrics.json``, PNG plots (``sim.plots``) and a ``report.md``.

A run report shows the convergence curves (fraction of nodes holding the latest version
of each key, over time) with the fault spans drawn on them, the traffic (delivered apart
from lost and blocked), and the CDF of replication lag; its table leads with the outcome,
heal -> converged and the lag percentiles. The Markdown embeds the PNGs by relative path,
so a report directory can be moved or committed as a whole.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rumordb.sim.plots import convergence_figure, lag_figure, save, traffic_figure


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_run_report(metrics: dict[str, Any], out_dir: Path, command: str = "") -> list[Path]:
    """Write metrics.json, convergence.png, traffic.png, lag.png and report.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "metrics.json", metrics)
    written = [out_dir / "metrics.json"]
    written.append(save(convergence_figure(metrics), out_dir / "convergence.png"))
    written.append(save(traffic_figure(metrics), out_dir / "traffic.png"))
    written.append(save(lag_figure(metrics), out_dir / "lag.png"))
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


def run_markdown(metrics: dict[str, Any], images: Sequence[str], command: str) -> str:
    s = metrics["scenario"]
    d = metrics["dissemination_s"]
    w = metrics["writes"]
    rows = [
        ("outcome", verdict(metrics)),
        ("heal -> converged (from the last fault clearing)", _heal(metrics)),
        ("lag p50 / p90 / p99 / max (s)", _lag(d)),
        ("nodes (up at the end)", f"{metrics['nodes']} ({metrics['nodes_up']})"),
        ("keys written", metrics["keys"]),
        ("divergent keys (sample)", f"{metrics['divergent_keys']} {metrics['divergent_sample']}"),
        ("client writes (deletes)", f"{w['writes']} ({w['deletes']})"),
        ("messages sent", metrics["messages_sent"]),
        ("bytes sent", metrics["bytes_sent"]),
        ("LWW inversions (write lost to an earlier concurrent one)", metrics["lww_inversions"]),
        ("causal writes lost (must be 0)", metrics["causal_writes_lost"]),
        ("stale reads", _stale(metrics)),
        ("trace hash", f"`{metrics['trace_hash']}`"),
    ]
    if "posts" in metrics:  # [network] posts: the live send path, from calibrated constants
        rows += _posts_rows(metrics)
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
    "from which every counted node held the latest version of every key; heal -> converged "
    "runs to that moment from the instant the last fault cleared (heal, restart, link "
    "restored). Lag is, per version that reached every counted node before being "
    "overwritten, the time from its write to that moment (percentiles: nearest rank). "
    "Traffic: delivered = sent - lost on a link - blocked (by a partition, or arriving at a "
    "down node)."
)


def _posts_rows(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    posts, calibration = metrics["posts"], metrics["calibration"]
    constants = ", ".join(f"{k} = {v}" for k, v in calibration["constants"].items())
    machine = calibration["machine"]
    return [
        ("posts (messages in them, sealed bytes)",
         f"{posts['posts']} ({posts['messages']}, {posts['sealed_bytes']})"),
        ("send-path constants", f"{constants} (`{calibration['source']}`)"),
        ("measured on", f"{machine.get('cpu')}, {machine.get('cores')} cores, "
         f"python {machine.get('python')}, {machine.get('measured_at')}"),
    ]  # fmt: skip


def _fault_text(fault: dict[str, Any]) -> str:
    details = {
        k: v
        for k, v in fault.items()
        if k not in ("at_s", "action") and v is not None and not (k == "state" and v == "keep")
    }
    extra = ", ".join(f"{k}={v}" for k, v in details.items())
    return f"- t = {fault['at_s']} s: **{fault['action']}** {extra}".rstrip()


def _lag(d: dict[str, Any]) -> str:
    if not d["count"]:
        return "n/a (no version reached every counted node)"
    p99 = d.get("p99")
    parts = [d["p50"], d["p90"], p99, d["max"]]
    text = " / ".join("n/a" if v is None else f"{v:.3f}" for v in parts)
    return f"{text} ({d['count']} versions)"


def _heal(metrics: dict[str, Any]) -> str:
    heal = metrics.get("heal_to_converged_s")
    cleared = metrics.get("faults_cleared_s")
    if heal is not None:
        return f"{heal:.3f} s (last fault cleared at t = {cleared:.3f} s)"
    if cleared is not None:
        return f"not converged (last fault cleared at t = {cleared:.3f} s)"
    if metrics.get("scenario", {}).get("faults") or metrics.get("events"):
        return "n/a: a fault was still in force at the end"
    return "n/a: no faults"


def _stale(metrics: dict[str, Any]) -> str:
    w = metrics["writes"]
    if not w["reads"]:
        return "no reads"
    return f"{w['stale_reads']} of {w['reads']} ({metrics['stale_read_fraction']:.1%})"
