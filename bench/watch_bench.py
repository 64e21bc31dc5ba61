"""Watch latency: a change written on node 1 -> its event on a watcher of node 3.

A 3-node loopback cluster (real ``rumor node`` processes, discovery only, the default
``sync`` durability). Watchers on node 3 (the changes arrive replicated) and, as the
reference in the same run, on node 1 (the node that takes the write). Then ``--changes``
PUTs to node 1, one every ``--interval-ms``; each event's arrival is timed against the
moment its PUT was sent and the moment it was acknowledged. Prints p50/p99/max; figures
are printed, never asserted. Every node is stopped by its pid.

    make bench-watch          # or: .venv/bin/python -m bench.watch_bench --changes 300
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from tests.live.harness import ADMIN, READER, Cluster, NodeProcess


class Watcher(threading.Thread):
    """Reads a node's watch stream; notes when each key's change arrived."""

    def __init__(self, node: NodeProcess, prefix: str) -> None:
        super().__init__(daemon=True)
        self.url = node.url + f"/kv?watch=true&prefix={prefix}"
        self.arrived: dict[str, float] = {}
        self.ready = threading.Event()

    def run(self) -> None:
        timeout = httpx.Timeout(5.0, read=60.0)
        client = httpx.Client(timeout=timeout, trust_env=False)
        try:
            with client.stream("GET", self.url, headers=READER) as response:
                for line in response.iter_lines():
                    event = json.loads(line)
                    if event["type"] == "start":
                        self.ready.set()
                    elif event["type"] == "change":
                        self.arrived.setdefault(event["key"], time.perf_counter())
        except httpx.HTTPError:  # the nodes stopped at the end of the run
            return
        finally:
            client.close()


def percentiles(samples_ms: list[float]) -> str:
    ordered = sorted(samples_ms)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"p50 {statistics.median(ordered):6.2f} ms  p99 {p99:6.2f} ms  "
        f"max {ordered[-1]:6.2f} ms  ({len(ordered)} events)"
    )


def measure(cluster: Cluster, changes: int, interval_s: float) -> None:
    n1, n3 = cluster.nodes["b1"], cluster.nodes["b3"]
    remote, local = Watcher(n3, "lat/"), Watcher(n1, "lat/")
    for watcher in (remote, local):
        watcher.start()
        watcher.ready.wait(10)
    sent: dict[str, float] = {}
    acked: dict[str, float] = {}
    for i in range(changes):
        key = f"lat/{i}"
        sent[key] = time.perf_counter()
        answer = cluster.client.put(n1.url + f"/kv/{key}", content=b"x" * 100, headers=ADMIN)
        acked[key] = time.perf_counter()
        assert answer.status_code in (200, 201), answer.text
        time.sleep(interval_s)
    deadline = time.monotonic() + 10
    while len(remote.arrived) < changes and time.monotonic() < deadline:
        time.sleep(0.05)
    for name, watcher in (("node 3 (replicated)", remote), ("node 1 (local, reference)", local)):
        keys = [k for k in sent if k in watcher.arrived]
        from_sent = [(watcher.arrived[k] - sent[k]) * 1000 for k in keys]
        from_ack = [(watcher.arrived[k] - acked[k]) * 1000 for k in keys]
        print(f"{name}: PUT sent -> event  {percentiles(from_sent)}")
        print(f"{' ' * len(name)}  PUT acked -> event {percentiles(from_ack)}")
        missing = changes - len(keys)
        if missing:
            print(f"{' ' * len(name)}  {missing} events did not arrive within 10 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rumor-watch-bench-") as root:
        cluster = Cluster(Path(root))
        try:
            for i in (1, 2, 3):
                cluster.add(f"b{i}", "--log-level", "warning")
            cluster.wait_ready()
            cluster.wait_members({"b1", "b2", "b3"})
            print(f"3 nodes on loopback, {args.changes} PUTs of 100 B to node 1, "
                  f"one every {args.interval_ms:g} ms")  # fmt: skip
            measure(cluster, args.changes, args.interval_ms / 1000)
        finally:
            cluster.close()


if __name__ == "__main__":
    main()
