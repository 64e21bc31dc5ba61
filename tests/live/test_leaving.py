"""After the leave announcement: a bounded wait for the handoff, and the report."""

from __future__ import annotations

import pytest

from rumordb.live import leaving
from rumordb.live.leaving import leave_report, wait_for_handoff

pytestmark = pytest.mark.anyio


class Handing:
    """A view whose keys go to their owners one per poll (``left`` of them)."""

    def __init__(self, left: int) -> None:
        self.left = left

    def handoff_remaining(self) -> int:
        return self.left


class Clock:
    def __init__(self, view: Handing) -> None:
        self.now, self.polls, self.view = 0.0, 0, view

    def mono(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds == leaving.LEAVE_POLL_S
        self.now += seconds
        self.polls += 1
        self.view.left = max(0, self.view.left - 1)


async def wait(left: int, deadline: float, running: bool = True) -> tuple[int, int]:
    view = Handing(left)
    clock = Clock(view)
    remaining = await wait_for_handoff(
        view,
        deadline,
        lambda: running,
        mono=clock.mono,
        sleep=clock.sleep,  # type: ignore[arg-type]
    )
    return remaining, clock.polls


async def test_it_waits_until_every_key_is_handed_off() -> None:
    assert await wait(3, deadline=10.0) == (0, 3)


async def test_nothing_to_hand_off_means_no_wait() -> None:
    assert await wait(0, deadline=10.0) == (0, 0)


async def test_the_wait_ends_at_the_deadline_with_the_keys_left() -> None:
    assert await wait(50, deadline=0.35) == (46, 4)


async def test_a_node_that_stops_does_not_wait() -> None:
    assert await wait(5, deadline=10.0, running=False) == (5, 0)


def test_the_report_counts_what_was_handed_off_and_whether_it_timed_out() -> None:
    assert leave_report("n1", 10, 4, 1.23456) == {
        "node_id": "n1",
        "state": "left",
        "handed_off": 6,
        "remaining": 4,
        "waited_s": 1.235,
        "timed_out": True,
    }
    assert leave_report("n1", 3, 0, 0.5)["timed_out"] is False
