"""The metrics of one run: the contents of ``metrics.json``.

Definitions (all measured from outside the nodes, see ``sim.checks``):

* ``converged``: at the end of the run every up node (every up owner, when sharded)
  holds the latest version of every key, and their observable states are identical;
* ``converged_at_s``: the simulated time from which that has held without a break;
* ``convergence_time_s``: ``converged_at_s`` minus the last disturbance (the last client
  write or fault), never negative: how long the cluster took to settle;
* ``faults_cleared_s``: when the last fault cleared (``sim.timeline``); ``heal_to_converged_s``:
  from then to ``converged_at_s`` (None without faults, or when one never cleared);
* ``lag_cdf_s``: the ``dissemination_s`` lags at fixed quantiles (``sim.lag``);
* ``dissemination_s``: per version that reached every counted node before being
  overwritten, the time from its write to that moment;
* ``series``: one row per sample interval (fractions in [0, 1]; messages and bytes sent
  during the interval).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from rumordb.core import Counters
from rumordb.sim.checks import Convergence
from rumordb.sim.lag import cdf_points, nearest_rank
from rumordb.sim.scenario import Scenario, to_dict
from rumordb.sim.timeline import fault_spans, faults_cleared_s, heal_to_converged_s


@dataclass(slots=True)
class Traffic:
    messages_sent: int = 0
    bytes_sent: int = 0
    delivered: int = 0
    lost: int = 0
    partitioned: int = 0
    unreachable: int = 0
    to_down_node: int = 0
    decode_errors: int = 0
    persisted_writes: int = 0
    persisted_purges: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class Series:
    """One row per sample interval: the convergence and traffic curves."""

    t_s: list[float] = field(default_factory=list)
    min_fraction: list[float] = field(default_factory=list)
    mean_fraction: list[float] = field(default_factory=list)
    keys_complete: list[float] = field(default_factory=list)
    nodes_current: list[float] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)  # of those messages: lost on a link
    blocked: list[int] = field(default_factory=list)  # partitioned, unreachable, to a down node
    up_nodes: list[int] = field(default_factory=list)
    # Storage on up nodes (the bounded-growth experiment): tombstones held, fewest and
    # most; the most rows on one node's disk (live keys and tombstones).
    tombstones_min: list[int] = field(default_factory=list)
    tombstones_max: list[int] = field(default_factory=list)
    disk_rows_max: list[int] = field(default_factory=list)


class Run(Protocol):
    """What ``collect`` reads of a finished run (``sim.engine.Simulation`` is one)."""

    scenario: Scenario
    checker: Convergence
    traffic: Traffic
    series: Series
    ids: list[str]
    last_disturbance_s: float
    failed_ops: int
    noop_deletes: int
    events: list[dict[str, Any]]

    @property
    def end_s(self) -> float: ...
    @property
    def trace_hash(self) -> str: ...
    def divergent(self) -> list[str]: ...
    def node_counters(self) -> list[Counters]: ...


NODE_COUNTERS = (
    "updates_applied",
    "updates_stale",
    "lww_overwrites",
    "rumor_rounds",
    "anti_entropy_sessions",
    "anti_entropy_keys_sent",
    "tombstones_purged",
    "handoffs_completed",
)


def collect(sim: Run, wall_s: float) -> dict[str, Any]:
    checker, traffic = sim.checker, sim.traffic
    divergent = sim.divergent()
    converged = checker.complete and not divergent
    converged_at = checker.complete_since if converged else None
    stats = checker.stats
    scenario = to_dict(sim.scenario)
    cleared = faults_cleared_s(fault_spans(sim.events, scenario))
    return {
        "name": sim.scenario.name,
        "seed": sim.scenario.seed,
        "converged": converged,
        "converged_at_s": converged_at,
        "convergence_time_s": (
            max(0.0, converged_at - sim.last_disturbance_s) if converged_at is not None else None
        ),
        "last_disturbance_s": sim.last_disturbance_s,
        "faults_cleared_s": cleared,
        "heal_to_converged_s": heal_to_converged_s(converged_at, cleared),
        "end_s": sim.end_s,
        "nodes": len(sim.ids),
        "nodes_up": len(checker.up),
        "keys": len(checker.keys),
        "keys_incomplete": checker.incomplete,
        "divergent_keys": len(divergent),
        "divergent_sample": divergent[:10],
        "messages_sent": traffic.messages_sent,
        "bytes_sent": traffic.bytes_sent,
        "traffic": {
            name: value for name, value in dataclasses.asdict(traffic).items() if name != "by_kind"
        },
        "messages_by_kind": dict(sorted(traffic.by_kind.items())),
        "writes": dataclasses.asdict(stats),
        "stale_read_fraction": stats.stale_reads / stats.reads if stats.reads else None,
        "lww_inversions": stats.superseded_at_issue,
        "causal_writes_lost": stats.causal_lost,
        "failed_ops": sim.failed_ops,
        "noop_deletes": sim.noop_deletes,
        "dissemination_s": summary(checker.dissemination_s),
        "lag_cdf_s": cdf_points(checker.dissemination_s),
        "events": sim.events,
        "node_counters": _node_counters(sim),
        "trace_hash": sim.trace_hash,
        "wall_time_s": wall_s,
        "messages_per_wall_s": traffic.messages_sent / wall_s if wall_s > 0 else None,
        "series": dataclasses.asdict(sim.series),
        "scenario": scenario,
    }


def summary(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)
    n = len(ordered)
    return {
        "count": n,
        "mean": sum(ordered) / n,
        "p50": ordered[(n - 1) // 2],
        "p90": nearest_rank(ordered, 0.9),
        "p99": nearest_rank(ordered, 0.99),
        "max": ordered[-1],
    }


def _node_counters(sim: Run) -> dict[str, int]:
    totals = dict.fromkeys(NODE_COUNTERS, 0)
    for counters in sim.node_counters():  # getattr, not asdict: 1M nodes take a second
        for name in NODE_COUNTERS:
            totals[name] += getattr(counters, name)
    return totals
