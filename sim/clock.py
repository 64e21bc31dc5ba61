"""Per-node wall clocks: true time plus an offset (skew) and a rate error (drift).

The core reads time only as the ``now`` its driver passes in, so a skewed node is just a
node that is handed a different ``now``. A clock is a line anchored where it was last set:
``reading(t) = anchor_reading + (t - anchor_true) * (1 + drift)``. Setting an offset moves
the anchor to ``EPOCH_S + t + offset``; changing the drift keeps the current reading, so
a rate change never jumps the clock. Readings never go backwards: stepping a clock back
freezes it until the line catches up (what the HLC would make of it anyway). Timers are
set in node time, so waking a node at its deadline uses the inverse, ``true_time``.

``EPOCH_S`` puts simulated time at a realistic Unix time, so HLC timestamps (and hence the
encoded message sizes) are those a live node would produce.
"""

from __future__ import annotations

from dataclasses import dataclass

EPOCH_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@dataclass(slots=True)
class NodeClock:
    anchor_true_s: float = 0.0
    anchor_reading_s: float = EPOCH_S
    drift: float = 0.0  # seconds gained per true second
    last_s: float = float("-inf")

    def reading(self, true_s: float) -> float:
        return self.anchor_reading_s + (true_s - self.anchor_true_s) * (1.0 + self.drift)

    def now(self, true_s: float, floor_s: float = float("-inf")) -> float:
        """The node's reading at ``true_s`` (at least ``floor_s``: a deadline it woke for)."""
        value = max(self.reading(true_s), self.last_s, floor_s)
        self.last_s = value
        return value

    def tick_at(self, deadline_s: float, floor_true_s: float) -> tuple[float, float]:
        """When a timer set for ``deadline_s`` fires, not before ``floor_true_s``: the true
        time, and the reading then (without reading it). On time, that is the deadline
        itself: the reading at ``true_time`` may be a rounding off it, and a node that
        sleeps until a deadline must know exactly which tick comes first. Late (the
        deadline passed before ``floor_true_s``), the clock is read then."""
        at = self.true_time(deadline_s)
        if at >= floor_true_s:
            return at, max(deadline_s, self.last_s)
        return floor_true_s, max(self.reading(floor_true_s), self.last_s, deadline_s)

    def true_time(self, node_s: float) -> float:
        """The true time at which this clock reads ``node_s`` (ignoring a freeze)."""
        return self.anchor_true_s + (node_s - self.anchor_reading_s) / (1.0 + self.drift)

    def set(self, true_s: float, offset_s: float | None, drift: float | None) -> None:
        """From ``true_s`` on, read ``offset_s`` off true time and/or gain ``drift`` s/s."""
        reading = self.reading(true_s) if offset_s is None else EPOCH_S + true_s + offset_s
        self.anchor_true_s, self.anchor_reading_s = true_s, reading
        if drift is not None:
            self.drift = drift
