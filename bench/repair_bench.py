"""How fast, and how cheaply, anti-entropy repairs a healed replica: 10 000 keys, 1% missing.

The issue's targets: identical data within 2 anti-entropy intervals + 1 s of the heal,
exchanging under 10% of the data set's size. Two measurements, figures only (nothing is
asserted; the multi-host ring asserts correctness, not timings):

* ``inproc``: real ``core.Node`` objects driven in simulated time (1 ms steps, 1 ms
  latency). 1% new keys (100-byte values) are written on node 0 while it is cut off, so
  the others miss them. Rumors about these writes are dropped (they were sent during the
  partition), so only anti-entropy can repair: this isolates it exactly. Bytes are the
  encoded messages between heal and identical data, anti-entropy messages counted apart
  from heartbeats.
* ``live``: ``rumor node`` processes on loopback. One node is cut off with ``POST /faults``
  for a moment shorter than the suspicion timeout, 1% of the keys are rewritten on the
  others, the rumors run out, the fault heals; we time until the cut-off node holds every
  rewritten version, and take the bytes from the nodes' gossip byte counters.

Run: ``.venv/bin/python -m bench.repair_bench [inproc|live|both] [--keys 10000]``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Iterable

from rumordb.core import Node, NodeConfig
from rumordb.core.messages import DigestStep, LeafEntries, SyncRecords, Update, decode, encode
from rumordb.core.record import Record

VALUE_BYTES = 100
STEP_S = 0.001
PARTITION_MAX_S = 10.0  # rumors run out long before (retransmit limit x gossip interval)
ANTI_ENTROPY_TYPES = (DigestStep, LeafEntries, SyncRecords)


def _records(keys: int, origin: str) -> list[tuple[str, Record]]:
    rng = random.Random(7)
    return [
        (
            f"key/{i:06d}",
            Record(rng.randbytes(VALUE_BYTES), "application/octet-stream", {origin: 1}, i, origin),
        )
        for i in range(keys)
    ]


def full_size_bytes(records: Iterable[tuple[str, Record]]) -> int:
    """What shipping the whole data set would cost: every record, encoded as on the wire."""
    return sum(len(encode(SyncRecords("n0", 0, [Update(k, r)], []))) for k, r in records)


class InProcess:
    """N nodes holding the same data, except ``differing`` keys rewritten on node 0."""

    def __init__(
        self, nodes: int, keys: int, differing: int, interval_ms: int, seed: int = 0
    ) -> None:
        self.config = NodeConfig(anti_entropy_interval_ms=interval_ms)
        self.ids = [f"n{i}" for i in range(nodes)]
        base = _records(keys, "n0")
        self.full_bytes = full_size_bytes(base)
        self.nodes = {
            nid: Node(
                nid,
                nid,
                rng=random.Random(f"{seed}/{nid}"),
                now=0.0,
                config=self.config,
                records=base,
            )
            for nid in self.ids
        }
        for a in self.ids:
            for b in self.ids:
                if a != b:
                    self.nodes[a].join(b, b, 0, 0.0)
        for nid, node in self.nodes.items():
            # Built before the heal, as on nodes that have been running: a restart's fold
            # is bench-volume's business (measured: it was ~all of the repair's CPU at 1M).
            node.store.digest(node.owners, nid).regroup(None)
        self.now = 0.0
        self.cut: str | None = None
        self.cpu_s = 0.0
        self.queue: list[tuple[str, bytes]] = []
        self.bytes = {"anti_entropy": 0, "other": 0}
        writer = self.nodes["n0"]
        rng = random.Random(seed)
        missing = [f"new/{rng.getrandbits(64):016x}" for _ in range(differing)]
        for key in missing:  # keys the others lack, 100-byte values like the rest
            writer.put(key, rng.randbytes(VALUE_BYTES), "application/octet-stream", self.now)
        # What the repair must ship at the least: each missing record, encoded once.
        records = writer.view.records()
        self.missing_bytes = full_size_bytes((k, records[k]) for k in missing)
        self.cut = "n0"  # the rewrites happen while n0 is cut off: its rumors are lost
        self.queue.extend(writer.flush(self.now).messages)
        while writer.view.queue_length() and self.now < PARTITION_MAX_S:
            self.step()
        self.step()  # what is still in flight to or from n0 vanishes too
        self.cut = None
        self.bytes = {"anti_entropy": 0, "other": 0}
        self.healed_at = self.now

    def step(self) -> None:
        self.now = round(self.now + STEP_S, 6)
        pending, self.queue = self.queue, []
        for target, data in pending:
            if self.cut is not None and self.cut in (target, decode(data).sender):
                continue
            kind = "anti_entropy" if isinstance(decode(data), ANTI_ENTROPY_TYPES) else "other"
            self.bytes[kind] += len(data)
            self.queue.extend(self.nodes[target].receive(data, self.now).messages)
        for node in self.nodes.values():
            self.queue.extend(node.tick(self.now).messages)

    def identical(self) -> bool:
        first = self.nodes["n0"].view.records()
        # Lengths first: comparing 1M records every simulated millisecond took hours.
        if any(len(node.view.records()) != len(first) for node in self.nodes.values()):
            return False
        return all(node.view.records() == first for node in self.nodes.values())

    def run(self, max_s: float) -> float | None:
        self.cpu_s = time.process_time()
        while self.now - self.healed_at < max_s:
            self.step()
            if self.identical():
                self.cpu_s = time.process_time() - self.cpu_s
                return round(self.now - self.healed_at, 3)
        return None


def inproc(keys: int, nodes: int, interval_ms: int, trials: int) -> dict[str, object]:
    differing = max(1, keys // 100)
    times: list[float] = []
    shares: list[float] = []
    full = 0
    per_key: list[float] = []
    ratios: list[float] = []
    cpu: list[float] = []
    for seed in range(trials):
        sim = InProcess(nodes, keys, differing, interval_ms, seed)
        took_s = sim.run(max_s=30 * interval_ms / 1000)
        if took_s is None:
            return {"mode": "inproc", "nodes": nodes, "seed": seed, "converged": False}
        full = sim.full_bytes
        times.append(took_s)
        cpu.append(sim.cpu_s)
        repaired = sim.bytes["anti_entropy"] / (nodes - 1)  # per repaired replica
        shares.append(repaired / full)
        per_key.append(repaired / differing)
        ratios.append(repaired / sim.missing_bytes)
    times.sort()
    return {
        "mode": "inproc",
        "nodes": nodes,
        "keys": keys,
        "differing": differing,
        "trials": trials,
        "anti_entropy_interval_ms": interval_ms,
        "heal_to_identical_s_median": times[len(times) // 2],
        "heal_to_identical_s_max": times[-1],
        "target_s": 2 * interval_ms / 1000 + 1,
        # CPU of both nodes and the harness from heal to identical data (one process)
        "repair_cpu_s_median": round(sorted(cpu)[len(cpu) // 2], 2),
        "full_data_bytes": full,
        # bytes exchanged by anti-entropy per repaired replica, over the full data size
        "repair_share_median": round(sorted(shares)[len(shares) // 2], 4),
        "repair_share_max": round(max(shares), 4),
        "bytes_per_missing_key_median": round(sorted(per_key)[len(per_key) // 2]),
        # anti-entropy bytes over the bytes of the differing records themselves (target <= 3)
        "over_record_bytes_median": round(sorted(ratios)[len(ratios) // 2], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.repair_bench")
    parser.add_argument("mode", nargs="?", default="inproc", choices=["inproc", "live", "both"])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--nodes", type=int, nargs="+", default=[2, 5])
    args = parser.parse_args(argv)
    rows = []
    if args.mode in ("inproc", "both"):
        for nodes in args.nodes:
            rows.append(inproc(args.keys, nodes, args.interval_ms, args.trials))
    if args.mode in ("live", "both"):
        from bench.repair_live import live  # only when asked: starts real processes

        rows.append(live(args.keys, args.interval_ms))
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
