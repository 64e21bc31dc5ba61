"""A bounded round robin over a changing list: the next ``budget`` items after a cursor.

Maintenance (tombstone purge, handoff) examines at most a batch of keys per interval; the
cursor makes successive batches walk the whole list, wrapping, even as it grows.
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
        if not items:
            return []
        start = self.position % len(items)
        batch = list(items[start : start + budget])
        self.position = start + len(batch)
        return batch
