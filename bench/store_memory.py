"""Bytes per key of the core's store, in process: what the record layout costs.

Builds a ``core.store.Store`` of ``--keys`` keys of 100-byte values, each record decoded
from its wire encoding as a peer or a restart brings it (a fresh key string and clock
``{writer: its HLC}``), folds its digest in the driver's slices, and prints:

* tracemalloc's bytes per key (key, record, indexes, digest; the key-hash cache cleared);
* the process's RSS growth per key (allocator overhead included), and the largest fold
  slice's time (a slice runs between two requests on a live node).

    .venv/bin/python -m bench.store_memory --keys 100000
    .venv/bin/python -m bench.store_memory --keys 1000000 --rss-only
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import time
import tracemalloc
from collections.abc import Iterator

import msgspec

from rumordb.core.hashing import key_hash
from rumordb.core.record import Record
from rumordb.core.store import Store

FOLD_SLICE_KEYS = 2000


def owners(_key: str) -> list[str]:
    return ["n1", "n2", "n3"]


def wire_records(count: int) -> Iterator[tuple[str, Record]]:
    rng = random.Random(1)
    encode = msgspec.msgpack.Encoder().encode
    decode = msgspec.msgpack.Decoder(tuple[str, Record]).decode
    for i in range(count):
        key = f"vol/{(i * 0x9E3779B97F4A7C15) & (2**64 - 1):016x}"
        stamp = (1 << 56) + i
        record = Record(rng.randbytes(100), "application/octet-stream", {"n1": stamp}, stamp, "n1")
        yield decode(encode((key, record)))


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def traced_per_key(count: int) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store = Store()
    for key, record in wire_records(count):
        store.put(key, record)
    store.digest(owners, "n1")
    key_hash.cache_clear()
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / count


def rss_per_key(count: int) -> tuple[float, float]:
    """(RSS growth per key, largest fold slice in ms)."""
    before = rss_bytes()
    store = Store()
    for key, record in wire_records(count):
        store.put(key, record)
    worst = 0.0
    while True:
        start = time.perf_counter()
        left = store.fold(FOLD_SLICE_KEYS, owners, "n1")
        worst = max(worst, time.perf_counter() - start)
        if not left:
            break
    gc.collect()
    return (rss_bytes() - before) / count, worst * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--rss-only", action="store_true", help="skip tracemalloc (slow at 1M)")
    args = parser.parse_args()
    if not args.rss_only:
        print(f"{args.keys} keys: {traced_per_key(args.keys):.0f} B per key traced in process")
    per_key, worst_ms = rss_per_key(args.keys)
    print(f"{args.keys} keys: RSS growth {per_key:.0f} B per key; largest "
          f"{FOLD_SLICE_KEYS}-key fold slice {worst_ms:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
