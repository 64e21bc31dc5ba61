"""Tombstones: who holds each one, when it may be purged, and what was purged.

A tombstone is purged only when every member that must hold it (every ring member, or
the key's owners when sharded) is known to hold it: never on a timer, unlike Cassandra's
gc_grace, whose expiry lets deletes come back. Holders are learned from acknowledgements
and from the holder lists that travel with tombstones. Each interval examines a bounded
window (``Cursor``); for each tombstone in it the plan says purge, or which live members
to ask. A purged version is remembered (bounded), so a stale re-send of it is refused and
acknowledged instead of resurrecting the key. The memory must outlive the process (a
restarted node that forgot would take the stale re-send): versions remembered since the
last ``take_unsaved`` are handed to the driver to persist, and ``restore`` loads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rumordb.core.round_robin import Cursor

PURGED_MEMORY = 100_000  # purged tombstone versions remembered, to answer stale re-sends

Version = tuple[int, str]  # (hlc, origin): names one write


@dataclass(frozen=True, slots=True)
class PurgePlan:
    purge: list[str]  # tombstones every required member holds
    confirm: dict[str, list[str]]  # live member -> tombstones to ask it to acknowledge


@dataclass(slots=True)
class Tombstones:
    self_id: str
    holders: dict[str, set[str]] = field(default_factory=dict)  # key -> known holders
    purged: dict[str, Version] = field(default_factory=dict)  # key -> purged version
    cursor: Cursor = field(default_factory=Cursor)
    unsaved: list[tuple[str, Version]] = field(default_factory=list)  # for the driver

    def __len__(self) -> int:
        return len(self.holders)

    def stored(self, key: str, tombstone: bool, replaced_tombstone: bool) -> None:
        """A new version of ``key`` is stored here: only we are known to hold it."""
        if tombstone:
            self.holders[key] = {self.self_id}
        elif replaced_tombstone:
            self.holders.pop(key, None)

    def dropped(self, key: str) -> None:
        self.holders.pop(key, None)

    def held_by(self, key: str, sender: str, more: Iterable[str] | None) -> None:
        holders = self.holders.setdefault(key, {self.self_id})
        holders.add(sender)
        holders.update(more or ())

    def holders_of(self, key: str) -> list[str]:
        return sorted(self.holders.get(key, {self.self_id}))

    def remember(self, key: str, version: Version) -> None:
        self._keep(key, version)
        self.unsaved.append((key, version))
        if len(self.unsaved) > PURGED_MEMORY:  # a driver that never takes them
            del self.unsaved[: len(self.unsaved) - PURGED_MEMORY]

    def restore(self, versions: Iterable[tuple[str, Version]]) -> None:
        """Load a persisted memory (oldest first); not handed out again to persist."""
        for key, version in versions:
            self._keep(key, version)

    def take_unsaved(self) -> list[tuple[str, Version]]:
        taken, self.unsaved = self.unsaved, []
        return taken

    def _keep(self, key: str, version: Version) -> None:
        self.purged.pop(key, None)  # re-inserted last: the newest is evicted last
        self.purged[key] = version
        if len(self.purged) > PURGED_MEMORY:
            del self.purged[next(iter(self.purged))]

    def plan(
        self, budget: int, required: Callable[[str], set[str]], is_alive: Callable[[str], bool]
    ) -> PurgePlan:
        """Decide for the next window of tombstones: purge, or ask whom to confirm."""
        purge: list[str] = []
        confirm: dict[str, list[str]] = {}
        for key in self.cursor.window(list(self.holders), budget):
            needed = required(key)
            holders = self.holders[key]
            if needed <= holders:
                purge.append(key)
                continue
            for member in sorted(needed - holders):
                if is_alive(member):
                    confirm.setdefault(member, []).append(key)
        return PurgePlan(purge, confirm)
