"""The calendar: plain timed calls beside SimPy's events, in a fixed order at an instant."""

from __future__ import annotations

import simpy
from simpy.events import URGENT

from rumordb.sim.calendar import Calendar


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
