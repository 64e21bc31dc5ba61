"""When the runner ticks its node: at the node's next deadline, bounded, noticing stalls.

The loop sleeps until the node's ``next_deadline()`` (monotonic time), at least
``MIN_TICK_SLEEP_S`` and at most ``MAX_TICK_SLEEP_S`` (so shutdown is noticed quickly),
then ticks. Waking up more than ``STALL_FACTOR`` probe intervals after the last tick
means the loop stalled (the process was paused, or starved of CPU): it then first lets
the input that waited be read (``DRAIN_AFTER_STALL_S``: gossip, heartbeats), so the
tick judges peers on what they sent rather than on this node's absence (the core also
credits them the time it was away: ``core.local_health``). A tick that falls due while
client writes commit is handed to the writer (``defer``), which runs it right after the
commit: nothing may send their versions before they are durable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("rumor.node")

MAX_TICK_SLEEP_S = 0.2
MIN_TICK_SLEEP_S = 0.001
STALL_FACTOR = 2.0  # a tick this many probe intervals late: the loop stalled
DRAIN_AFTER_STALL_S = 0.05  # let the input that waited through a stall be read first


class TickLoop:
    """``run`` ticks until ``running()`` is False; ``stalls`` counts the stalls noticed."""

    def __init__(
        self,
        probe_interval_ms: int,
        *,
        next_deadline: Callable[[], float],
        tick: Callable[[], Awaitable[None]],
        defer: Callable[[], bool],
        running: Callable[[], bool],
        mono: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``tick`` must not raise; ``defer()``: True if the writer took this tick over."""
        self.stalled_after_s = STALL_FACTOR * probe_interval_ms / 1000 + MAX_TICK_SLEEP_S
        self._next_deadline, self._tick, self._defer = next_deadline, tick, defer
        self._running, self._mono, self._sleep = running, mono, sleep
        self.stalls = 0
        self.last_tick_mono = mono()

    async def run(self) -> None:
        mono = self._mono
        while self._running():
            delay = self._next_deadline() - mono()
            await self._sleep(min(MAX_TICK_SLEEP_S, max(MIN_TICK_SLEEP_S, delay)))
            gap = mono() - self.last_tick_mono
            if gap > self.stalled_after_s:
                # We were away: read what waited (gossip, heartbeats) before judging peers.
                self.stalls += 1
                log.warning("loop_stalled", gap_s=round(gap, 3))
                await self._sleep(DRAIN_AFTER_STALL_S)
            self.last_tick_mono = mono()
            if not self._defer():
                await self._tick()
