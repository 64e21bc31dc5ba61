"""The rumor queue: fresh versions waiting to be gossiped (memberlist's TransmitLimitedQueue).

Each queued update is sent, piggybacked in batches, until it has gone out
``retransmit_limit`` times; the least-sent go first, so fresh news overtakes old. A newer
version of a key replaces the queued one and starts again from zero sends. The queue is
bounded: when full, the most-sent update is dropped (anti-entropy still delivers it).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from rumordb.core.record import Record


def retransmit_limit(mult: int, n: int) -> int:
    """How many times an update is sent: ``mult * ceil(log10(n + 1))`` (memberlist)."""
    return mult * math.ceil(math.log10(n + 1))


@dataclass(slots=True)
class Queued:
    key: str
    record: Record
    transmits: int
    seq: int


class BroadcastQueue:
    __slots__ = ("_items", "_seq", "max_items")

    def __init__(self, max_items: int = 10_000) -> None:
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        self.max_items = max_items
        self._items: dict[str, Queued] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._items)

    def push(self, key: str, record: Record, transmits: int = 0) -> None:
        """Queue ``record`` (already sent ``transmits`` times), replacing older news of ``key``."""
        self._seq += 1
        self._items[key] = Queued(key, record, transmits, self._seq)
        if len(self._items) > self.max_items:
            # Evict a tenth at once (most sent, then oldest): O(n) once per n/10 pushes.
            excess = len(self._items) - self.max_items + max(1, self.max_items // 10)
            excess = min(excess, len(self._items) - 1)
            for worst in heapq.nlargest(
                excess, self._items.values(), key=lambda q: (q.transmits, -q.seq)
            ):
                del self._items[worst.key]

    def take(self, limit: int, transmit_limit: int) -> list[Queued]:
        """Up to ``limit`` updates for one message, least-sent (then oldest) first.

        Each taken update counts one more send; those that reach ``transmit_limit``
        leave the queue.
        """
        if not self._items:
            return []
        if len(self._items) <= limit:
            chosen = sorted(self._items.values(), key=lambda q: (q.transmits, q.seq))
        else:
            chosen = heapq.nsmallest(
                limit, self._items.values(), key=lambda q: (q.transmits, q.seq)
            )
        for item in chosen:
            item.transmits += 1
            if item.transmits >= transmit_limit:
                del self._items[item.key]
        return chosen

    def discard(self, key: str) -> None:
        self._items.pop(key, None)
