"""What one key costs the digest tree as the keys it holds grow: ``Digest.set`` and a fold.

Three figures per tree size, in CPU µs per key (``time.process_time``), each after
building a digest of N random 16-hex-digit keys:

* ``set update``: ``Digest.set(key, fp)`` of random keys it holds (a new version each);
* ``set insert``: ``Digest.set(key, fp)`` of keys it does not hold yet;
* ``fold insert``: ``Store.fold`` of batches of new keys put with ``Store.put_new`` (the
  batch-ingest path: key hash, fingerprint, entry hash, leaf, ancestors), plus a read of
  the root after each batch (what anti-entropy does, every few seconds).

Each (tree, N) runs in its own process, and with ``--ref DIR`` (a checkout of another
commit, e.g. ``git worktree add /tmp/fold-ref ff2a921``) the runs alternate between this
tree and the reference, so that a slow minute on a shared machine shows in both. The
reference is imported from its own folder (``python -S``, this venv's site-packages).
Figures are printed, never asserted.

    .venv/bin/python -m bench.digest_bench --sizes 10000 1000000 --ref /tmp/fold-ref
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

OPS = 20_000
BATCH = 2_000  # keys per fold: the node's digest_fold_batch


def random_keys(rng: random.Random, count: int) -> list[str]:
    return [f"{rng.getrandbits(64):016x}" for _ in range(count)]


def one_run(size: int, ops: int, seed: int) -> dict[str, float]:
    from rumordb.core.digest import Digest, fingerprint
    from rumordb.core.record import Record
    from rumordb.core.store import Store

    rng = random.Random(seed)
    held = random_keys(rng, size)
    digest = Digest.of((key, fingerprint(i + 1, "n1", False)) for i, key in enumerate(held))
    digest.regroup(None)  # a doubling's regroup, done before timing (it is paid once)
    digest.root  # noqa: B018  (brings a lazy tree up to date)
    updates = [(key, fingerprint(size + i, "n2", False)) for i, key in enumerate(rng.choices(held, k=ops))]  # fmt: skip
    inserts = [(key, fingerprint(i + 1, "n1", False)) for i, key in enumerate(random_keys(rng, ops))]  # fmt: skip
    figures = {"set update": _timed_sets(digest, updates), "set insert": _timed_sets(digest, inserts)}  # fmt: skip

    def owners(_key: str) -> list[str]:
        return ["n1", "n2", "n3"]

    store = Store()
    store.load((key, Record(b"v", "text/plain", {"n1": 1}, i + 1, "n1")) for i, key in enumerate(held))  # fmt: skip
    store.fold(None, owners, "n1")
    store.fold(10 * size, owners, "n1")  # a budget also finishes the regroup
    fresh = random_keys(rng, ops)
    spent = 0.0
    for start in range(0, ops, BATCH):
        batch = {key: Record(b"v", "text/plain", {"n1": 1}, size + start + i, "n1")
                 for i, key in enumerate(fresh[start : start + BATCH])}  # fmt: skip
        store.put_new(batch)
        began = time.process_time()
        store.fold(None, owners, "n1")
        store.digest(owners, "n1").root  # noqa: B018
        spent += time.process_time() - began
    figures["fold insert"] = 1e6 * spent / ops
    return figures


def _timed_sets(digest: object, items: list[tuple[str, int]]) -> float:
    set_one = digest.set  # type: ignore[attr-defined]
    began = time.process_time()
    for key, fp in items:
        set_one(key, fp)
    digest.root  # type: ignore[attr-defined]  # noqa: B018
    return 1e6 * (time.process_time() - began) / len(items)


def spawn(tree: Path, size: int, ops: int, seed: int) -> dict[str, float]:
    """One run in a fresh process importing ``rumordb`` from ``tree`` (no editable hook)."""
    env = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{sysconfig.get_paths()['purelib']}")
    argv = [sys.executable, "-S", __file__, "--one", str(size), "--ops", str(ops), "--seed", str(seed)]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, check=True, text=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--ops", type=int, default=OPS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ref", type=Path, help="a checkout to alternate with")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_run(args.one, args.ops, args.seed)))
        return
    here = Path(__file__).resolve().parent.parent
    trees = {"this": here} | ({"ref": args.ref.resolve()} if args.ref else {})
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    for round_number in range(args.rounds):
        for size in args.sizes:
            for name, tree in trees.items():
                runs.setdefault((name, size), []).append(spawn(tree, size, args.ops, 1 + round_number))  # fmt: skip
    print(f"CPU µs per key, median of {args.rounds} rounds ({args.ops} ops per figure)")
    for (name, size), results in runs.items():
        cells = "  ".join(f"{figure} {statistics.median(r[figure] for r in results):6.2f}"
                          for figure in results[0])  # fmt: skip
        print(f"{name:5} {size:>10,} keys: {cells}")
    print(f"load average (1 min) {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
