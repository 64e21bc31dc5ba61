"""What a node call returns: the work a driver must carry out, and what happened.

The contract, as in etcd's raft ``Ready``: **persist ``writes`` and ``purges`` first, then
send ``messages``, then acknowledge clients.** A write that was sent before it was durable
could be lost by a crash after peers saw it, and a restarted node might reuse its vector
clock counter. The events (``transitions``: member state changes; ``discards``:
concurrent versions LWW threw away; ``counter_deltas``: how much each ``core.counters``
count grew since the previous tick, set by ``tick`` only) are for logs and metrics:
nothing else tells a driver of them, and each is handed out exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import msgspec

from rumordb.core.membership import Transition
from rumordb.core.record import Discarded, Record

NO_DELTAS: Mapping[str, int] = MappingProxyType({})  # read-only: no dict built per Output


class Output(msgspec.Struct):
    """A msgspec Struct (empty lists are fresh per instance): one is built per call."""

    messages: list[tuple[str, bytes]] = []  # (node id, payload)
    writes: list[tuple[str, Record]] = []
    purges: list[str] = []
    transitions: list[Transition] = []
    discards: list[tuple[str, Discarded]] = []
    # counter name -> growth since the previous tick; shared and empty unless a tick set it
    counter_deltas: Mapping[str, int] = NO_DELTAS

    def __bool__(self) -> bool:
        return bool(
            self.messages
            or self.writes
            or self.purges
            or self.transitions
            or self.discards
            or self.counter_deltas
        )

    def extend(self, other: Output) -> None:
        self.messages.extend(other.messages)
        self.writes.extend(other.writes)
        self.purges.extend(other.purges)
        self.transitions.extend(other.transitions)
        self.discards.extend(other.discards)
        if other.counter_deltas:
            deltas = dict(self.counter_deltas)  # never the shared empty default
            for name, delta in other.counter_deltas.items():
                deltas[name] = deltas.get(name, 0) + delta
            self.counter_deltas = deltas
