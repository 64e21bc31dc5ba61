"""The loop monitor: a turn that holds the loop's thread is reported with what held it."""

from __future__ import annotations

import asyncio
import time

from rumordb.live.loop_monitor import Busy, LoopMonitor, stack_of


def _burn_cpu(seconds: float) -> None:
    began = time.thread_time()
    while time.thread_time() - began < seconds:
        pass


async def _watched(work: list[float], threshold_ms: float) -> tuple[list[Busy], LoopMonitor]:
    """Each of ``work``'s CPU seconds burnt in its own callback, under a monitor."""
    reported: list[Busy] = []
    monitor = LoopMonitor(threshold_ms, reported.append)
    loop = asyncio.get_running_loop()
    monitor.start(loop)
    try:
        for seconds in work:
            loop.call_soon(_burn_cpu, seconds)
            deadline = time.monotonic() + 10
            turns = monitor.turns
            while monitor.turns < turns + 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.002)  # the ticker ran after the callback
    finally:
        monitor.stop()
    return reported, monitor


def test_a_long_callback_is_reported_with_its_cpu_time_and_its_stack() -> None:
    reported, monitor = asyncio.run(_watched([0.12], threshold_ms=50))
    assert len(reported) == 1
    turn = reported[0]
    assert 120 <= turn.cpu_ms <= turn.wall_ms + 1 and monitor.worst_ms >= 120
    assert turn.stacks, "sampled while it ran"
    assert any("_burn_cpu" in frame for stack in turn.stacks for frame in stack)


def test_short_callbacks_are_not_reported() -> None:
    reported, monitor = asyncio.run(_watched([0.002] * 5, threshold_ms=50))
    assert reported == [] and monitor.worst_ms == 0.0


def test_a_stack_names_module_function_and_line_innermost_first() -> None:
    def inner() -> tuple[str, ...]:
        import sys

        return stack_of(sys._getframe(), depth=2)

    stack = inner()
    assert len(stack) == 2
    assert stack[0].startswith(f"{__name__}:test_a_stack_names_module_function_and_line_innermost_first.<locals>.inner:")  # fmt: skip
    assert ":test_a_stack_names_module_function_and_line_innermost_first:" in stack[1]
