"""Simulator against live cluster: the same figures from both, side by side.

Figures (``FIGURES``), each from outside the nodes on both sides:

* ``lag_p50_s`` .. ``lag_max_s``: acknowledged -> visible on every counted node (live:
  from the instant the origin took the write, its HLC's wall-clock part, to the version's
  applying on the last node, its ``applied_us`` in the watch stream, both on the
  machine's one clock; sim: from the write to its storing on the last node, when that
  node's loop has served the post that carried it), over versions that reached every
  node up at their write before being overwritten. How late the live watch lines reached
  the driver after that is kept apart (``watch_delivery_*``): it is no part of the lag;
* ``heal_to_identical_s``: from the instant the last fault cleared (a restarted node
  clears when it serves again) to the instant from which every node held the same data;
* ``messages``, ``bytes``: node-to-node messages and sealed bytes sent (live: the
  ``/metrics`` counters; sim: ``sim.posts``), over the run;
* ``bytes_per_message``: their ratio, the framing and message sizes without the counts
  (which CPU starvation moves: late timers send fewer rounds);
* ``suspect``, ``dead``, ``alive``: membership transitions into that state, all nodes.

Beside them, not compared in the band: ``node_cpu_s``, the CPU the nodes used over the
run (live: their processes'; sim: the service time the model charged their loops), the
live driver's own (``driver_cpu_s``; sim: what its observer was charged), which shares
the machine's cores with them, and the loops' longest stalls (live, with a loop monitor:
``loop_busy_*``, the turns the nodes logged; sim: ``longest_job_s``).

``live_figures`` reads a live run's observations (``cli.compare_live.Observed`` as a
dict); ``sim_figures`` a simulator run's metrics. ``compare`` summarises runs of both
(mean, min, max) with the live/sim ratio of means and whether it is within ``BAND``.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from rumordb.sim.lag import cdf_points, nearest_rank
from rumordb.sim.timeline import fault_spans, faults_cleared_s

FIGURES = (
    "lag_p50_s",
    "lag_p90_s",
    "lag_p99_s",
    "lag_max_s",
    "heal_to_identical_s",
    "messages",
    "bytes",
    "bytes_per_message",
    "suspect",
    "dead",
    "alive",
)
BAND = (0.8, 1.25)
SERIES_STEP_S = 0.1
Version = tuple[int, str]  # (hlc, origin): LWW order, as the core merges


def sim_figures(metrics: Mapping[str, Any]) -> dict[str, Any]:
    lag = metrics["dissemination_s"]
    posts = metrics.get("posts") or {}
    transitions = metrics.get("transitions") or {}
    series = metrics["series"]
    interval = metrics["scenario"]["sample_interval_ms"] / 1000
    return {
        **_lag_figures(lag),
        "heal_to_identical_s": metrics["heal_to_converged_s"],
        **_charged_cpu(posts),
        "messages": posts.get("messages", metrics["messages_sent"]),
        "bytes": posts.get("sealed_bytes", metrics["bytes_sent"]),
        **{state: transitions.get(state, 0) for state in ("suspect", "dead", "alive")},
        "lag_cdf_s": metrics["lag_cdf_s"],
        "current": {"t_s": series["t_s"], "fraction": series["nodes_current"]},
        "traffic": {
            "t_s": series["t_s"],
            "messages_per_s": [m / interval for m in series["messages"]],
        },
    }


def _charged_cpu(posts: Mapping[str, Any]) -> dict[str, float | None]:
    """What the service model charged the nodes' loops, and the observer's apart."""
    busy, observer = posts.get("busy_s"), posts.get("observer_s") or 0.0
    return {
        "node_cpu_s": None if busy is None else busy - observer,
        "driver_cpu_s": observer if busy is not None else None,
        "longest_job_s": posts.get("longest_job_s"),
    }


def _lag_figures(lag: Mapping[str, Any]) -> dict[str, Any]:
    return {f"lag_{q}_s": lag.get(q) for q in ("p50", "p90", "p99", "max")}


def live_figures(observed: Mapping[str, Any], scenario: Mapping[str, Any]) -> dict[str, Any]:
    nodes: list[str] = observed["nodes"]
    events = observed["events"]
    down = _down_intervals(events, observed["end_s"])
    arrivals = sorted(a for a in observed["arrivals"])
    first_at: dict[tuple[str, int, str], dict[str, float]] = defaultdict(dict)
    for t, node, key, hlc, origin in arrivals:
        first_at[(key, hlc, origin)].setdefault(node, t)
    lags = []
    for t_ack, key, hlc, origin in observed["acks"]:
        counted = [n for n in nodes if not _is_down(down, n, t_ack)]
        seen = first_at.get((key, hlc, origin), {})
        if all(n in seen for n in counted):
            lags.append(max(0.0, max(seen[n] for n in counted) - t_ack))
    cleared = faults_cleared_s(fault_spans(events, scenario))
    identical = _identical_since(arrivals, nodes)
    heal = None
    if cleared is not None and identical is not None:
        heal = max(0.0, identical - cleared)
    traffic = observed["traffic"]
    first, last = traffic[0], traffic[-1]
    return {
        **_lag_figures(_summary(lags)),
        "heal_to_identical_s": heal,
        "messages": last[1] - first[1],
        "bytes": last[2] - first[2],
        **{state: observed["transitions"].get(state, 0) for state in ("suspect", "dead", "alive")},
        "lag_cdf_s": cdf_points(lags),
        "current": _current_series(observed, down),
        "traffic": _traffic_series(traffic),
        "fault_lateness_s": max(observed["fault_lateness_s"], default=0.0),
        "failed_ops": observed["failed_ops"],
        "failures": dict(observed.get("failures") or {}),
        "ack_rtt_p50_s": _summary(list(observed.get("ack_rtt_s") or []))["p50"],
        **_delivery_figures(list(observed.get("delivery_s") or [])),
        "node_cpu_s": observed.get("node_cpu_s"),
        "driver_cpu_s": observed.get("driver_cpu_s"),
        **_busy_figures(observed.get("loop_busy") or []),
    }


def _busy_figures(turns: Sequence[Sequence[float]]) -> dict[str, float | int]:
    """The busy loop turns the nodes logged (their loop monitors): count and the longest."""
    return {
        "loop_busy_turns": len(turns),
        "loop_busy_max_cpu_ms": max((cpu for cpu, _ in turns), default=0.0),
        "loop_busy_max_wall_ms": max((wall for _, wall in turns), default=0.0),
    }


def _delivery_figures(delivery_s: list[float]) -> dict[str, float | None]:
    """How late the driver read the watch lines after their nodes applied them."""
    found = _summary(delivery_s)
    return {f"watch_delivery_{q}_s": found[q] for q in ("p50", "p99")}


def _summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)
    return {
        "p50": ordered[(len(ordered) - 1) // 2],
        "p90": nearest_rank(ordered, 0.9),
        "p99": nearest_rank(ordered, 0.99),
        "max": ordered[-1],
    }


def _down_intervals(
    events: Sequence[Mapping[str, Any]], end_s: float
) -> dict[str, list[tuple[float, float]]]:
    found: dict[str, list[tuple[float, float]]] = defaultdict(list)
    since: dict[str, float] = {}
    for event in sorted(events, key=lambda e: e["at_s"]):
        for node in event.get("nodes") or []:
            if event["action"] == "crash":
                since[node] = event["at_s"]
            elif event["action"] == "restart" and node in since:
                found[node].append((since.pop(node), event["at_s"]))
    for node, start in since.items():
        found[node].append((start, end_s))
    return found


def _is_down(down: Mapping[str, list[tuple[float, float]]], node: str, t: float) -> bool:
    return any(a <= t < b for a, b in down.get(node, []))


def _identical_since(arrivals: Sequence[Sequence[Any]], nodes: Sequence[str]) -> float | None:
    """The instant from which every node held the same versions (None: not at the end).

    A node holds the newest version (LWW order) it has shown of each key: a restarted
    node's versions read back after its restart (``compare_live``'s resync, stamped when
    read) may come after a newer one its stream stamped when applied."""
    held: dict[str, dict[str, Version]] = {n: {} for n in nodes}
    differing: set[str] = set()  # keys on which the nodes differ
    since: float | None = 0.0
    for t, node, key, hlc, origin in arrivals:
        held[node][key] = max(held[node].get(key, (hlc, origin)), (hlc, origin))
        versions = {held[n].get(key) for n in nodes}
        if len(versions) > 1:
            differing.add(key)
        else:
            differing.discard(key)
        if differing:
            since = None
        elif since is None:
            since = max(0.0, t)
    return since


def _current_series(
    observed: Mapping[str, Any], down: Mapping[str, list[tuple[float, float]]]
) -> dict[str, list[float]]:
    """The fraction of up nodes holding the latest acknowledged version of every key."""
    nodes: list[str] = observed["nodes"]
    timeline = sorted(
        [(t, 0, "", key, (hlc, origin)) for t, key, hlc, origin in observed["acks"]]
        + [(t, 1, node, key, (hlc, origin)) for t, node, key, hlc, origin in observed["arrivals"]]
    )
    latest: dict[str, Version] = {}
    held: dict[str, dict[str, Version]] = {n: {} for n in nodes}
    t_s: list[float] = []
    fraction: list[float] = []
    i, step, end = 0, 0, observed["end_s"]
    while (t := round(step * SERIES_STEP_S, 6)) <= end:
        step += 1
        while i < len(timeline) and timeline[i][0] <= t:
            _, kind, node, key, version = timeline[i]
            target = latest if kind == 0 else held[node]
            target[key] = max(target.get(key, version), version)
            i += 1
        up = [n for n in nodes if not _is_down(down, n, t)]
        current = sum(
            1 for n in up if all(held[n].get(k, (-1, "")) >= v for k, v in latest.items())
        )
        t_s.append(t)
        fraction.append(current / len(up) if up else 1.0)
    return {"t_s": t_s, "fraction": fraction}


def _traffic_series(traffic: Sequence[Sequence[float]]) -> dict[str, list[float]]:
    t_s, rate = [], []
    for (t0, m0, _), (t1, m1, _) in itertools.pairwise(traffic):
        if t1 > t0:
            t_s.append(t1)
            rate.append((m1 - m0) / (t1 - t0))
    return {"t_s": t_s, "messages_per_s": rate}


def compare(
    live: Sequence[Mapping[str, Any]], sim: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One row per figure: live and sim mean, min, max; the ratio of means; in band?"""
    rows = []
    for name in FIGURES:
        row: dict[str, Any] = {"figure": name}
        for side, runs in (("live", live), ("sim", sim)):
            values = [v for v in (_value(r, name) for r in runs) if v is not None]
            row[side] = _spread(values)
        live_mean, sim_mean = row["live"]["mean"], row["sim"]["mean"]
        ratio = None
        if live_mean is not None and sim_mean:
            ratio = live_mean / sim_mean
        elif live_mean == 0 and sim_mean == 0:
            ratio = 1.0
        row["ratio"] = ratio
        # Neither side has the figure (no fault to heal from): nothing to compare.
        row["applies"] = live_mean is not None or sim_mean is not None
        row["in_band"] = ratio is not None and BAND[0] <= ratio <= BAND[1]
        rows.append(row)
    return rows


def _value(run: Mapping[str, Any], name: str) -> float | None:
    if name == "bytes_per_message":
        return run["bytes"] / run["messages"] if run.get("messages") else None
    value = run.get(name)
    return None if value is None else float(value)


def _spread(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"mean": None, "min": None, "max": None, "n": 0}
    return {
        "mean": sum(values) / len(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }
