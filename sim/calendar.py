"""The simulator's clock and event queue: SimPy's, plus plain timed calls beside it.

Why. A large run is mostly two kinds of events: a node waking for its next deadline and
a message arriving. As SimPy timeouts each was an ``Event`` object with a callback list
(and a ``partial``), scheduled, popped and dispatched in Python: ~250 B and a few
microseconds apiece, a million of them pending in a million-node run. ``call_at`` keeps
such a call as one tuple in a second heap.

Order. SimPy processes events by (time, priority, id), the id counting up as events are
scheduled. A call takes its id from that same counter and has normal priority, and
``step`` runs whichever of the two heaps holds the smaller key: the calls run exactly
where equal timeouts would have, so every trace stays what it was.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any

import simpy
from simpy.events import NORMAL

Call = tuple[float, int, Callable[..., None], Any, Any]  # (time, id, fn, first, second)


class Calendar(simpy.Environment):
    def __init__(self) -> None:
        super().__init__()
        self._calls: list[Call] = []
        self.current_call = -1  # the id of the call running (or that ran last)

    def call_at(self, delay: float, fn: Callable[[Any, Any], None], first: Any, second: Any) -> int:
        """Call ``fn(first, second)`` ``delay`` from now, where a timeout made now would
        fire; returns the call's id (unique: a caller may check it is the one it expects)."""
        eid = next(self._eid)
        heappush(self._calls, (self._now + delay, eid, fn, first, second))
        return eid

    def step(self) -> None:
        calls = self._calls
        if calls:
            call = calls[0]
            queue = self._queue
            if not queue or _before(call, queue[0]):
                heappop(calls)
                self._now, self.current_call = call[0], call[1]
                call[2](call[3], call[4])
                return
        super().step()

    def peek(self) -> float:
        first = super().peek()
        return min(first, self._calls[0][0]) if self._calls else first

    @property
    def pending_calls(self) -> int:
        return len(self._calls)


def _before(call: Call, event: tuple[float, int, int, Any]) -> bool:
    """Whether ``call`` comes before the queued SimPy ``event`` (time, priority, id)."""
    at = call[0]
    return at < event[0] or (at == event[0] and event[1] == NORMAL and call[1] < event[2])
