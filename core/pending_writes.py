"""Client writes accepted but not yet flushed, and what each one replaced.

A driver persists a batch of client writes, then calls ``flush`` (push them) or, if the
commit failed, ``abort``: nothing of a write that is not durable may stay to be read,
gossiped or synced, so each key goes back to the version it had before the batch (its
first write in the batch recorded it). A key whose version a peer replaced meanwhile
keeps the peer's version: that one is not ours to undo.
"""

from __future__ import annotations

from collections.abc import Mapping

from rumordb.core.record import Record


class PendingWrites:
    __slots__ = ("_prior", "accepted")

    def __init__(self) -> None:
        self.accepted: dict[str, Record] = {}  # key -> the latest accepted version
        self._prior: dict[str, Record | None] = {}  # key -> its version before the batch

    def accept(self, key: str, record: Record, prior: Record | None) -> None:
        self.accepted[key] = record
        if key not in self._prior:
            self._prior[key] = prior

    def take(self) -> dict[str, Record]:
        """Flushed: the writes to push; they are durable, so nothing is left to undo."""
        self._prior = {}
        accepted, self.accepted = self.accepted, {}
        return accepted

    def take_undo(self, stored: Mapping[str, Record]) -> list[tuple[str, Record | None]]:
        """Aborted: each (key, prior version) to restore, given what is ``stored`` now."""
        prior, self._prior = self._prior, {}
        accepted, self.accepted = self.accepted, {}
        undo: list[tuple[str, Record | None]] = []
        for key, before in prior.items():
            written = accepted.get(key)
            # equal, not identical: the store may hold a copy sharing its clock (Store._shared)
            if written is not None and stored.get(key) == written:
                undo.append((key, before))
        return undo
