"""A restarted node's start-up load: the versions a driver streams back from its disk.

The node is built from what it needs before it serves anything (``Node(records=...)``:
the reserved keyspace, which the keyring's gate reads); the driver then feeds it the
rest, a slice at a time, through ``StartupLoad.load``, serving single-key reads in
between, and before any write, peer message or tick. Until the last slice is in, a read
of a key not loaded yet is answered from the version the driver read from disk itself
(``read_stored``): nothing else changes the store meanwhile, so memory and disk agree
on every key, and the stored version is as good as the loaded one would be.
"""

from __future__ import annotations

from collections.abc import Iterable

from rumordb.core import hlc
from rumordb.core.reads import Local
from rumordb.core.record import Record, is_live
from rumordb.core.replica import Replica


class StartupLoad:
    __slots__ = ("_replica",)

    def __init__(self, replica: Replica) -> None:
        self._replica = replica

    def load(self, records: Iterable[tuple[str, Record]]) -> int:
        """More versions read back from disk (keys not loaded yet), tracked as the
        replica tracks every loaded version (``Replica.load_all``); returns the keys
        held now."""
        self._replica.load_all(records)
        return len(self._replica.store)


def read_stored(record: Record | None, now: float, *, meta: bool = False) -> Local:
    """A read of ``record``, the version of a key not loaded yet that the driver read from
    its disk (None: none stored), as ``Node.read`` would answer it once loaded: by wall
    time ``now`` a tombstone or an expired value reads as absent; ``meta``: as stored
    (nothing was discarded by this run's LWW yet)."""
    if meta:
        return Local(record, None)
    return Local(record if is_live(record, hlc.pack(int(now * 1000))) else None)
