"""One node's versions: records by key, a sorted key index, digests, what LWW discarded.

The store decides nothing about replication; it keeps the indexes consistent with the
records. Both indexes are lazy, because keys change on every write while they are read
rarely: the sorted index is built at the first listing and kept up to date after, and
the digest trees fold the keys changed since their last read (measured: a third of a
replica's CPU per replicated write went to eager digest updates).

Sharded, anti-entropy with a peer compares only the keys both own: ``digest_for`` keeps
one scoped digest per peer, built once per ring epoch and updated by the same lazy fold.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, ItemsView, Iterable, KeysView

from rumordb.core.digest import Digest, fingerprint
from rumordb.core.hashing import key_hash
from rumordb.core.keyring import RESERVED_PREFIX
from rumordb.core.record import Discarded, Record, is_live

OwnersOf = Callable[[str], list[str]]


class Store:
    __slots__ = (
        "_digest", "_scoped", "_sorted_keys", "_stale", "discarded", "records", "reserved",
    )  # fmt: skip

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}
        self.discarded: dict[str, Discarded] = {}  # key -> last version LWW threw away
        self._digest = Digest()
        self._stale: set[str] = set()  # keys whose digest entries may be out of date
        self._sorted_keys: list[str] | None = None
        self._scoped: dict[str, tuple[int, Digest]] = {}  # peer -> (ring epoch, digest)
        self.reserved = 0  # records of the reserved keyspace: not user keys (core.keyring)

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: str) -> Record | None:
        return self.records.get(key)

    def items(self) -> ItemsView[str, Record]:
        return self.records.items()

    def keys(self) -> KeysView[str]:
        return self.records.keys()

    def put(self, key: str, record: Record) -> Record | None:
        """Store ``record`` as the version of ``key``; returns the one it replaced."""
        previous = self.records.get(key)
        if previous is None:
            if self._sorted_keys is not None:
                insort(self._sorted_keys, key)
            if key.startswith(RESERVED_PREFIX):
                self.reserved += 1
        self.records[key] = record
        self._stale.add(key)
        return previous

    def drop(self, key: str) -> None:
        if self.records.pop(key, None) is None:
            return
        if key.startswith(RESERVED_PREFIX):
            self.reserved -= 1
        if self._sorted_keys is not None:
            index = bisect_left(self._sorted_keys, key)
            if index < len(self._sorted_keys) and self._sorted_keys[index] == key:
                del self._sorted_keys[index]
        self._stale.add(key)

    def list_live(
        self, prefix: str, limit: int, after: str, now_hlc: int = 0, *, reserved: bool = False
    ) -> list[str]:
        """Live user keys in order, starting with ``prefix``, strictly after ``after``.

        The reserved keyspace (``core.keyring``) is no user's: it is listed only when asked
        for (``reserved``, by the node's own keyring, never for a client). ``now_hlc``:
        values expired by then are not live (0: no expiry is checked).
        """
        if self._sorted_keys is None:
            self._sorted_keys = sorted(self.records)
        keys = self._sorted_keys
        start = bisect_right(keys, after) if after else 0
        start = max(start, bisect_left(keys, prefix))
        found: list[str] = []
        for key in keys[start:]:
            if not key.startswith(prefix) or len(found) >= limit:
                break
            if not is_live(self.records[key], now_hlc or -1):
                continue
            if reserved or not key.startswith(RESERVED_PREFIX):
                found.append(key)
        return found

    # --- digests -----------------------------------------------------------------------
    def digest(self, owners_of: OwnersOf, self_id: str) -> Digest:
        """The digest tree over every key held, brought up to date."""
        self._refresh(owners_of, self_id)
        return self._digest

    def digest_for(self, peer: str, epoch: int, owners_of: OwnersOf, self_id: str) -> Digest:
        """A digest over the keys both ``self_id`` and ``peer`` own (ring ``epoch``)."""
        self._refresh(owners_of, self_id)
        cached = self._scoped.get(peer)
        if cached is not None and cached[0] == epoch:
            return cached[1]
        digest = Digest()
        for key, record in self.records.items():
            owners = owners_of(key)
            if self_id in owners and peer in owners:
                digest.set(key, fingerprint(record.hlc, record.origin, record.tombstone))
        self._scoped[peer] = (epoch, digest)
        return digest

    def forget_scoped(self) -> None:
        """The ring changed: every scoped digest covers the wrong keys now."""
        self._scoped.clear()

    def _refresh(self, owners_of: OwnersOf, self_id: str) -> None:
        """Fold the keys stored or dropped since the last read into the digest trees."""
        stale = self._stale
        if not stale:
            return
        self._stale = set()
        digest, records, scoped = self._digest, self.records, self._scoped
        for key in stale:
            khash = key_hash(key)
            record = records.get(key)
            if record is None:
                digest.remove(key, khash)
                for _, peer_digest in scoped.values():
                    peer_digest.remove(key, khash)
                continue
            fp = fingerprint(record.hlc, record.origin, record.tombstone)
            digest.set(key, fp, khash)
            if scoped:
                _fold_scoped(scoped, owners_of(key), self_id, key, fp, khash)


def _fold_scoped(
    scoped: dict[str, tuple[int, Digest]],
    owners: Iterable[str],
    self_id: str,
    key: str,
    fp: int,
    khash: int,
) -> None:
    owners = list(owners)
    if self_id not in owners:
        return
    for peer, (_, peer_digest) in scoped.items():
        if peer in owners:
            peer_digest.set(key, fp, khash)
