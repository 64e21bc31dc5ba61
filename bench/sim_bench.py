"""Simulator benchmark: 10 000 nodes, one update, push gossip with fanout 3.

The issue's target: the update reaches every node in under 60 s of wall time on a 2-core
machine, with static (shared) membership so that 10 000 member tables are not needed.
Prints wall time, simulated messages per wall second and peak RSS; asserts nothing (the
figures go to the closing notes). Run with ``make bench-sim`` or
``python -m bench.sim_bench [--nodes N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from typing import Any

from rumordb.sim.engine import Simulation
from rumordb.sim.scenario import parse_scenario

TARGET_WALL_S = 60.0


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
    args = parser.parse_args()
    started = time.perf_counter()
    cpu_started = time.process_time()
    simulation = Simulation(parse_scenario(scenario(args.nodes, args.seed)))
    build_s = time.perf_counter() - started
    metrics = simulation.run()
    wall_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started  # less sensitive to a busy machine
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    figures = {
        "nodes": args.nodes,
        "converged": metrics["converged"],
        "dissemination_s (simulated)": metrics["dissemination_s"]["max"],
        "messages_sent": metrics["messages_sent"],
        "bytes_sent": metrics["bytes_sent"],
        "build_s": round(build_s, 2),
        "wall_s": round(wall_s, 2),
        "cpu_s": round(cpu_s, 2),
        "messages_per_wall_s": round(metrics["messages_sent"] / wall_s),
        "peak_rss_mib": round(peak_rss_mib, 1),
        "under_target": wall_s < TARGET_WALL_S,
        "trace_hash": metrics["trace_hash"],
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
