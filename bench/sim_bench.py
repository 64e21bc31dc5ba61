"""Simulator benchmark: N nodes (10 000 by default), one update, push gossip, fanout 3.

Targets (issue 17): 100 000 nodes in under 60 s of wall time and 1 GiB; 1 000 000 in
under 15 min and 8 GiB, with static (shared) membership so that N member tables are not
needed. Prints wall and CPU time, simulated messages per wall second and peak RSS;
asserts nothing (the figures go to the closing notes). Run with ``make bench-sim``
(10 000 and 100 000 nodes), ``make bench-sim-1m`` or
``python -m bench.sim_bench [--nodes N] [--seed S] [--every-tick]`` (``--every-tick``:
every node woken at every deadline, the same run as sleeping through idle ticks: the
figure to compare with).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from typing import Any

from rumordb.sim.engine import Simulation
from rumordb.sim.scenario import parse_scenario

TARGET_WALL_S = 60.0  # up to 100 000 nodes
TARGET_RSS_MIB = 1024.0
TARGET_WALL_1M_S = 900.0  # above: the million-node targets
TARGET_RSS_1M_MIB = 8192.0


def targets(nodes: int) -> tuple[float, float]:
    """The (wall seconds, peak RSS MiB) a run of ``nodes`` nodes should stay under."""
    if nodes <= 100_000:
        return TARGET_WALL_S, TARGET_RSS_MIB
    return TARGET_WALL_1M_S, TARGET_RSS_1M_MIB


def scenario(nodes: int, seed: int) -> dict[str, Any]:
    return {
        "name": "sim_bench",
        "seed": seed,
        "duration_s": 60,
        "stop_when_converged": True,
        "sample_interval_ms": 100,
        "cluster": {"nodes": nodes, "membership": "static"},
        "network": {"topology": "complete", "latency_ms": 5, "jitter_ms": 1},
        "gossip": {"fanout": 3, "interval_ms": 200, "anti_entropy_interval_ms": 1000},
        "workload": {"writes_per_s": 1, "writes": 1, "keys": 1, "start_s": 0.5},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--every-tick", action="store_true", help="wake every node at every deadline (the same run)"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    cpu_started = time.process_time()
    simulation = Simulation(
        parse_scenario(scenario(args.nodes, args.seed)), skip_idle=not args.every_tick
    )
    build_s = time.perf_counter() - started
    build_cpu_s = time.process_time() - cpu_started
    build_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    metrics = simulation.run()
    wall_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started  # less sensitive to a busy machine
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    figures = {
        "nodes": args.nodes,
        "skip_idle": not args.every_tick,
        "converged": metrics["converged"],
        "dissemination_s (simulated)": metrics["dissemination_s"]["max"],
        "messages_sent": metrics["messages_sent"],
        "bytes_sent": metrics["bytes_sent"],
        "build_s": round(build_s, 2),
        "build_cpu_s": round(build_cpu_s, 2),
        "build_peak_rss_mib": round(build_rss_mib, 1),
        "wall_s": round(wall_s, 2),
        "cpu_s": round(cpu_s, 2),
        "messages_per_wall_s": round(metrics["messages_sent"] / wall_s),
        "peak_rss_mib": round(peak_rss_mib, 1),
        "under_target": wall_s < targets(args.nodes)[0] and peak_rss_mib < targets(args.nodes)[1],
        "trace_hash": metrics["trace_hash"],
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
