"""A probe round: judge the members, then choose who hears this node's heartbeat.

Each probe interval the node beats (its heartbeat counter grows), applies the silence
timeouts unless it was away itself (``core.local_health``), reaps members dead for long
enough (``core.lifecycle``) and sends a heartbeat to ``fanout`` sampled peers, plus one
dead member in turn: knocking on a dead member's door each round is how a healed
partition, or a restarted node nobody gossips about, is noticed.
"""

from __future__ import annotations

import random

from rumordb.core import lifecycle
from rumordb.core.membership import MemberTable


class Prober:
    __slots__ = ("knocks",)

    def __init__(self) -> None:
        self.knocks = 0  # dead doors knocked on: picks the next one in turn

    def round(
        self,
        members: MemberTable,
        rng: random.Random,
        fanout: int,
        mono: float,
        reap_dead_after_ms: int,
    ) -> list[str]:
        """Judge the members at ``mono``; returns the heartbeat's targets (may be empty)."""
        members.beat()
        if not members.was_away(mono):  # away: what waits for us is news, not silence
            members.expire(mono)
        lifecycle.reap(members, mono, reap_dead_after_ms)
        targets = members.sample_peers(rng, fanout)
        dead = members.dead_peers()
        if dead:
            self.knocks += 1
            targets.append(dead[self.knocks % len(dead)])
        return targets
