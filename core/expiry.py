"""When values with a TTL expire: a bounded index of expiry instants, by time.

A write with a TTL carries its expiry instant (an HLC, ``core.record``). The index keeps
``(expires, key)`` in a heap so that each tick finds the due keys without a scan of the
store. Entries go stale when a key is overwritten; they are skipped when they come due,
and the heap is rebuilt from the live entries once stale ones outnumber them, so it holds
at most about twice as many entries as there are keys with a TTL.
"""

from __future__ import annotations

import heapq

REBUILD_SLACK = 1024  # stale entries tolerated before the heap is rebuilt


class Expiry:
    __slots__ = ("_due", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._due: dict[str, int] = {}  # key -> its current expiry instant

    def __len__(self) -> int:
        return len(self._due)

    def track(self, key: str, expires: int) -> None:
        """``key``'s stored version expires at ``expires`` (0: never, or a tombstone)."""
        if expires == 0:
            self._due.pop(key, None)
            return
        if self._due.get(key) == expires:
            return
        self._due[key] = expires
        heapq.heappush(self._heap, (expires, key))
        if len(self._heap) > 2 * len(self._due) + REBUILD_SLACK:
            self._heap = [(at, k) for k, at in self._due.items()]
            heapq.heapify(self._heap)

    def next_due(self) -> int | None:
        """The earliest expiry instant held (perhaps a stale entry's: never later than
        the first real one), or None."""
        return self._heap[0][0] if self._heap else None

    def take_due(self, now_hlc: int, budget: int) -> list[str]:
        """Up to ``budget`` keys whose expiry instant is at or before ``now_hlc``."""
        heap, due = self._heap, self._due
        taken: list[str] = []
        while heap and heap[0][0] <= now_hlc and len(taken) < budget:
            expires, key = heapq.heappop(heap)
            if due.get(key) == expires:
                del due[key]
                taken.append(key)
        return taken
