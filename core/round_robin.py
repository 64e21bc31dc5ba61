"""A bounded round robin over a changing list: the next ``budget`` items after a cursor.

Maintenance (tombstone purge, handoff) examines at most a batch of keys per interval; the
cursor makes successive batches walk the whole list, wrapping, even as it grows.

A window wraps within itself: when the cursor is near the end it goes on from the start.
Stopping at the end instead let the cursor chase a list that grows between windows: each
window held only the items appended since the last one, so older items were never seen
again. Under a constant delete load that stalled tombstone purge (the count grew by ~90
of every 100 deletes per second in experiments/bounded_growth).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class Cursor:
    position: int = 0

    def window(self, items: Sequence[T], budget: int) -> list[T]:
        """At most ``budget`` items, each at most once, from the cursor on, wrapping."""
        count = len(items)
        if not count:
            return []
        start = self.position % count
        size = min(budget, count)
        batch = list(items[start : start + size])
        batch += items[: size - len(batch)]  # past the end: go on from the start
        self.position = (start + size) % count
        return batch
