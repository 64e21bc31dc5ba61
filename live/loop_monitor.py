"""How long the event loop goes without serving: CPU time per loop turn, and what held it.

A stall is time the loop spends in callbacks while a request waits. A ticker callback
runs every ``TICK_S`` on the loop; the CPU time the loop's thread spent between two of its
runs is what every callback in between cost, one long one or many short ones in one
iteration. CPU time, not wall time: on a loaded machine (the bench hosts run at load
10-20) wall gaps mostly measure the OS scheduler, while a callback's CPU time is the
stall it would cause on an idle machine. Time the thread waits for the GIL (another
thread running Python) is not CPU time of this thread; ``wall_ms`` shows it.

What held it: a watchdog thread reads the loop thread's CPU clock
(``pthread_getcpuclockid``) every ``SAMPLE_S`` and, while a turn has run for half the
threshold, samples that thread's stack (``sys._current_frames``): the innermost frames
name the callback; garbage collections are timed apart (``gc.callbacks``), as a
collection of the oldest generation runs inside whatever callback allocated. A turn over the threshold is reported (``on_busy``) with the frames
sampled during it. Off unless asked for (``--loop-monitor-ms``): the ticker costs ~1% of
a core.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

TICK_S = 0.001  # the ticker's period: a turn is the loop's work between two ticks
SAMPLE_S = 0.005  # the watchdog's period (it needs the GIL: the switch interval is 5 ms)
MAX_SAMPLES = 16  # stack samples kept per turn
STACK_DEPTH = 10  # innermost frames kept per sample


@dataclass(frozen=True, slots=True)
class Busy:
    """One loop turn over the threshold: its CPU and wall time, and stacks sampled in it."""

    cpu_ms: float
    wall_ms: float
    gc_ms: float  # of which garbage collection (wall time: it runs on the loop's thread)
    mono: float  # time.monotonic() at its end (one clock for every process of a host)
    stacks: tuple[tuple[str, ...], ...]


def stack_of(frame: FrameType | None, depth: int = STACK_DEPTH) -> tuple[str, ...]:
    """The innermost ``depth`` frames, innermost first, as ``module:function:line``."""
    found: list[str] = []
    while frame is not None and len(found) < depth:
        code = frame.f_code
        module = frame.f_globals.get("__name__", "?")
        found.append(f"{module}:{code.co_qualname}:{frame.f_lineno}")
        frame = frame.f_back
    return tuple(found)


class LoopMonitor:
    """Reports each loop turn whose CPU time reaches ``threshold_ms``; keeps the worst."""

    def __init__(self, threshold_ms: float, on_busy: Callable[[Busy], None]) -> None:
        self.threshold_s = threshold_ms / 1000
        self.on_busy = on_busy
        self.worst_ms = 0.0  # the longest turn seen, in CPU ms
        self._turn = 0  # turns ended: the watchdog files its samples under the current one
        self._turn_cpu = 0.0  # the loop thread's CPU time when the current turn began
        self._turn_wall = 0.0
        self._samples: list[tuple[int, tuple[str, ...]]] = []
        self._gc_s = 0.0  # collection time in the current turn
        self._gc_began = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._stop = threading.Event()
        self._ident = 0
        self._watchdog: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Call on the loop's thread: it is the one watched."""
        self._loop = loop
        self._turn_cpu, self._turn_wall = time.thread_time(), time.monotonic()
        self._handle = loop.call_later(TICK_S, self._tick)
        self._ident = ident = threading.get_ident()
        clock = time.pthread_getcpuclockid(ident)
        self._watchdog = threading.Thread(
            target=self._watch, args=(ident, clock), name="loop-monitor", daemon=True
        )
        self._watchdog.start()
        gc.callbacks.append(self._on_gc)

    @property
    def turns(self) -> int:
        """Loop turns ended since ``start`` (ticks of the ticker)."""
        return self._turn

    def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join()
            self._watchdog = None

    def _tick(self) -> None:
        cpu, wall = time.thread_time(), time.monotonic()
        spent = cpu - self._turn_cpu
        if spent >= self.threshold_s:
            turn = self._turn
            stacks = tuple(stack for t, stack in self._samples if t == turn)
            self.worst_ms = max(self.worst_ms, spent * 1000)
            wall_ms, gc_ms = (wall - self._turn_wall) * 1000, self._gc_s * 1000
            self.on_busy(Busy(round(spent * 1000, 1), round(wall_ms, 1), round(gc_ms, 1), wall, stacks))  # fmt: skip
            cpu, wall = time.thread_time(), time.monotonic()  # reporting is not the next turn
        self._turn += 1
        self._samples = []
        self._gc_s = 0.0
        self._turn_cpu, self._turn_wall = cpu, wall
        self._handle = self._loop.call_later(TICK_S, self._tick)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if threading.get_ident() != self._ident:
            return
        if phase == "start":
            self._gc_began = time.perf_counter()
        else:
            self._gc_s += time.perf_counter() - self._gc_began

    def _watch(self, ident: int, clock: int) -> None:
        """The watchdog thread: sample the loop thread's stack while a turn runs long."""
        half = self.threshold_s / 2
        while not self._stop.wait(SAMPLE_S):
            turn, began = self._turn, self._turn_cpu
            if time.clock_gettime(clock) - began < half or len(self._samples) >= MAX_SAMPLES:
                continue
            frame = sys._current_frames().get(ident)
            self._samples.append((turn, stack_of(frame)))
