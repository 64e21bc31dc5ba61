"""The simulator's clock and event queue: SimPy's, plus plain timed calls beside it.

Why. A large run is mostly two kinds of events: a node waking for its next deadline and
a message arriving. As SimPy timeouts each was an ``Event`` object with a callback list
(and a ``partial``), scheduled, popped and dispatched in Python: ~250 B and a few
microseconds apiece, a million of them pending in a million-node run. ``call_at`` keeps
such a call as one tuple.

Buckets, not one heap. Every node has a call pending (its next wake-up), so one heap
of calls held N of them: each pop compared ~2 log2 N tuples scattered over the whole
heap, a cache miss or two each (measured: 13% of a 100 000-node run in ``step``). Calls
are kept in buckets of ``BUCKET_S`` of simulated time instead: a future bucket is a
plain list, appended to; the earliest one is sorted once when its turn comes (a few
hundred calls, in one C sort) and taken from in order; a call for the bucket being run
(or an earlier one) is placed in order in it (``insort``). Bucket numbers grow with
time, so the calls run in the very order one heap gave.

Order. Calls run by (time, order, id): the caller gives each call its ``order`` (the
engine: a node's index for its wake-ups, then a message's send number for deliveries), so
that what runs first at one instant does not depend on how many other calls were
scheduled before (a node that sleeps through idle ticks schedules fewer: the order of
the others stays). At one instant SimPy's own events (client operations, faults,
samples) run before any call.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable
from heapq import heappop, heappush
from itertools import count
from typing import Any

import simpy

Call = tuple[float, int, int, Callable[..., None], Any, Any]  # (time, order, id, fn, a, b)

# Simulated seconds per bucket: a message's delay (~5 ms) lands a few buckets ahead, and
# a bucket of a 100 000-node run holds about a thousand calls (1.16M deliveries and
# ~0.5M wake-ups over 1.35 s); other widths were not compared.
BUCKET_S = 0.001


class Calendar(simpy.Environment):
    def __init__(self) -> None:
        super().__init__()
        # The bucket being run: its calls sorted, taken from ``_next`` on (the ones
        # before are run, and cleared: the slot no longer holds the call's message).
        self._current: list[Call | None] = []
        self._next = 0
        self._current_bucket = -1
        self._buckets: dict[int, list[Call]] = {}  # later buckets, each in any order
        self._bucket_order: list[int] = []  # a heap of the keys of ``_buckets``
        self._call_ids = count()
        self.current_call = -1  # the id of the call running (or that ran last)

    def call_at(
        self, at_s: float, fn: Callable[[Any, Any], None], first: Any, second: Any, order: int
    ) -> int:
        """Call ``fn(first, second)`` at ``at_s`` (not before now), after the calls at that
        instant with a smaller ``order``; returns the call's id (unique: a caller may
        check that a call is the one it expects)."""
        cid = next(self._call_ids)
        at_s = max(at_s, self._now)
        bucket = int(at_s / BUCKET_S)  # never negative: time starts at 0
        call = (at_s, order, cid, fn, first, second)
        if bucket <= self._current_bucket:
            # The bucket being run (or an earlier one: every call in the current bucket
            # comes after it anyway), in order, among the calls not yet run.
            insort(self._current, call, self._next)  # type: ignore[type-var]  # (no None from _next on)
            return cid
        later = self._buckets.get(bucket)
        if later is None:
            self._buckets[bucket] = [call]
            heappush(self._bucket_order, bucket)
        else:
            later.append(call)
        return cid

    def _first_call(self) -> Call | None:
        """The next call to run (not taken), moving on to the next bucket if need be."""
        current = self._current
        if self._next < len(current):
            return current[self._next]
        if not self._bucket_order:
            return None
        self._current_bucket = bucket = heappop(self._bucket_order)
        calls = self._buckets.pop(bucket)
        calls.sort()  # (time, order, id): ids are unique, so no two calls tie
        self._current, self._next = calls, 0  # type: ignore[assignment]
        return calls[0]

    def step(self) -> None:
        current, index = self._current, self._next
        call = current[index] if index < len(current) else self._first_call()
        if call is not None:
            queue = self._queue
            if not queue or call[0] < queue[0][0]:
                current = self._current  # (a new bucket, if _first_call moved on)
                current[self._next] = None
                self._next += 1
                self._now, self.current_call = call[0], call[2]
                call[3](call[4], call[5])
                return
        super().step()

    def peek(self) -> float:
        first = super().peek()
        call = self._first_call()
        return first if call is None else min(first, call[0])

    @property
    def pending_calls(self) -> int:
        later = sum(len(calls) for calls in self._buckets.values())
        return len(self._current) - self._next + later
