"""Ack -> visible taken apart: the driver's view, the nodes' own lag, and CPU starvation.

One lag run of ``bench.http_bench`` watches every node, the origin included. Each change
in a watch stream carries ``applied_us``, the node's wall clock when it applied the
change; the driver notes the wall clock when it reads an ack or a change. On one host
every instant is on one clock, so a write's lag splits into:

* ``driver``: the ack read -> the change read from every other node's stream (what the
  bench printed before: it includes the driver's own delay in reading the streams);
* ``nodes``: the ack read -> applied on every other node (the target, at the nodes: no
  stream delivery; the ack is still read by the driver, so a starved driver shortens it);
* ``cluster``: applied on the origin -> applied on every other node (the cluster alone:
  the origin's group commit, the push's linger and post, the receivers' loops);
* ``first``: applied on the origin -> applied on the first other node (the commit, the
  linger, one post), and ``spread``: the first other node -> the last (the origin's posts
  one after another, the receivers' loops);
* ``commit``: applied on the origin -> the ack read (its commit and the answer);
* ``delivery``: applied -> read by the driver, every change on every node.

What part of the tail is CPU starvation: ``ProcSample`` reads a process's CPU time and
its main thread's (the event loop's) scheduler statistics from ``/proc``: the time it was
runnable but waited for a CPU (``schedstat``), which an idle machine does not have.
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # units of utime and stime in /proc/PID/stat


@dataclass
class Observed:
    """What the driver saw of ``count`` writes (index 0 of the per-node lists: the origin)."""

    count: int
    nodes: int
    acked: dict[int, float] = field(default_factory=dict)  # write -> ack read (wall s)
    applied: list[dict[int, float]] = field(default_factory=list)  # write -> applied (wall s)
    seen: list[dict[int, float]] = field(default_factory=list)  # write -> change read

    def __post_init__(self) -> None:
        self.applied = self.applied or [{} for _ in range(self.nodes)]
        self.seen = self.seen or [{} for _ in range(self.nodes)]


def lag_figures(observed: Observed) -> dict[str, list[float]]:
    """Milliseconds per write for each figure, over the writes seen (``driver``) or
    applied (the others) on every node; ``never``: writes acknowledged but not seen on
    some node. A run without applied instants (polling) has ``driver`` only."""
    names = ("driver", "nodes", "cluster", "first", "spread", "commit")
    figures: dict[str, list[float]] = {name: [] for name in names}
    figures["never"] = []
    applied, seen = observed.applied, observed.seen
    for i, acked in sorted(observed.acked.items()):
        if any(i not in node for node in seen[1:]):
            figures["never"].append(float(i))
            continue
        figures["driver"].append((max(node[i] for node in seen[1:]) - acked) * 1000)
        if any(i not in node for node in applied):
            continue
        last_applied = max(node[i] for node in applied[1:])
        first_applied = min(node[i] for node in applied[1:])
        figures["nodes"].append((last_applied - acked) * 1000)
        figures["cluster"].append((last_applied - applied[0][i]) * 1000)
        figures["first"].append((first_applied - applied[0][i]) * 1000)
        figures["spread"].append((last_applied - first_applied) * 1000)
        figures["commit"].append((acked - applied[0][i]) * 1000)
    figures["delivery"] = [
        (seen_at - applied[n][i]) * 1000
        for n in range(observed.nodes)
        for i, seen_at in seen[n].items()
        if i in applied[n]
    ]
    return figures


def last_to_apply(observed: Observed, share: float) -> collections.Counter[int]:
    """Which node applied last, over the slowest ``share`` of writes (by ``cluster``)."""
    applied = observed.applied
    whole = [i for i in range(observed.count) if all(i in node for node in applied)]
    lags = sorted(whole, key=lambda i: max(n[i] for n in applied[1:]) - applied[0][i])
    slowest = lags[len(lags) - max(1, round(len(lags) * share)) :] if lags else []
    return collections.Counter(
        max(range(1, observed.nodes), key=lambda n: applied[n][i]) for i in slowest
    )


def percentile(values: list[float], q: float) -> float:
    """Nearest rank (``nan`` for no values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True, slots=True)
class ProcSample:
    """A process's CPU time, and its main thread's time on a CPU and waiting for one."""

    cpu_s: float  # user + system, every thread
    run_s: float  # main thread, on a CPU (schedstat)
    wait_s: float  # main thread, runnable but waiting for a CPU
    slices: int  # main thread, times it was put on a CPU

    @classmethod
    def read(cls, pid: int, proc: Path = Path("/proc")) -> ProcSample:
        stat = (proc / str(pid) / "stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # after the command name
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        sched = (proc / str(pid) / "schedstat").read_text().split()
        run_ns, wait_ns, slices = int(sched[0]), int(sched[1]), int(sched[2])
        return cls(ticks / CLOCK_TICKS, run_ns / 1e9, wait_ns / 1e9, slices)

    def since(self, before: ProcSample) -> ProcSample:
        return ProcSample(
            self.cpu_s - before.cpu_s,
            self.run_s - before.run_s,
            self.wait_s - before.wait_s,
            self.slices - before.slices,
        )

    def wait_per_slice_ms(self) -> float:
        """Mean wait for a CPU each time the thread became runnable (a delta's)."""
        return self.wait_s / self.slices * 1000 if self.slices else 0.0


def cpu_pressure_us(path: Path = Path("/proc/pressure/cpu")) -> int | None:
    """Total microseconds some task waited for a CPU (PSI), or None without PSI."""
    try:
        first = path.read_text().splitlines()[0]  # "some avg10=.. avg60=.. avg300=.. total=N"
    except OSError:
        return None
    return int(first.rsplit("total=", 1)[1])
