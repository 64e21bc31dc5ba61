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
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

GROWTH = 1.25  # freeze again once the store holds this many times the keys of the last
MIN_KEYS = 50_000  # below, a full collection is short: nothing to freeze for
CHECK_S = 1.0


class HeapFreezer:
    """Freezes the heap whenever ``keys()`` grew by ``GROWTH`` since the last freeze."""

    def __init__(self, keys: Callable[[], int]) -> None:
        self._keys = keys
        self.frozen_at = 0  # keys held at the last freeze
        self.freezes = 0

    def check(self) -> bool:
        """Freeze if the store grew enough; whether it did."""
        held = self._keys()
        if held < MIN_KEYS or held < self.frozen_at * GROWTH:
            return False
        gc.collect(1)  # the young generations only: fast, and frees fresh cycles first
        gc.freeze()
        self.frozen_at, self.freezes = held, self.freezes + 1
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_S)
            self.check()
