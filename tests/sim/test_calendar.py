"""The calendar: plain timed calls beside SimPy's events, in a fixed order at an instant."""

from __future__ import annotations

import heapq
import random

import simpy
from simpy.events import URGENT

from rumordb.sim.calendar import BUCKET_S, Calendar


def _logger(log: list[str]) -> object:
    return lambda name, _second: log.append(name)


def test_calls_run_by_time_then_order_then_as_scheduled() -> None:
    calendar = Calendar()
    log: list[str] = []
    log_call = _logger(log)
    calendar.call_at(0.2, log_call, "late", None, 0)
    calendar.call_at(0.1, log_call, "order 5", None, 5)
    calendar.call_at(0.1, log_call, "order 1 first", None, 1)
    calendar.call_at(0.1, log_call, "order 1 second", None, 1)
    calendar.run()
    assert log == ["order 1 first", "order 1 second", "order 5", "late"]


def test_at_one_instant_simpy_events_run_before_calls_whatever_was_scheduled_first() -> None:
    calendar = Calendar()
    log: list[str] = []
    calendar.call_at(1.0, _logger(log), "call", None, 0)
    calendar.timeout(1.0).callbacks.append(lambda _e: log.append("timeout"))
    calendar.timeout(0.5).callbacks.append(
        lambda _e: calendar.call_at(1.0, _logger(log), "call made later", None, 0)
    )
    calendar.run()
    assert log == ["timeout", "call", "call made later"]


def test_a_call_made_at_the_current_instant_runs_after_the_events_still_due_then() -> None:
    calendar = Calendar()
    log: list[str] = []

    def first(_a: object, _b: object) -> None:
        log.append("first")
        calendar.timeout(0).callbacks.append(lambda _e: log.append("timeout now"))
        calendar.call_at(0.5, _logger(log), "call now (not in the past)", None, 0)

    calendar.call_at(1.0, first, None, None, 9)
    calendar.call_at(1.0, _logger(log), "order 10", None, 10)
    calendar.run()
    assert log == ["first", "timeout now", "call now (not in the past)", "order 10"]


def test_an_urgent_event_at_the_same_instant_runs_before_a_call() -> None:
    calendar = Calendar()
    log: list[str] = []
    calendar.call_at(1.0, _logger(log), "call", None, 0)
    calendar.timeout(0.5).callbacks.append(
        lambda _e: calendar.schedule(_urgent(calendar, log), URGENT, 0.5)
    )
    calendar.run()
    assert log == ["urgent", "call"]


def _urgent(calendar: Calendar, log: list[str]) -> simpy.Event:
    event = simpy.Event(calendar)
    event._ok, event._value = True, None
    event.callbacks.append(lambda _e: log.append("urgent"))
    return event


def test_a_call_returns_its_id_and_runs_with_it_as_the_current_call() -> None:
    calendar = Calendar()
    seen: list[int] = []
    first = calendar.call_at(0.1, lambda a, b: seen.append(calendar.current_call), None, None, 0)
    second = calendar.call_at(0.1, lambda a, b: seen.append(calendar.current_call), None, None, 0)
    assert calendar.peek() == 0.1 and calendar.pending_calls == 2
    calendar.run()
    assert seen == [first, second] and first != second and calendar.now == 0.1


class _HeapCalendar(Calendar):
    """The calendar as it was: every call in one heap (the order the buckets must keep)."""

    def __init__(self) -> None:
        super().__init__()
        self._heap: list[tuple[float, int, int, object, object, object]] = []

    def call_at(self, at_s, fn, first, second, order):  # type: ignore[no-untyped-def]
        cid = next(self._call_ids)
        heapq.heappush(self._heap, (max(at_s, self._now), order, cid, fn, first, second))
        return cid

    def step(self) -> None:
        heap, queue = self._heap, self._queue
        if heap and (not queue or heap[0][0] < queue[0][0]):
            call = heapq.heappop(heap)
            self._now, self.current_call = call[0], call[2]
            call[3](call[4], call[5])  # type: ignore[operator]
            return
        simpy.Environment.step(self)


def _busy_run(calendar: Calendar, seed: int) -> list[tuple[float, int, str]]:
    """Calls over many buckets that schedule more (same instant, same bucket, later, and
    back into earlier buckets from SimPy events), logged as they run."""
    rng = random.Random(seed)
    log: list[tuple[float, int, str]] = []

    def call(name: str, depth: int) -> None:
        log.append((calendar.now, calendar.current_call, name))
        if depth < 3:
            for i in range(rng.randrange(3)):
                delay_s = rng.choice((0.0, 0.0001, BUCKET_S / 3, 0.005, rng.random() / 50))
                calendar.call_at(
                    calendar.now + delay_s, call, f"{name}.{i}", depth + 1, rng.randrange(4)
                )

    def from_event(_event: object) -> None:
        log.append((calendar.now, -1, "event"))
        calendar.call_at(calendar.now, call, "after event", 2, 0)

    for i in range(200):
        calendar.call_at(rng.random() / 20, call, f"c{i}", 0, rng.randrange(4))
    for _ in range(20):
        calendar.timeout(rng.random() / 20).callbacks.append(from_event)
    calendar.run()
    return log


def test_bucketed_calls_run_in_the_order_one_heap_gives() -> None:
    for seed in range(5):
        bucketed, heap = _busy_run(Calendar(), seed), _busy_run(_HeapCalendar(), seed)
        assert len(bucketed) > 400 and bucketed == heap
