"""Rumor mongering for one node: pushing fresh client writes, and each gossip round.

A flush pushes the client writes accepted since the last one (``core.rumors`` says to
whom): sharded, straight to each key's replicas; unsharded, to ``push_width`` sampled
peers, and unless that reached every peer (direct mail) each write is also queued as a
rumor, counted as already sent to those targets. Each gossip round takes the least-sent
rumors from the queue (``core.broadcast``) until each was sent ``retransmit_limit``
times: sharded, to their keys' replicas; unsharded, a fresh batch to each of ``fanout``
sampled peers while any is left.
"""

from __future__ import annotations

import random

from rumordb.core.broadcast import BroadcastQueue, retransmit_limit
from rumordb.core.config import NodeConfig
from rumordb.core.counters import Counters
from rumordb.core.membership import MemberTable
from rumordb.core.messages import Update
from rumordb.core.outbox import Outbox
from rumordb.core.output import Output
from rumordb.core.placement import Placement
from rumordb.core.record import Record
from rumordb.core.replica import Replica
from rumordb.core.rumors import by_target, is_direct_mail, push_width


class Mongering:
    __slots__ = ("_config", "_counters", "_members", "_outbox", "_placement", "_queue", "_replica", "_rng")  # fmt: skip

    def __init__(
        self, config: NodeConfig, members: MemberTable, placement: Placement, queue: BroadcastQueue,
        replica: Replica, outbox: Outbox, counters: Counters, rng: random.Random,
    ) -> None:  # fmt: skip
        self._config, self._members, self._placement = config, members, placement
        self._queue, self._replica, self._outbox = queue, replica, outbox
        self._counters, self._rng = counters, rng

    def push_fresh(self, out: Output, fresh: dict[str, Record]) -> None:
        """Push the client writes of one flush (key -> version), batched per peer."""
        c = self._config
        if c.sharding:
            update_of = self._replica.update_of
            pairs = [(key, update_of(key, record)) for key, record in fresh.items()]
            grouped = by_target(pairs, self._placement.replica_targets)
            self._outbox.push_each(out, grouped, relay=False)
            return
        members = self._members
        peers = len(members.peers())
        if not peers:
            return  # alone: nobody to push to, nothing to relay (one node serving writes)
        width = push_width(c.fanout, peers, c.direct_mail_max)
        targets = members.sample_peers(self._rng, width)
        relay = not is_direct_mail(len(targets), peers)
        if relay:
            for key, record in fresh.items():
                self._queue.push(key, record, transmits=len(targets))
        # A value's update is the record alone (``Replica.update_of``: a tombstone also
        # carries its holders): built here without a call per write.
        update_of = self._replica.update_of
        updates = [
            update_of(key, record) if record.tombstone else Update(key, record)
            for key, record in fresh.items()
        ]
        self._outbox.push(out, targets, updates, relay=relay)

    def round(self, out: Output) -> None:
        """One gossip round over the rumor queue (the caller checks it is not empty)."""
        self._counters.rumor_rounds += 1
        c, queue, update_of = self._config, self._queue, self._replica.update_of
        limit = retransmit_limit(c.retransmit_mult, len(self._members))
        if c.sharding:
            items = queue.take(c.max_batch, limit)
            updates = [(item.key, update_of(item.key, item.record)) for item in items]
            self._outbox.push_each(out, by_target(updates, self._placement.replica_targets))
            return
        for target in self._members.sample_peers(self._rng, c.fanout):
            taken = queue.take(c.max_batch, limit)
            if not taken:
                break
            self._outbox.push(out, [target], [update_of(i.key, i.record) for i in taken])
