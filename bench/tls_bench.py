"""What TLS costs: the same 3-node cluster with and without TLS, side by side in one run.

Two clusters stay up together (servers pinned to CPU 0, wrk to CPU 1, as in
``bench.http_bench``): ``plain`` on HTTP and ``tls`` on HTTPS with certificates from a local
CA, gossip between its nodes over TLS too. Their wrk runs alternate (plain GET, TLS GET,
plain PUT, TLS PUT, ... for ``--rounds`` rounds), so a noisy moment of the shared machine
hits both alike, and every figure is TLS / plain of the same round. wrk keeps its
connections alive, as clients of a node should: the handshake is paid once per connection.
PUT is ``--durability sync`` and replicated to both peers before its acknowledgement.

Besides requests/s, each run records the CPU time its three node processes spent per
request (coordinator + replicas): on a machine shared with other work, throughput swings
with the neighbours' load, while CPU per request shows what TLS itself adds, and where
(the coordinator pays for the client's connection, every node for gossip).

Run: ``make bench-tls`` or ``python -m bench.tls_bench``. The target is a cost of at most
25 % (ratio >= 0.75). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from bench.http_bench import LUA_GET, LUA_PUT, median_run, populate, processes, start_cluster, wrk
from rumordb.live import certs
from rumordb.live.tls import client_context

Runs = dict[str, list[dict[str, float]]]
TARGET_RATIO = 0.75


def cpu_s(procs: list[subprocess.Popen[bytes]]) -> list[float]:
    """CPU seconds (user + system) each node process has used so far."""
    times = [psutil.Process(proc.pid).cpu_times() for proc in procs]
    return [t.user + t.system for t in times]


def measured(
    url: str, script: str, nodes: list[subprocess.Popen[bytes]], work: Path, duration_s: int,
    connections: int,
) -> dict[str, float]:  # fmt: skip
    """One wrk run, with the CPU microseconds per request of the coordinator and replicas."""
    before = cpu_s(nodes)
    run = wrk(url, script, work, duration_s, connections)
    spent = [b - a for a, b in zip(before, cpu_s(nodes), strict=True)]
    requests = max(1.0, run["rps"] * duration_s)
    run["cpu_us"] = sum(spent) / requests * 1e6
    run["coordinator_us"] = spent[0] / requests * 1e6
    return run


def bench_rounds(work: Path, duration_s: int, connections: int, rounds: int) -> Runs:
    runs: Runs = {name: [] for name in ("plain GET", "tls GET", "plain PUT", "tls PUT")}
    tls_dir = work / "tls"
    with processes() as procs:
        plain = start_cluster(work, procs)
        secure = start_cluster(work, procs, tls_dir=tls_dir)
        clusters = {"plain": (plain[0], procs[0:3]), "tls": (secure[0], procs[3:6])}
        populate(plain[0])
        populate(secure[0], verify=client_context(tls_dir / certs.CA_FILE))
        for _ in range(rounds):
            for method, script in (("GET", LUA_GET), ("PUT", LUA_PUT)):
                for name, (url, nodes) in clusters.items():
                    run = measured(url, script, nodes, work, duration_s, connections)
                    runs[f"{name} {method}"].append(run)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per cluster")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk (make bench-tls does it)")
    with tempfile.TemporaryDirectory(prefix="rumor-tls-bench-") as tmp:
        runs = bench_rounds(Path(tmp), args.duration, args.connections, args.rounds)
    print(f"\nTLS benchmark: two 3-node clusters on CPU 0, wrk on CPU 1, {args.connections} "
          f"keep-alive connections, {args.duration} s x {args.rounds} alternating rounds, "
          f"100-byte values (cpus: {os.cpu_count()}); target TLS/plain >= {TARGET_RATIO}")  # fmt: skip
    print(f"{'run':<12}{'req/s':>8}{'p99 ms':>8}{'non-2xx':>8}{'CPU us/req':>11}"
          f"{'(coord.)':>9}{'TLS/plain':>10}  rounds")  # fmt: skip
    for method in ("GET", "PUT"):
        plain, secure = runs[f"plain {method}"], runs[f"tls {method}"]
        ratios = [t["rps"] / p["rps"] for t, p in zip(secure, plain, strict=True)]
        for name, kind in ((f"plain {method}", plain), (f"TLS {method}", secure)):
            run = median_run(kind)
            cpu = statistics.median(r["cpu_us"] for r in kind)
            coordinator = statistics.median(r["coordinator_us"] for r in kind)
            shown = ""
            if name.startswith("TLS"):
                shown = f"{statistics.median(ratios):>9.2f}x  " + " ".join(
                    f"{r:.2f}" for r in ratios
                )
            print(f"{name:<12}{run['rps']:>8.0f}{run['p99_ms']:>8.1f}"
                  f"{sum(r['non2xx'] for r in kind):>8.0f}{cpu:>11.1f}{coordinator:>9.1f}{shown}")  # fmt: skip
        plain_cpu = statistics.median(r["cpu_us"] for r in plain)
        tls_cpu = statistics.median(r["cpu_us"] for r in secure)
        print(
            f"  {method}: CPU per request plain / TLS = {plain_cpu / tls_cpu:.2f} "
            "(the throughput ratio on a CPU of their own)"
        )


if __name__ == "__main__":
    main()
