"""Each simulated node's event loop as one server, and its disk's group commit.

A live node does its work on ONE event loop: a post it receives, a client write, a post
it sends each take the loop for their CPU time, one after the other, so work that
arrives together waits (``Servers``). Its writer thread commits everything queued so far
in one transaction: a write that arrives during a commit waits for the end of that
commit and is part of the next one, together with every write that arrived meanwhile
(``Commits``; only ``sync`` durability makes anyone wait for it: ``live.storage``).

A job's service time is its calibrated cost (``sim.calibration``, a mean) times a draw
of ``spread``: the same work does not cost a live node the same CPU every time (its
garbage collector, caches, a timer's work that runs in between), which the calibration
measures as quantiles of one post's CPU over their mean (none: every job costs its
constant, and nothing is drawn). A job costlier than that one narrow post varies by as
much as the narrow post does, not in proportion (``spread_unit_s``): drawn in
proportion, a loaded machine's p99 of 5.2 made 9-11 ms syncs after a heal into a 47 ms
job, where the live loops (their monitors) had no turn of 5 ms CPU.

The machine's cores are shared (``cores``): a live cluster on one machine runs every
node, and the observer that drives and watches it (``cli.compare_live``, a server of its
own here), as processes on a few cores, so a job needs its node's loop and a free core.
When a write's push reaches four peers at once and the observer reads their watch
lines, two cores serve them two at a time, not all together: the tail of a lag is made
there. A job takes the core that freed last before it can start (its gap before the job
is lost: work is booked in hand-in order, never fitted into a gap earlier), else the
first to free up. ``cores = 0`` (a scenario not on one machine, ``[network]
one_machine``): a core per node, never waited for.

Both are a busy-until instant per node: work is served in the order the callers hand it
in, which they do at the instant it arrives (a FIFO queue without a queue object), so a
node costs one float here (two for the disk), not a SimPy ``Resource`` and its event per
job. Pure arithmetic on the simulation's clock: deterministic.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


def no_wakeup() -> float:
    return 0.0


def no_spread() -> float:
    return 1.0


@dataclass(slots=True)
class Servers:
    """One FIFO server per node: ``serve`` returns the instant the work is done.

    ``wakeup_s`` is drawn when work finds its server idle: how late a sleeping process
    gets the CPU back (a loaded machine's scheduler; 0 on an idle one). Work queued
    behind other work needs no wake-up: the loop is running. ``spread`` is drawn for
    every job: its cost's multiplier, on at most ``spread_unit_s`` of it (the narrow post
    it was measured on: a pause of the collector or a timer's work is time added to a
    job, not a share of it, so a job of many posts' work varies by as much as one post).
    ``cores``: how many cores every server shares (0: one each)."""

    wakeup_s: Callable[[], float] = no_wakeup
    spread: Callable[[], float] = no_spread
    cores: int = 0
    spread_unit_s: float = math.inf
    _busy_until: dict[str, float] = field(default_factory=dict)
    _cores_free: list[float] = field(default_factory=list)  # each core's free instant, sorted
    busy_s: float = 0.0  # service time handed out, all nodes (utilisation = / nodes / run)
    busy_of: dict[str, float] = field(default_factory=dict)  # the same, by server
    longest_of: dict[str, float] = field(default_factory=dict)  # the longest job, by server
    waited_s: float = 0.0  # time work spent queued behind other work or waking up
    core_waited_s: float = 0.0  # of which waiting for a core (the machine's, shared)

    def __post_init__(self) -> None:
        self._cores_free = [0.0] * self.cores

    def serve(self, node_id: str, arrival_s: float, cost_s: float) -> float:
        free_s = self._busy_until.get(node_id, 0.0)
        start_s = arrival_s + self.wakeup_s() if arrival_s > free_s else free_s
        cost_s += (self.spread() - 1.0) * min(cost_s, self.spread_unit_s)
        if self._cores_free:
            start_s = self._take_core(start_s, cost_s)
        done_s = start_s + cost_s
        self._busy_until[node_id] = done_s
        self.busy_s += cost_s
        self.busy_of[node_id] = self.busy_of.get(node_id, 0.0) + cost_s
        if cost_s > self.longest_of.get(node_id, 0.0):
            self.longest_of[node_id] = cost_s
        self.waited_s += start_s - arrival_s
        return done_s

    def _take_core(self, ready_s: float, cost_s: float) -> float:
        """Books a core for a job ready at ``ready_s``: the instant it starts."""
        free = self._cores_free
        i = bisect.bisect_right(free, ready_s) - 1  # the latest to free before it is ready
        if i < 0:
            i = 0  # every core is busy past ready_s: the first to free up
        start_s = max(ready_s, free[i])
        self.core_waited_s += start_s - ready_s
        del free[i]
        bisect.insort(free, start_s + cost_s)
        return start_s

    def idle(self, node_id: str) -> None:
        """The node crashed: the work it had queued is gone with its process."""
        self._busy_until.pop(node_id, None)


@dataclass(slots=True)
class Commits:
    """Group commit per node: ``commit`` returns the instant a write arriving at
    ``arrival_s`` is on disk (the end of the next commit that starts after it)."""

    _last: dict[str, tuple[float, float]] = field(default_factory=dict)  # (start, end)
    commits: int = 0

    def commit(self, node_id: str, arrival_s: float, cost_s: float) -> float:
        start_s, end_s = self._last.get(node_id, (-1.0, -1.0))
        if arrival_s <= start_s:  # the next commit has not started: this write joins it
            return end_s
        start_s = arrival_s if arrival_s > end_s else end_s
        self._last[node_id] = (start_s, start_s + cost_s)
        self.commits += 1
        return start_s + cost_s

    def on_disk_s(self, node_id: str) -> float:
        """When everything handed in so far is committed (a past instant if idle)."""
        return self._last.get(node_id, (0.0, 0.0))[1]


def wakeup_sampler(quantiles_us: Sequence[float], rng: random.Random) -> Callable[[], float]:
    """Draws from an empirical distribution given as equally spaced quantiles (the
    calibration's ``wakeup_us``), in seconds; none: no wake-up, and no draw."""
    if not quantiles_us:
        return no_wakeup
    return _sampler([q / 1e6 for q in quantiles_us], rng)


def spread_sampler(quantiles: Sequence[float], rng: random.Random) -> Callable[[], float]:
    """Draws a job's cost multiplier from equally spaced quantiles (the calibration's
    ``service_spread``, 1.0 on average); none: 1.0, and no draw."""
    if not quantiles:
        return no_spread
    return _sampler(list(quantiles), rng)


def _sampler(table: list[float], rng: random.Random) -> Callable[[], float]:
    table = sorted(table)
    size = len(table)
    draw = rng.random

    def sample() -> float:
        return table[int(draw() * size)]

    return sample
