"""Handoff (sharded): keys held here that this node does not own go to their owners.

When the ring changes, a node may hold keys it no longer owns (or a write forwarded by a
node with another ring view). It sends each such version to the owners that have not
acknowledged it and drops the key only once every owner has: a key is never dropped
before its new owners hold it. Like tombstone purge, each interval examines a bounded
window of keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rumordb.core.round_robin import Cursor


@dataclass(frozen=True, slots=True)
class HandoffPlan:
    drop: list[str]  # every owner acknowledged these
    send: dict[str, list[str]]  # live owner -> keys to send it


@dataclass(slots=True)
class Handoff:
    self_id: str
    acks: dict[str, set[str]] = field(default_factory=dict)  # key -> owners holding it
    cursor: Cursor = field(default_factory=Cursor)

    def reset(self, key: str) -> None:
        """A new version (or none) of ``key`` here: earlier acknowledgements are void."""
        self.acks.pop(key, None)

    def acked(self, key: str, sender: str) -> None:
        acks = self.acks.get(key)
        if acks is not None:
            acks.add(sender)

    def plan(
        self,
        keys: Sequence[str],
        budget: int,
        owners_of: Callable[[str], list[str]],
        is_alive: Callable[[str], bool],
    ) -> HandoffPlan:
        drop: list[str] = []
        send: dict[str, list[str]] = {}
        for key in self.cursor.window(keys, budget):
            owners = owners_of(key)
            if self.self_id in owners:
                self.acks.pop(key, None)
                continue
            acks = self.acks.setdefault(key, set())
            if set(owners) <= acks:
                drop.append(key)
                continue
            for owner in owners:
                if owner not in acks and is_alive(owner):
                    send.setdefault(owner, []).append(key)
        return HandoffPlan(drop, send)
