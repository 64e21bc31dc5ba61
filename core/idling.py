"""When a node's next tick may have work: a driver with many idle nodes sleeps until then.

A tick at an earlier ``now`` sends, stores and draws nothing: it only moves on the timers
of jobs with nothing to do (a rumor round with an empty queue, a probe that detects
nothing), which ``Node.pass_idle`` does alone. What can make a tick busy: a slice of the
digest fold or of an anti-entropy step (due at once), a fold backlog, the next
anti-entropy interval (a session starts, or maintenance runs), the next rumor round while
the queue holds rumors, the next probe while failures are detected, and the earliest TTL
expiry. The simulator sleeps its idle nodes through their idle ticks (``sim.engine``);
``tests/core/test_node.py`` checks that a node which passes them is the node that ticks.
"""

from __future__ import annotations

import math

from rumordb.core import hlc
from rumordb.core.anti_entropy_sessions import AntiEntropySessions
from rumordb.core.broadcast import BroadcastQueue
from rumordb.core.digest_folding import DigestFolding
from rumordb.core.expiry import Expiry
from rumordb.core.membership import MemberTable
from rumordb.core.timers import Timers

INF = math.inf


class Idling:
    __slots__ = ("_expiry", "_folding", "_members", "_queue", "_sessions", "_timers")

    def __init__(
        self, timers: Timers, folding: DigestFolding, sessions: AntiEntropySessions,
        queue: BroadcastQueue, members: MemberTable, expiry: Expiry,
    ) -> None:  # fmt: skip
        self._timers, self._folding, self._sessions = timers, folding, sessions
        self._queue, self._members, self._expiry = queue, members, expiry

    def until(self) -> float:
        """The earliest ``now`` at which a tick (given no ``mono``) may have work to do
        (``-inf``: the next tick may)."""
        folding = self._folding
        if folding.due_at != INF or self._sessions.due_at != INF or folding.backlogged():
            return -INF
        timers = self._timers
        until = timers.next_anti_entropy  # a session starts, or maintenance runs
        # (comparisons, not min(): asked for every node a driver looks at)
        if self._queue and timers.next_gossip < until:
            until = timers.next_gossip
        if self._members.detects_failures and timers.next_probe < until:
            until = timers.next_probe
        expires = self._expiry.next_due()
        if expires is not None:  # a millisecond early: the HLC's logical part, rounding
            expires_s = (hlc.physical_ms(expires) - 1) / 1000
            if expires_s < until:
                until = expires_s
        return until
