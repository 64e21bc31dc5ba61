"""Micro-benchmarks of the core's hot paths: merge, digest update, ring lookup, encode/decode,
and a node applying a pushed batch. Figures for closing notes; nothing is asserted.

Run: ``make bench`` (or ``.venv/bin/python -m bench.core_bench``).
"""

from __future__ import annotations

import random
import timeit

from rumordb.core import Node, NodeConfig, hlc
from rumordb.core.digest import Digest, fingerprint
from rumordb.core.merge import merge
from rumordb.core.messages import Push, Update, decode, encode
from rumordb.core.record import Record
from rumordb.core.ring import Ring


def per_op_us(fn: object, number: int) -> float:
    return timeit.timeit(fn, number=number) / number * 1e6  # type: ignore[arg-type]


def main() -> None:
    a = Record(b"x" * 100, "text/plain", {"n1": 3, "n2": 1}, hlc.pack(1_000), "n1")
    b = Record(b"y" * 100, "text/plain", {"n1": 2, "n3": 4}, hlc.pack(2_000), "n3")
    digest = Digest.of((f"k{i}", fingerprint(i, "n1", False)) for i in range(100_000))
    keys = [f"k{i}" for i in range(10_000)]
    rng = random.Random(1)
    ring = Ring([f"n{i}" for i in range(10)])
    counter = iter(range(10**9))
    push = Push("n2", [], [Update(f"k{i}", a) for i in range(100)])
    data = encode(push)
    node = Node("n1", rng=random.Random(1), now=0.0, config=NodeConfig())
    batches = [
        encode(Push("n2", [], [Update(f"key{j}-{i}", b) for i in range(100)])) for j in range(200)
    ]
    it = iter(batches)

    rows = [
        ("merge (concurrent records)", per_op_us(lambda: merge(a, b), 200_000)),
        (
            "digest update (100k keys)",
            per_op_us(lambda: digest.set(rng.choice(keys), next(counter)), 100_000),
        ),
        (
            "ring owners(key, 3), 10 nodes",
            per_op_us(lambda: ring.owners(rng.choice(keys), 3), 100_000),
        ),
        ("encode Push of 100 records", per_op_us(lambda: encode(push), 5_000)),
        ("decode Push of 100 records", per_op_us(lambda: decode(data), 5_000)),
        ("node.receive Push, 100 new keys", per_op_us(lambda: node.receive(next(it), 1.0), 200)),
        ("node.put + flush (2 peers)", _put_us()),
    ]
    print(f"{'operation':40} {'µs/op':>10} {'ops/s':>12}")
    for name, us in rows:
        print(f"{name:40} {us:10.2f} {1e6 / us:12,.0f}")


def _put_us() -> float:
    node = Node("n1", rng=random.Random(1), now=0.0)
    node.join("n2", "x", 0, 0.0)
    node.join("n3", "y", 0, 0.0)
    counter = iter(range(10**9))

    def op() -> None:
        node.put(f"k{next(counter) % 1000}", b"v" * 100, "text/plain", 1.0)
        node.flush(1.0)

    return per_op_us(op, 20_000)


if __name__ == "__main__":
    main()
