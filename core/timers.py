"""The node's three periodic jobs and when each is next due.

Probes (heartbeats and failure detection), rumor rounds and anti-entropy run on their
own intervals. First deadlines are jittered (from the node's seeded random source) so
that nodes started together do not act in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import msgspec


class Due(msgspec.Struct, frozen=True, gc=False):
    probe: bool
    gossip: bool
    anti_entropy: bool


@dataclass(slots=True)
class Timers:
    probe_interval_ms: int
    gossip_interval_ms: int
    anti_entropy_interval_ms: int
    next_probe: float = 0.0
    next_gossip: float = 0.0
    next_anti_entropy: float = 0.0

    def start(self, now: float, rng: random.Random | None) -> None:
        """First deadlines: ``now`` plus a random part of each interval (None: no jitter)."""
        jitter = rng.random if rng is not None else (lambda: 0.0)
        # The draw order (gossip, probe, anti-entropy) is kept: it fixes seeded traces.
        # Written as ``x * ms / 1000`` (not ``x * s``): the float result, and so every
        # simulated trace, stays what it was before this module existed.
        self.next_gossip = now + jitter() * self.gossip_interval_ms / 1000
        self.next_probe = now + jitter() * self.probe_interval_ms / 1000
        self.next_anti_entropy = now + jitter() * self.anti_entropy_interval_ms / 1000

    def next_deadline(self) -> float:
        return min(self.next_gossip, self.next_probe, self.next_anti_entropy)

    def fire(self, now: float) -> Due:
        """Which jobs are due by ``now``; each due one is rescheduled an interval later."""
        probe = now >= self.next_probe
        if probe:
            self.next_probe = now + self.probe_interval_ms / 1000
        gossip = now >= self.next_gossip
        if gossip:
            self.next_gossip = now + self.gossip_interval_ms / 1000
        anti_entropy = now >= self.next_anti_entropy
        if anti_entropy:
            self.next_anti_entropy = now + self.anti_entropy_interval_ms / 1000
        return Due(probe, gossip, anti_entropy)
