"""Is this node's own clock within the skew bound of its peers'? A verdict from heartbeats.

Every heartbeat carries its sender's wall clock (``Heartbeat.clock_ms``). At receipt,
``our clock - sender clock`` is how far we are ahead of that peer, plus the network delay.
Per peer we keep its last ``SAMPLES`` readings and use the smallest (the least delayed,
as NTP's clock filter does), so a slow link or a paused event loop never looks like skew.

The rule: this node is AHEAD when more than half of the peers heard within ``WINDOW_MS``
put it more than the bound ahead (BEHIND likewise). A majority, not a mean: one peer
with a wild clock cannot make the others doubt theirs (in three nodes with one fast, the
fast one sees two peers behind, each slow one sees one peer of two ahead). With two
nodes each sees the other off; the direction tells which one is ahead.

A node that is ahead would stamp versions its peers refuse (``core.bounds``), so the
node refuses client writes while AHEAD. A node BEHIND refuses its peers' versions but
its own are accepted everywhere: it reports the problem and keeps serving.
"""

from __future__ import annotations

import enum
from collections import deque

import msgspec

SAMPLES = 4  # readings kept per peer
WINDOW_MS = 30_000  # a peer unheard for this long no longer counts


class Skew(enum.Enum):
    OK = "ok"
    AHEAD = "ahead"  # this node's clock is ahead of most peers' by more than the bound
    BEHIND = "behind"


class ClockVerdict(msgspec.Struct, frozen=True, gc=False):
    skew: Skew
    ahead_ms: int  # median over peers of how far this clock is ahead (negative: behind)
    peers: int  # peers with a recent reading
    bound_ms: int


class ClockWatch:
    """Readings of peers' clocks, and the verdict they give (recomputed as they arrive)."""

    __slots__ = ("_readings", "bound_ms", "verdict")

    def __init__(self, bound_ms: int) -> None:
        self.bound_ms = bound_ms
        self._readings: dict[str, deque[tuple[int, int]]] = {}  # peer -> (ahead_ms, at_ms)
        self.verdict = ClockVerdict(Skew.OK, 0, 0, bound_ms)

    def heard(self, peer: str, peer_clock_ms: int, now_ms: int) -> None:
        """A heartbeat of ``peer`` stamped ``peer_clock_ms`` arrived at ``now_ms``."""
        readings = self._readings.get(peer)
        if readings is None:
            readings = self._readings[peer] = deque(maxlen=SAMPLES)
        readings.append((now_ms - peer_clock_ms, now_ms))
        self.judge(now_ms)

    def judge(self, now_ms: int) -> ClockVerdict:
        """Forget peers unheard for ``WINDOW_MS``; recompute the verdict."""
        for peer in [p for p, r in self._readings.items() if now_ms - r[-1][1] > WINDOW_MS]:
            del self._readings[peer]
        aheads = sorted(min(ahead for ahead, _ in r) for r in self._readings.values())
        self.verdict = verdict_of(aheads, self.bound_ms)
        return self.verdict


def verdict_of(aheads_ms: list[int], bound_ms: int) -> ClockVerdict:
    """The verdict from each peer's (sorted) estimate of how far we are ahead of it."""
    count = len(aheads_ms)
    if not count:
        return ClockVerdict(Skew.OK, 0, 0, bound_ms)
    median = aheads_ms[(count - 1) // 2]
    if 2 * sum(1 for a in aheads_ms if a > bound_ms) > count:
        return ClockVerdict(Skew.AHEAD, median, count, bound_ms)
    if 2 * sum(1 for a in aheads_ms if a < -bound_ms) > count:
        return ClockVerdict(Skew.BEHIND, median, count, bound_ms)
    return ClockVerdict(Skew.OK, median, count, bound_ms)
