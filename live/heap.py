"""Long-lived data out of the garbage collector's way: freeze it as the store grows.

Why. A full collection traverses every tracked container, and a large store holds some
with millions of references: the sorted key index's sublists (one reference a key) and
the digest's leaf table (one a leaf). Measured on a 1M-key node: full collections of
0.9-1.4 s on the event loop while it loaded or ingested (the loop monitor's ``gc_ms``),
60-90% of the time spent in loop turns over 50 ms. These containers live as long as the
node, so scanning them finds nothing: ``gc.freeze`` moves every object alive now into a
generation no collection scans.

When. Whenever the store has grown by ``GROWTH`` (a quarter) since the last freeze, and
at least ``MIN_KEYS`` keys: a doubling from 10k to 10M keys costs ~30 freezes. A freeze is
O(1) (a list splice); a young collection first, so that fresh garbage cycles are freed
rather than frozen. What a freeze keeps that would have become cyclic garbage later (an
in-flight request's objects) is never collected: bounded by what is in flight at ~30
moments of the node's life.

After a long full collection, too. Growth is not the only way a large container
appears: a restarted node loads every key first (freezes) and folds its digest after,
and a digest regroup builds a new leaf table. A leaf table holds only atomic tuples, so
a full collection untracks it, but the next write stores a fresh tuple and tracks it
again: every full collection traversed it anew (measured in process at 1M keys: 22 ms a
full collection after one write; 383 ms turns in a 10M-key node's scan). Frozen while
tracked, it stays out of every scan, however often it is written. So a full collection
that took over ``LONG_FULL_GC_S`` (timed by ``gc.callbacks``) leads to a freeze at the
next check, once writes have tracked such tables again; at most once per
``LONG_GC_FREEZE_INTERVAL_S``, which bounds what a freeze keeps of in-flight requests
(and a long full collection needs a large new container: these are rare anyway).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

GROWTH = 1.25  # freeze again once the store holds this many times the keys of the last
MIN_KEYS = 50_000  # below, a full collection is short: nothing to freeze for
CHECK_S = 1.0
LONG_FULL_GC_S = 0.02  # a full collection this long: freeze at the next check
LONG_GC_FREEZE_INTERVAL_S = 10.0  # at most one such freeze this often


class HeapFreezer:
    """Freezes the heap whenever ``keys()`` grew by ``GROWTH`` since the last freeze, or
    a full collection took over ``LONG_FULL_GC_S``."""

    def __init__(
        self, keys: Callable[[], int], clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._keys = keys
        self._clock = clock
        self.frozen_at = 0  # keys held at the last freeze
        self.freezes = 0
        self.long_collections = 0  # full collections over LONG_FULL_GC_S seen
        self._long_seen = 0  # ...when the last freeze for one was made
        self._full_began: float | None = None
        self._last_long_freeze: float | None = None

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """A ``gc.callbacks`` entry: times full collections (any thread may run one)."""
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._full_began = self._clock()
        elif self._full_began is not None:
            if self._clock() - self._full_began > LONG_FULL_GC_S:
                self.long_collections += 1
            self._full_began = None

    def check(self) -> bool:
        """Freeze if the store grew enough or a full collection was long; whether it did."""
        held = self._keys()
        grown = held >= MIN_KEYS and held >= self.frozen_at * GROWTH
        long_gc = self.long_collections > self._long_seen and (
            self._last_long_freeze is None
            or self._clock() - self._last_long_freeze >= LONG_GC_FREEZE_INTERVAL_S
        )
        if not (grown or long_gc):
            return False
        gc.collect(1)  # the young generations only: fast, and frees fresh cycles first
        gc.freeze()
        self.freezes += 1
        if grown:
            self.frozen_at = held
        if long_gc:
            self._long_seen, self._last_long_freeze = self.long_collections, self._clock()
        return True

    async def run(self) -> None:
        gc.callbacks.append(self.on_gc)
        try:
            while True:
                await asyncio.sleep(CHECK_S)
                self.check()
        finally:
            gc.callbacks.remove(self.on_gc)
