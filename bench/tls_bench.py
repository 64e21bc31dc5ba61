"""What TLS costs: the same 3-node cluster with and without TLS, side by side in one run.

Two clusters stay up together (servers pinned to CPU 0, wrk to CPU 1, as in
``bench.http_bench``): ``plain`` on HTTP and ``tls`` on HTTPS with certificates from a local
CA, gossip between its nodes over TLS too. Their wrk runs alternate (plain GET, TLS GET,
plain PUT, TLS PUT, ... for ``--rounds`` rounds), so a noisy moment of the shared machine
hits both alike, and every figure is TLS / plain of the same round. wrk keeps its
connections alive, as clients of a node should: the handshake is paid once per connection.
PUT is ``--durability sync`` and replicated to both peers before its acknowledgement.

Run: ``make bench-tls`` or ``python -m bench.tls_bench``. The target is a cost of at most
25 % (ratio >= 0.75). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench.http_bench import LUA_GET, LUA_PUT, median_run, populate, processes, start_cluster, wrk
from rumordb.live import certs
from rumordb.live.tls import client_context

Runs = dict[str, list[dict[str, float]]]
TARGET_RATIO = 0.75


def bench_rounds(work: Path, duration_s: int, connections: int, rounds: int) -> Runs:
    runs: Runs = {name: [] for name in ("plain GET", "tls GET", "plain PUT", "tls PUT")}
    tls_dir = work / "tls"
    with processes() as procs:
        plain = start_cluster(work, procs)
        secure = start_cluster(work, procs, tls_dir=tls_dir)
        populate(plain[0])
        populate(secure[0], verify=client_context(tls_dir / certs.CA_FILE))
        for _ in range(rounds):
            for method, script in (("GET", LUA_GET), ("PUT", LUA_PUT)):
                runs[f"plain {method}"].append(wrk(plain[0], script, work, duration_s, connections))
                runs[f"tls {method}"].append(wrk(secure[0], script, work, duration_s, connections))
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
    print(f"{'run':<28}{'req/s':>10}{'p99 ms':>10}{'non-2xx':>9}{'TLS/plain':>11}  rounds")
    for method in ("GET", "PUT"):
        plain, secure = runs[f"plain {method}"], runs[f"tls {method}"]
        ratios = [t["rps"] / p["rps"] for t, p in zip(secure, plain, strict=True)]
        for name, kind in ((f"plain {method}", plain), (f"TLS {method}", secure)):
            run = median_run(kind)
            shown = f"{statistics.median(ratios):>10.2f}x  " if name.startswith("TLS") else ""
            rounds = " ".join(f"{r:.2f}" for r in ratios) if shown else ""
            print(f"{name:<28}{run['rps']:>10.0f}{run['p99_ms']:>10.1f}"
                  f"{sum(r['non2xx'] for r in kind):>9.0f}{shown or ' ' * 13}{rounds}")  # fmt: skip


if __name__ == "__main__":
    main()
