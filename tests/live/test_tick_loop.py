"""The tick loop: bounded sleeps to the next deadline, stalls noticed, ticks handed over."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from rumordb.live import tick_loop
from rumordb.live.tick_loop import TickLoop

pytestmark = pytest.mark.anyio


class FakeTime:
    """Monotonic time that moves only when the loop sleeps (by ``jumps`` too, once each)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []
        self.jumps: dict[int, float] = {}  # sleep number -> extra seconds it takes

    def mono(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds + self.jumps.pop(len(self.slept), 0.0)


def looping(clock: FakeTime, deadline_in_s: float, ticks: int, defer: bool = False) -> TickLoop:
    """A loop that stops after ``ticks`` ticks (or as many deferrals)."""
    done: list[str] = []

    async def tick() -> None:
        done.append("tick")

    def deferred() -> bool:
        if defer:
            done.append("deferred")
        return defer

    return TickLoop(
        1000, next_deadline=lambda: clock.now + deadline_in_s, tick=tick, defer=deferred,
        running=lambda: len(done) < ticks, mono=clock.mono, sleep=clock.sleep,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("deadline_in_s", "slept_s"),
    [(0.05, 0.05), (5.0, tick_loop.MAX_TICK_SLEEP_S), (-1.0, tick_loop.MIN_TICK_SLEEP_S)],
)
async def test_it_sleeps_until_the_deadline_within_bounds(
    deadline_in_s: float, slept_s: float
) -> None:
    clock = FakeTime()
    await looping(clock, deadline_in_s, ticks=3).run()
    assert clock.slept == pytest.approx([slept_s] * 3)


async def test_a_late_wake_up_is_a_stall_and_what_waited_is_read_before_the_tick() -> None:
    clock = FakeTime()
    clock.jumps = {2: 10.0}  # the second sleep takes 10 s longer: the process was paused
    loop = looping(clock, 0.1, ticks=3)
    with capture_logs() as logs:
        await loop.run()
    assert loop.stalls == 1
    assert clock.slept == pytest.approx([0.1, 0.1, tick_loop.DRAIN_AFTER_STALL_S, 0.1])
    assert [entry["event"] for entry in logs] == ["loop_stalled"]
    assert logs[0]["gap_s"] == pytest.approx(10.1)


async def test_a_wake_up_within_two_probe_intervals_is_no_stall() -> None:
    clock = FakeTime()
    clock.jumps = {1: 1.5}  # 1.6 s late on a 1 s probe interval
    loop = looping(clock, 0.1, ticks=2)
    await loop.run()
    assert loop.stalls == 0 and len(clock.slept) == 2


async def test_a_tick_the_writer_takes_over_is_not_run_here() -> None:
    clock = FakeTime()
    ran: list[bool] = []
    loop = looping(clock, 0.1, ticks=2, defer=True)
    loop._tick = lambda: ran.append(True)  # type: ignore[assignment,method-assign,return-value]
    await loop.run()
    assert ran == [] and len(clock.slept) == 2
