"""Local health (Lifeguard): whether a silence is the peers' or ours, and on which clock.

Membership timeouts judge how long *this* node heard nothing from a member, which is only
fair if this node was listening. When a probe comes ``LATE_PROBE_FACTOR`` intervals late
or more (the process was paused, starved of CPU, or its loop stalled), the silence is
ours: every member is credited the time we were away (``away_s``), the node reads what
waited for it before judging anyone, and it counts itself one step less healthy
(``next_health``), which widens its timeouts (``widened_s``) until on-time probes bring
it back, one step each.

Two clocks. Wall time stamps versions (HLCs) and is what peers' clocks are compared with;
a monotonic time, when the driver gives one, judges members and runs the node's timers,
so a wall-clock step never makes a peer look silent (``member_time``).
"""

from __future__ import annotations

LATE_PROBE_FACTOR = 2.0  # a probe this many intervals late: we were away
MAX_LOCAL_HEALTH = 8  # timeouts widen up to (1 + this) times


def member_time(now: float, mono: float | None) -> float:
    """The clock that judges members and runs timers: ``mono`` if the driver keeps one.

    A driver that passes ``mono`` always does, so the two are never mixed on one node.
    """
    return now if mono is None else mono


def away_s(gap_s: float, probe_interval_s: float) -> float:
    """How long this node was away, from the gap since its previous probe (0.0: on time)."""
    if gap_s <= LATE_PROBE_FACTOR * probe_interval_s:
        return 0.0
    return gap_s - probe_interval_s


def next_health(health: int, away: bool) -> int:
    """One step less healthy after being away, one step back after an on-time probe."""
    return min(MAX_LOCAL_HEALTH, health + 1) if away else max(0, health - 1)


def widened_s(timeout_s: float, health: int) -> float:
    """A membership timeout as this node applies it: longer while it is unhealthy."""
    return timeout_s * (1 + health)
