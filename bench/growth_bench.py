"""Bounded growth (issue 15), measured live and in the simulator; writes the experiment.

Live (root: network namespaces, ``tests.multihost``): 5 ``rumor node`` processes on a
private bridge with no default route; 10 000 keys written, h5 killed with SIGKILL for
good, the 10 000 keys deleted on the 4 survivors; tombstones held until ``rumor cluster
forget n5`` (variant *forget*) or until the survivors reap n5 after
``--reap-dead-after-s`` (variant *reap*); then a constant load of 100 deletes/s (each
key deleted 1 s after its put). A sampler reads every node's ``/cluster`` and
``/metrics`` once a second: tombstones, rows, the SQLite file and its WAL.

Sim: ``experiments/bounded_growth/scenario.toml`` (forget) and ``scenario_reap.toml``
(reap) through the real core on the simulator; tombstones and disk rows sampled.

    make bench-growth                       # both, then the report
    python -m bench.growth_bench live       # or: sim, report
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from rumordb.sim.engine import Simulation
from rumordb.sim.scenario import load_scenario
from tests.multihost.cluster import LabCluster
from tests.multihost.growth import GrowthPlan, GrowthResult, run_growth
from tests.multihost.netns import Lab, unavailable_reason

OUT = Path(__file__).resolve().parents[1] / "experiments" / "bounded_growth"
HOSTS = ["h1", "h2", "h3", "h4", "h5"]
KEYS = 10_000
REAP_AFTER_S = 30.0
CHURN_S = 60.0
CHURN_RATE = 100.0
SIM_VARIANTS = {"forget": "scenario.toml", "reap": "scenario_reap.toml"}
SIM_DEATH_S = 7.0  # the crash fault of both scenario files


def live(variant: str, workdir: Path) -> dict[str, Any]:
    reap = variant == "reap"
    with Lab() as lab:
        lab.up(len(HOSTS))
        extra = ["--reap-dead-after-s", str(REAP_AFTER_S)] if reap else []
        cluster = LabCluster(lab, workdir, extra_args=extra)
        cluster.start_all(HOSTS)
        plan = GrowthPlan(
            keys=KEYS,
            reap_after_s=REAP_AFTER_S if reap else None,
            hold_s=15.0,
            churn_s=CHURN_S,
            churn_rate=CHURN_RATE,
            timeout_s=180.0,
        )
        started = time.monotonic()
        result = run_growth(cluster, HOSTS, plan)
        wall_s = time.monotonic() - started
        cluster.stop_all()
    return _live_summary(variant, result, wall_s)


def _live_summary(variant: str, result: GrowthResult, wall_s: float) -> dict[str, Any]:
    origin = result.events["killed"]
    rows = []
    for s in result.samples:
        if s["node"] not in result.survivors:
            continue
        g = s["gauges"]
        rows.append(
            {
                "t_s": round(s["t"] - origin, 2),
                "node": s["node"],
                "tombstones": int(g["rumor_tombstones"]),
                "keys": int(g["rumor_keys"]),
                "rows": int(g["rumor_storage_rows"]),
                "db_bytes": int(g["rumor_storage_db_bytes"]),
                "wal_bytes": int(g["rumor_storage_wal_bytes"]),
                "free_bytes": int(g["rumor_storage_free_bytes"]),
            }
        )
    return {
        "mode": "live",
        "variant": variant,
        "keys": KEYS,
        "nodes": len(HOSTS),
        "reap_after_s": REAP_AFTER_S if variant == "reap" else None,
        "churn_rate": CHURN_RATE,
        "events_s": {name: round(t - origin, 2) for name, t in result.events.items()},
        "file_rows": result.file_rows,
        "samples": rows,
        "wall_s": round(wall_s, 1),
        "load": os.getloadavg(),
    }


def sim(variant: str) -> dict[str, Any]:
    scenario = load_scenario(OUT / SIM_VARIANTS[variant])
    started = time.monotonic()
    metrics = Simulation(scenario).run()
    series = metrics["series"]
    events = {"killed": 0.0}
    for fault in scenario.faults:
        if fault.action == "forget":
            events["forgotten"] = fault.at_s - SIM_DEATH_S
    phases = scenario.workload.phases
    events["deleted"] = phases[1].start_s - SIM_DEATH_S
    events["churn_start"] = phases[3].start_s - SIM_DEATH_S
    events["churn_end"] = (phases[3].stop_s or scenario.duration_s) - SIM_DEATH_S
    events.update(_sim_milestones(series, KEYS))
    samples = [
        {
            "t_s": round(t - SIM_DEATH_S, 2),
            "tombstones_min": lo,
            "tombstones_max": hi,
            "rows_max": rows,
        }
        for t, lo, hi, rows in zip(
            series["t_s"],
            series["tombstones_min"],
            series["tombstones_max"],
            series["disk_rows_max"],
            strict=True,
        )
    ]
    return {
        "mode": "sim",
        "variant": variant,
        "scenario": SIM_VARIANTS[variant],
        "keys": KEYS,
        "nodes": scenario.cluster.nodes,
        "reap_after_s": scenario.cluster.reap_dead_after_s or None,
        "events_s": events,
        "samples": samples,
        "trace_hash": metrics["trace_hash"],
        "converged": metrics["converged"],
        "wall_s": round(time.monotonic() - started, 1),
        "load": os.getloadavg(),
    }


def _sim_milestones(series: dict[str, list[Any]], keys: int) -> dict[str, float]:
    """When every survivor first held every tombstone, and when none held any after."""
    found: dict[str, float] = {}
    rows = zip(series["t_s"], series["tombstones_min"], series["tombstones_max"], strict=True)
    for t, lo, hi in rows:
        if "held" not in found and lo == keys:
            found["held"] = t - SIM_DEATH_S
        elif "held" in found and "purged" not in found and hi == 0:
            found["purged"] = t - SIM_DEATH_S
    return found


def _save(name: str, data: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT / name}.json ({data['wall_s']} s, load {data['load']})")


def main() -> None:
    top = argparse.ArgumentParser(prog="bench.growth_bench")
    top.add_argument("what", choices=("live", "sim", "report", "all"))
    top.add_argument("--variants", default="forget,reap")
    args = top.parse_args()
    variants = args.variants.split(",")
    if args.what in ("sim", "all"):
        for variant in variants:
            _save(f"sim_{variant}", sim(variant))
    if args.what in ("live", "all"):
        reason = unavailable_reason()
        if reason is not None:
            raise SystemExit(f"live: {reason}")
        for variant in variants:
            workdir = Path(tempfile.mkdtemp(prefix="rumor-growth-"))
            try:
                _save(f"live_{variant}", live(variant, workdir))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    if args.what in ("report", "all"):
        from bench.growth_report import write_report

        command = "make bench-growth (python -m bench.growth_bench all)"
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        print(write_report(OUT, command, commit))


if __name__ == "__main__":
    main()
