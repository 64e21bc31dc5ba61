"""What one random-key write costs a core ``Node`` as the keys it holds grow (issue 14).

Issue 14 asks that write throughput with random keys stay within 20% of its 10k-key
value at 10M keys. This measures the core alone, in process: a ``Node`` with two peers
is preloaded with N keys (100-byte values, random 16-hex-digit keys) the way a restart
loads them (``Replica.load_all``, then every digest fold done), then M writes of random
keys are timed in CPU time (``time.process_time``): each a ``node.put`` and a
``node.flush`` (the push to the peers), and every ``FOLD_EVERY`` writes the digest fold
of the keys they touched (the work the driver's ticks and anti-entropy do). Two
workloads: *insert* (keys not held yet: the sorted index, the record dict and the digest
grow) and *update* (random keys already held).

Each (N, gc mode) runs in its own process, so one heap never slows the next, and the
runs alternate with a 10k-key reference run so that a slow minute on a shared machine
shows in both: the ratio printed is against the adjacent reference. gc modes: the
default collector, and ``gc.freeze()`` after the preload (what a driver may choose: the
loaded objects leave the collector's generations). Figures are printed, never asserted.

    make bench-random-writes     # or: python -m bench.random_writes_bench --sizes 10000 1000000
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

from rumordb.core import Node, NodeConfig, hlc
from rumordb.core.record import Record

REFERENCE_KEYS = 10_000
FOLD_EVERY = 1_000  # writes between digest folds (the driver folds on ticks)
VALUE = b"v" * 100
NOW_S = 1_000.0


def random_keys(rng: random.Random, count: int) -> list[str]:
    return [f"{rng.getrandbits(64):016x}" for _ in range(count)]


def loaded(keys: list[str]) -> Iterator[tuple[str, Record]]:
    stamp = hlc.pack(int(NOW_S * 1000) - 60_000)
    for number, key in enumerate(keys):
        yield key, Record(VALUE, "text/plain", {"n1": number + 1}, stamp + number, "n1")


def preloaded_node(keys: list[str]) -> Node:
    node = Node("n1", rng=random.Random(1), now=NOW_S, config=NodeConfig())
    node.join("n2", "http://127.0.0.2:1", 0, NOW_S)
    node.join("n3", "http://127.0.0.3:1", 0, NOW_S)
    node.replica.load_all(loaded(keys))
    node.store.fold(None, node.owners, node.node_id)
    return node


def timed_writes(node: Node, keys: list[str]) -> tuple[float, float]:
    """(CPU seconds in put + flush, CPU seconds in digest folds) for writing ``keys``."""
    put_s = fold_s = 0.0
    store, owners, node_id = node.store, node.owners, node.node_id
    for start in range(0, len(keys), FOLD_EVERY):
        began = time.process_time()
        for key in keys[start : start + FOLD_EVERY]:
            node.put(key, VALUE, "text/plain", NOW_S)
            node.flush(NOW_S)
        folded = time.process_time()
        store.fold(None, owners, node_id)
        put_s += folded - began
        fold_s += time.process_time() - folded
    return put_s, fold_s


def one_run(size: int, writes: int, freeze: bool, seed: int) -> dict[str, object]:
    """Preload ``size`` keys, then time ``writes`` inserts and ``writes`` updates."""
    rng = random.Random(seed)
    held = random_keys(rng, size)
    node = preloaded_node(held)
    if freeze:
        gc.collect()
        gc.freeze()
    fresh = random_keys(rng, writes)
    collections_before = sum(stat["collections"] for stat in gc.get_stats())
    insert = timed_writes(node, fresh)
    update = timed_writes(node, rng.sample(held, min(writes, size)))
    collections = sum(stat["collections"] for stat in gc.get_stats()) - collections_before
    return {"size": size, "writes": writes, "freeze": freeze, "insert": insert,
            "update": update, "collections": collections}  # fmt: skip


def spawn(size: int, writes: int, freeze: bool, seed: int) -> dict[str, object]:
    argv = [sys.executable, "-m", "bench.random_writes_bench", "--one", str(size),
            "--writes", str(writes), "--seed", str(seed)] + (["--freeze"] if freeze else [])  # fmt: skip
    done = subprocess.run(argv, capture_output=True, check=True, text=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def per_write_us(run: dict[str, object], workload: str) -> tuple[float, float, float]:
    put_s, fold_s = run[workload]  # type: ignore[misc]
    writes = int(run["writes"])  # type: ignore[call-overload]
    return 1e6 * put_s / writes, 1e6 * fold_s / writes, 1e6 * (put_s + fold_s) / writes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--writes", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--freeze", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_run(args.one, args.writes, args.freeze, args.seed)))
        return
    print(f"{args.writes} random-key writes per run, {args.rounds} rounds, each run beside a "
          f"{REFERENCE_KEYS}-key reference run; CPU µs per write (put+flush | digest fold)")  # fmt: skip
    for freeze in (False, True):
        for size in args.sizes:
            rows = []
            for round_number in range(args.rounds):
                seed = 1 + round_number
                reference = spawn(REFERENCE_KEYS, args.writes, freeze, seed)
                rows.append((spawn(size, args.writes, freeze, seed), reference))
            report(size, freeze, rows)
    print(f"load average (1 min) {__import__('os').getloadavg()[0]:.2f}")


def report(
    size: int, freeze: bool, rows: list[tuple[dict[str, object], dict[str, object]]]
) -> None:
    mode = "gc.freeze after preload" if freeze else "default gc"
    for workload in ("insert", "update"):
        runs = [per_write_us(run, workload) for run, _ in rows]
        ratios = [per_write_us(run, workload)[2] / per_write_us(ref, workload)[2]
                  for run, ref in rows]  # fmt: skip
        put_us = statistics.median(r[0] for r in runs)
        fold_us = statistics.median(r[1] for r in runs)
        total_us = statistics.median(r[2] for r in runs)
        collections = statistics.median(int(run["collections"]) for run, _ in rows)  # type: ignore[call-overload]
        print(f"{size:>10,} keys {workload:6} {mode:24}: {total_us:6.1f} µs/write "
              f"({put_us:5.1f} | {fold_us:5.1f})  x{statistics.median(ratios):.2f} of {REFERENCE_KEYS:,}"
              f"  [ratios {' '.join(f'{r:.2f}' for r in ratios)}; gc runs {collections:.0f}]")  # fmt: skip


if __name__ == "__main__":
    main()
