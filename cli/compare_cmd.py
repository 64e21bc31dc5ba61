"""``rumor sim compare``: one scenario in the simulator and on a live local cluster.

The simulator runs with the live send path modelled (``[network] posts = true``, the
calibration given or the committed default) and the live driver's observing modelled
(``observer_sample_ms``: its watch streams and ``/metrics`` samples, on the machine's
shared cores); the live side is ``cli.compare_live``.
Both are reduced to ``sim.compare.FIGURES`` and written by ``sim.compare_report``.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from rumordb.sim.scenario import Scenario, ScenarioError, load_scenario, to_dict

# What the simulator models and what it does not, per figure: said in the report when a
# ratio is outside the band, with the measured gaps (``facts``) in the same sentence.
CAUSES = {
    "lag": "the simulator models linger, link, each node's event loop as one server (the "
    "calibrated receive per post, message, version and membership entry, send and "
    "client-write service times, each times a draw of the calibrated spread; sync "
    "commits), the observer's watch lines and /metrics samples, each node's work at rest, "
    "all on the machine's shared cores, and the wake-up lateness measured when "
    "calibrating; not modelled: preemption (a loaded scheduler slices a core between "
    "runnable processes, the model runs each job to its end), garbage collections and the "
    "storage thread's share of the interpreter lock, and load on the machine beyond the "
    "calibrated wake-ups; the live lag ends when the last node applied the version (its "
    "watch events' applied_us), so the streams' delivery to the driver is no part of it",
    "heal_to_identical_s": "after a heal both sides wait for anti-entropy rounds, but live "
    "timers fire late on a starved CPU; a restart clears on both sides when the new "
    "process serves (the simulator's after the calibrated start-up)",
    "messages": "live timers (gossip rounds, heartbeats) fire late under CPU load, so fewer "
    "rounds happen in the same seconds",
    "bytes_per_message": "live messages carry what the simulator's do not (refutations, "
    "discovery-learned entries) and live posts gather differently under load",
    "bytes": "live messages carry what the simulator's do not (refutations, discovery-"
    "learned entries, piggybacked membership of members the simulator prunes sooner), and "
    "the message counts differ (see messages)",
    "membership": "transitions follow from probe and heartbeat timing: live heartbeats "
    "compete for CPU (late ones turn into suspicions), the simulator's never do",
}
LAG_TIMED = ("lag", "heal_to_identical_s", "messages")  # figures that starved CPU moves


@click.command("compare")
@click.argument("scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Report directory (compare.json, report.md, plots).")  # fmt: skip
@click.option("--seeds", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Simulator runs (seeds seed..seed+N-1).")  # fmt: skip
@click.option("--runs", type=click.IntRange(1, 20), default=1, show_default=True,
              help="Live runs, each on a fresh cluster.")  # fmt: skip
@click.option("--durability", type=click.Choice(["batch", "sync", "memory"]), default="batch",
              show_default=True,
              help="The live nodes' durability (the simulator's too: sync waits for commits).")  # fmt: skip
@click.option("--calibration", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Send-path constants (default: the scenario's, else sim/calibration.toml).")  # fmt: skip
@click.option("--loop-monitor-ms", type=click.IntRange(0, 10_000), default=0, show_default=True,
              help="Live nodes log loop turns of this much CPU (their --loop-monitor-ms); "
              "the report counts them (0: off).")  # fmt: skip
def compare_cmd(
    scenario: Path,
    out: Path,
    seeds: int,
    runs: int,
    durability: str,
    calibration: Path | None,
    loop_monitor_ms: int,
) -> None:
    """Run SCENARIO in the simulator and on a live loopback cluster; compare the figures."""
    from rumordb.cli.compare_live import SAMPLE_S

    # The simulator's observer costs what the live driver's watch streams and samples do.
    overrides: dict[str, Any] = {
        "network.posts": True,
        "network.durability": durability,
        "network.observer_sample_ms": round(SAMPLE_S * 1000),
        "network.one_machine": True,  # the live nodes and the driver share this machine
    }
    if calibration is not None:
        overrides["network.calibration"] = str(calibration.resolve())
    try:
        spec = load_scenario(scenario, overrides)
    except ScenarioError as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(2) from None
    _check_live(spec)
    sim_runs, sim_metrics = _simulate(scenario, overrides, spec.seed, seeds)
    live_runs = [_live(spec, i, durability, loop_monitor_ms) for i in range(runs)]
    result = _result(spec, sim_runs, sim_metrics, live_runs)
    result["live"]["durability"] = durability
    result["live"]["loop_monitor_ms"] = loop_monitor_ms
    result["facts"] = facts_of(result)
    result["explanations"] = explanations(result["rows"], result["facts"])
    from rumordb.sim.compare_report import write_compare_report

    write_compare_report(result, out)
    for row in result["rows"]:
        ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}"
        verdict = "ok" if row["in_band"] else "OUT" if row["applies"] else "n/a"
        click.echo(f"{row['figure']:>20}  live/sim {ratio:>6}  {verdict}")
    click.echo(f"report: {out / 'report.md'}")


def _check_live(spec: Scenario) -> None:
    """Refuse what the live side cannot apply, before anything runs."""
    for fault in spec.faults:
        if fault.action not in ("partition", "heal", "crash", "restart", "link"):
            raise click.UsageError(f"compare cannot apply a {fault.action!r} fault live")
        if fault.action == "link" and fault.links is not None:
            raise click.UsageError("compare: live link faults change every link (no `links`)")
        if fault.action == "crash" and fault.state != "lose":
            raise click.UsageError('compare: a live crash loses memory (state = "lose")')
    if spec.churn.interval_s > 0 or spec.cluster.membership == "static":
        raise click.UsageError("compare: no churn and no static membership (live has neither)")


def _simulate(
    path: Path, overrides: dict[str, Any], seed: int, seeds: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from rumordb.sim.compare import sim_figures
    from rumordb.sim.engine import Simulation

    found: list[dict[str, Any]] = []
    first: dict[str, Any] = {}
    for i in range(seeds):
        metrics = Simulation(load_scenario(path, dict(overrides), seed + i)).run()
        found.append(
            {"seed": seed + i, "trace_hash": metrics["trace_hash"], **sim_figures(metrics)}
        )
        first = first or metrics
    return found, first


def _live(spec: Scenario, index: int, durability: str, loop_monitor_ms: int) -> dict[str, Any]:
    from rumordb.cli.compare_live import run_live
    from rumordb.sim.compare import live_figures

    with tempfile.TemporaryDirectory(prefix=f"rumor-compare-{index}-") as root:
        observed = run_live(spec, Path(root), durability, loop_monitor_ms)
    raw = dataclasses.asdict(observed)
    # asdict rebuilds a Counter from (key, count) pairs, counting the pairs: take dicts.
    raw["transitions"], raw["failures"] = dict(observed.transitions), dict(observed.failures)
    figures = live_figures(raw, to_dict(spec))
    return {"run": index, "events": observed.events, **figures}


def _result(
    spec: Scenario,
    sim_runs: list[dict[str, Any]],
    sim_metrics: dict[str, Any],
    live_runs: list[dict[str, Any]],
) -> dict[str, Any]:
    from rumordb.live.calibrate import machine
    from rumordb.sim.compare import compare

    rows = compare(live_runs, sim_runs)
    found_machine = machine()
    return {
        "command": "rumor " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["sim"] else "",
        "scenario": to_dict(spec),
        "machine": _machine_text(found_machine),
        "load_per_core": found_machine["load_1m"] / max(1, found_machine["cores"]),
        "calibration": sim_metrics["calibration"],
        "rows": rows,
        "explanations": [],
        "sim": {
            "seeds": [r["seed"] for r in sim_runs],
            "node_cpu_s": _mean([r.get("node_cpu_s") for r in sim_runs]),
            "driver_cpu_s": _mean([r.get("driver_cpu_s") for r in sim_runs]),
            "longest_job_s": max((r.get("longest_job_s") or 0.0 for r in sim_runs), default=0.0),
            "runs": sim_runs,
            "events": sim_metrics["events"],
        },
        "live": {
            "runs": live_runs,
            "fault_lateness_s": max((r["fault_lateness_s"] for r in live_runs), default=0.0),
            **{
                name: max((r.get(name) or 0.0 for r in live_runs), default=0.0)
                for name in ("loop_busy_max_cpu_ms", "loop_busy_max_wall_ms")
            },
            "ack_rtt_p50_s": _mean([r["ack_rtt_p50_s"] for r in live_runs]),
            **{
                name: _mean([r.get(name) for r in live_runs])
                for name in (
                    "watch_delivery_p50_s",
                    "watch_delivery_p99_s",
                    "node_cpu_s",
                    "driver_cpu_s",
                    "loop_busy_turns",
                )
            },
        },
    }


def _mean(values: list[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return sum(found) / len(found) if found else None


def _machine_text(found: dict[str, Any]) -> str:
    return (
        f"{found['cpu']}, {found['cores']} cores, load {found['load_1m']} (1 min), "
        f"python {found['python']}, {found['platform']}"
    )


def explanations(rows: list[dict[str, Any]], facts: dict[str, str] | None = None) -> list[str]:
    """One sentence per figure outside the band: by how much, what the model has and has
    not, and the measured ``facts`` that bear on it (``facts_of``)."""
    facts = facts or {}
    found = []
    for row in rows:
        if row["in_band"] or not row["applies"]:
            continue
        name = row["figure"]
        kind = "lag" if name.startswith("lag") else name
        membership = name in ("suspect", "dead", "alive")
        cause = CAUSES.get(kind, CAUSES["membership"] if membership else "")
        extra = [facts[k] for k in _facts_for(kind, membership) if facts.get(k)]
        spread = _within_seeds(row)
        said = "; ".join([cause, *extra, *([spread] if spread else [])])
        if row["ratio"] is None:
            found.append(f"`{name}`: no ratio (one side has no value or zero); {said}")
            continue
        how = "higher" if row["ratio"] > 1 else "lower"
        percent = abs(row["ratio"] - 1) * 100
        found.append(f"`{name}`: live is {percent:.0f}% {how} (ratio {row['ratio']:.2f}); {said}")
    return found


def _facts_for(kind: str, membership: bool) -> tuple[str, ...]:
    if membership:
        return ("silence", "load")
    if kind in LAG_TIMED:
        return ("cpu", "load", "restart") if kind != "lag" else ("cpu", "load", "stalls")
    return ()


def _within_seeds(row: dict[str, Any]) -> str:
    """Whether the live mean lies within the simulator's runs (their spread, not a bias)."""
    live, sim = row["live"], row["sim"]
    if live["mean"] is None or sim["min"] is None or sim["n"] < 2:
        return ""
    if sim["min"] <= live["mean"] <= sim["max"]:
        return (
            f"the live mean is within the simulator's {sim['n']} seeds "
            f"({_num(sim['min'])}-{_num(sim['max'])}): the seeds disagree as much as the sides"
        )
    return ""


def _num(value: float) -> str:
    return f"{value:.3g}"


def facts_of(result: dict[str, Any]) -> dict[str, str]:
    """Measured gaps that explain figures out of band, from the result's own figures."""
    live, sim = result["live"], result["sim"]
    found: dict[str, str] = {}
    if live.get("node_cpu_s") and sim.get("node_cpu_s"):
        found["cpu"] = (
            f"live nodes used {live['node_cpu_s'] / sim['node_cpu_s']:.2f}x the CPU the model "
            f"charged their loops ({live['node_cpu_s']:.2f} against {sim['node_cpu_s']:.2f} s)"
        )
        if live.get("driver_cpu_s") and sim.get("driver_cpu_s"):
            found["cpu"] += (
                f", the live driver {live['driver_cpu_s'] / sim['driver_cpu_s']:.2f}x what its "
                f"model (the observer) was charged"
            )
    load, calibrated = result.get("load_per_core"), result["calibration"]["machine"]
    cores = calibrated.get("cores") or 1
    if load is not None and "load_1m" in calibrated:
        found["load"] = (
            f"the machine's load was {load:.1f} per core (at calibration "
            f"{calibrated['load_1m'] / cores:.1f}): the wake-ups drawn are the calibration's"
        )
    found.update(_restart_fact(result))
    found.update(_stalls_fact(result))
    found.update(_silence_fact(result["scenario"], result["sim"]["events"]))
    return found


def _restart_fact(result: dict[str, Any]) -> dict[str, str]:
    startup_ms = result["calibration"]["constants"].get("startup_ms") or 0.0
    restarts = [f for f in result["scenario"].get("faults") or [] if f["action"] == "restart"]
    if not restarts:
        return {}
    late_s = result["live"]["fault_lateness_s"]
    return {
        "restart": f"a live restart served {late_s:.2f} s after its instant at the latest; the "
        f"model's start-up is {startup_ms / 1000:.2f} s"
    }


def _stalls_fact(result: dict[str, Any]) -> dict[str, str]:
    """The live loops' busy turns (with a loop monitor) against the model's longest job."""
    live, threshold = result["live"], result["live"].get("loop_monitor_ms") or 0
    if not threshold:
        return {}
    longest_ms = (result["sim"].get("longest_job_s") or 0.0) * 1000
    return {
        "stalls": f"live loops logged {live.get('loop_busy_turns') or 0:.0f} turns of "
        f"{threshold} ms CPU or more per run (longest {live['loop_busy_max_cpu_ms']:.1f} ms "
        f"CPU, {live['loop_busy_max_wall_ms']:.1f} ms wall); the model's longest job was "
        f"{longest_ms:.1f} ms"
    }


def _silence_fact(scenario: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, str]:
    """How long a member must be silent to be marked dead, against the faults' spans."""
    from rumordb.core.membership import suspicion_timeout_ms
    from rumordb.sim.timeline import fault_spans

    g, nodes = scenario["gossip"], scenario["cluster"]["nodes"]
    suspect_s = suspicion_timeout_ms(g["suspicion_mult"], nodes, g["probe_interval_ms"]) / 1000
    spans = [(span.end_s - span.start_s) for span in fault_spans(events, scenario) if span.end_s]
    if not spans:
        return {}
    return {
        "silence": f"a member is suspected after {suspect_s:.1f} s of silence and marked dead "
        f"{suspect_s:.1f} s later ({2 * suspect_s:.1f} s), and the faults lasted "
        f"{min(spans):.1f}-{max(spans):.1f} s: whether a member's last heartbeat reached a "
        f"peer early enough before a fault depends on the phases of the nodes' probe timers "
        f"({g['probe_interval_ms']} ms), which differ between runs"
    }
