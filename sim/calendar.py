"""The simulator's clock and event queue: SimPy's, plus plain timed calls beside it.

Why. A large run is mostly two kinds of events: a node waking for its next deadline and
a message arriving. As SimPy timeouts each was an ``Event`` object with a callback list
(and a ``partial``), scheduled, popped and dispatched in Python: ~250 B and a few
microseconds apiece, a million of them pending in a million-node run. ``call_at`` keeps
such a call as one tuple in a second heap.

Order. Calls run by (time, order, id): the caller gives each call its ``order`` (the
engine: a node's index for its wake-ups, then a message's send number for deliveries), so
that what runs first at one instant does not depend on how many other calls were
scheduled before (a node that sleeps through idle ticks schedules fewer: the order of
the others stays). At one instant SimPy's own events (client operations, faults,
samples) run before any call.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush
from itertools import count
from typing import Any

import simpy

Call = tuple[float, int, int, Callable[..., None], Any, Any]  # (time, order, id, fn, a, b)


class Calendar(simpy.Environment):
    def __init__(self) -> None:
        super().__init__()
        self._calls: list[Call] = []
        self._call_ids = count()
        self.current_call = -1  # the id of the call running (or that ran last)

    def call_at(
        self, at_s: float, fn: Callable[[Any, Any], None], first: Any, second: Any, order: int
    ) -> int:
        """Call ``fn(first, second)`` at ``at_s`` (not before now), after the calls at that
        instant with a smaller ``order``; returns the call's id (unique: a caller may
        check that a call is the one it expects)."""
        cid = next(self._call_ids)
        heappush(self._calls, (max(at_s, self._now), order, cid, fn, first, second))
        return cid

    def step(self) -> None:
        calls = self._calls
        if calls:
            call = calls[0]
            queue = self._queue
            if not queue or call[0] < queue[0][0]:
                heappop(calls)
                self._now, self.current_call = call[0], call[2]
                call[3](call[4], call[5])
                return
        super().step()

    def peek(self) -> float:
        first = super().peek()
        return min(first, self._calls[0][0]) if self._calls else first

    @property
    def pending_calls(self) -> int:
        return len(self._calls)
