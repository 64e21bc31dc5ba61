"""The calendar: plain timed calls run exactly where equal SimPy timeouts would."""

from __future__ import annotations

import random

import simpy
from simpy.events import URGENT

from rumordb.sim.calendar import Calendar


def _schedule(
    env: simpy.Environment, plan: list[tuple[float, bool]], log: list[str], calls: bool
) -> None:
    """Timeouts (or, with ``calls``, calls where the plan says so) that log their name,
    some of them scheduling more at their firing (as ticks and deliveries do)."""

    def fire(name: str, more: float) -> None:
        log.append(f"{env.now!r} {name}")
        if more >= 0:
            later(f"{name}+", more, -1.0)

    def later(name: str, delay: float, more: float) -> None:
        if calls and isinstance(env, Calendar) and name.startswith("c"):
            env.call_at(delay, fire, name, more)
        else:
            env.timeout(delay).callbacks.append(lambda _e: fire(name, more))

    for i, (delay, as_call) in enumerate(plan):
        later(f"{'c' if as_call else 't'}{i}", delay, delay / 2 if i % 3 == 0 else -1.0)


def test_calls_and_timeouts_interleave_as_timeouts_alone_do() -> None:
    rng = random.Random(5)
    # Many equal instants (a coarse grid), so the order at one instant is what is tested.
    plan = [(rng.randrange(0, 8) / 4, rng.random() < 0.6) for _ in range(300)]
    reference: list[str] = []
    env = simpy.Environment()
    _schedule(env, plan, reference, calls=False)
    env.run()
    mixed: list[str] = []
    calendar = Calendar()
    _schedule(calendar, plan, mixed, calls=True)
    calendar.run()
    assert mixed == reference and len(mixed) > len(plan)


def test_an_urgent_event_at_the_same_instant_runs_before_a_call() -> None:
    calendar = Calendar()
    log: list[str] = []
    calendar.call_at(1.0, lambda a, b: log.append(a), "call", None)
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
    first = calendar.call_at(0.1, lambda a, b: seen.append(calendar.current_call), None, None)
    second = calendar.call_at(0.1, lambda a, b: seen.append(calendar.current_call), None, None)
    assert calendar.peek() == 0.1
    calendar.run()
    assert seen == [first, second] and first != second and calendar.now == 0.1
