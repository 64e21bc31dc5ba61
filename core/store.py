"""One node's versions: records by key, a sorted key index, digests, what LWW discarded.

The store decides nothing about replication; it keeps the indexes consistent with the
records. The sorted key index is a ``sortedcontainers.SortedList`` kept up to date on
every new or dropped key (O(log n), flat in practice), so a listing page costs
O(log n + page) and never copies or sorts the key list; a store of at most
``SMALL_INDEX`` keys keeps none and sorts its few keys for a listing, and a store that
folded no key shares one empty digest (both are most of an idle simulated node's
memory). The digest trees are lazy: they
fold the keys changed since their last read (measured: a third of a replica's CPU per
replicated write went to eager digest updates), each with the version its write
stashed (so a fold, which comes long after the write, does not look the record up and
decode it again: a cache miss per key in a large store), and the folding is bounded: ``fold``
does at most a budget of keys per call (the node calls it on every tick while a backlog
is left), and ``ready_digest``/``ready_digest_for`` answer None while more than one
budget is pending, so a restart with a million stale keys never stalls the driver.

Sharded, anti-entropy with a peer compares only the keys both own: ``digest_for`` keeps
one scoped digest per peer, built once per ring epoch (in slices, from a snapshot of the
keys) and updated by the same fold.

Memory. Records stay in memory (values included): the design keeps every read a dict
lookup and the core free of I/O; values on disk behind a bounded cache would bound RSS
better but put disk reads on the read path of the core's driver, a larger change.
Per key the store holds the key string, one packed bytes object (``core.record_table``:
the value plus ~30 B of metadata), a dict slot and a SortedList slot; the digest holds a
slot in its leaf's tuple and 16 bytes of entry and key hash (``core.digest``).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Sequence
from itertools import takewhile
from operator import methodcaller

from sortedcontainers import SortedList

from rumordb.core.digest import KEYS_PER_LEAF, Digest, stamp_entry_hashes
from rumordb.core.hashing import key_hashes
from rumordb.core.key_index import add_new
from rumordb.core.keyring import RESERVED_PREFIX
from rumordb.core.record import Discarded, Record
from rumordb.core.record_table import RecordTable

OwnersOf = Callable[[str], list[str]]
Stamp = tuple[int, str, bool]  # (hlc, origin, tombstone): what a fingerprint is made of

# Below this many keys a listing sorts the keys it needs; above, the sorted index is kept
# (an empty SortedList is ~700 B: a tenth of a node of a million-node simulation).
SMALL_INDEX = 32
# What a store that folded no key yet answers with: shared and never folded into (a
# store's own Digest is made when the first key is folded).
_EMPTY_DIGEST = Digest()


class Store:
    __slots__ = (
        "_building",
        "_digest",
        "_loaded",
        "_scoped",
        "_sorted_keys",
        "_stale",
        "discarded",
        "records",
        "reserved",
    )

    def __init__(self) -> None:
        self.records = RecordTable()
        self.discarded: dict[str, Discarded] = {}  # key -> last version LWW threw away
        self._digest: Digest | None = None  # made by the first fold (_EMPTY_DIGEST before)
        # Keys whose digest entries may be out of date, in insertion order (a dict, not a
        # set): a set's order follows the string hash seed, so folds, digests and the
        # simulator's traces would differ between processes. Each with what names its
        # stored version (hlc, origin, tombstone), stashed by its write: a tuple of the
        # record's own objects, cheaper to make than the fingerprint. None: a key dropped
        # has no version (its entry goes); the fold looks it up for a key loaded or stashed
        # by none. One dict for both: a second one was ~40 B a key during an ingest, 64 B
        # of every idle simulated node, and a second insert per write.
        self._stale: dict[str, Stamp | None] = {}
        # Keys read back from disk and not folded yet, in load order: a list, as a dict of
        # a restart's million keys grew in single resizes of ~50 ms (measured at 699k keys,
        # the store's own table resizing in the same call: 94-106 ms of CPU, one loop turn).
        self._loaded: list[str] = []
        self._sorted_keys: SortedList[str] | None = None  # kept above SMALL_INDEX keys
        self._scoped: dict[str, tuple[int, Digest]] = {}  # peer -> (ring epoch, digest)
        self._building: dict[str, list[str]] = {}  # peer -> keys not yet in its new digest
        self.reserved = 0  # records of the reserved keyspace: not user keys (core.keyring)

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: str) -> Record | None:
        return self.records.get(key)

    def items(self) -> ItemsView[str, Record]:
        """Every (key, record), each decoded as it is reached."""
        return self.records.items()

    def keys(self) -> KeysView[str]:
        return self.records.keys()

    def load(self, items: Iterable[tuple[str, Record]]) -> int:
        """Records read back from disk at start, in bulk, all at once or a slice per call
        (keys not held yet): one index update per call, no digest work (every key is
        stale; ``fold`` works them off in slices). Returns the keys read."""
        records = self.records
        keys: list[str] = []
        for key, record in items:
            if records.put(key, record):  # a key that came twice is indexed once
                keys.append(key)
        self._index(keys)
        self._loaded.extend(keys)
        self.reserved += sum(key.startswith(RESERVED_PREFIX) for key in keys)
        return len(keys)

    def put(self, key: str, record: Record) -> Record | None:
        """Store ``record`` as the version of ``key``; returns the one it replaced."""
        previous = self.records.replace(key, record)
        self._stored(key, record, previous is None)
        return previous

    def put_over(self, key: str, record: Record, new: bool) -> None:
        """``put`` when the caller knows the version it replaces (``new``: none): the old
        packed record is not decoded again."""
        self.records.put(key, record)
        self._stored(key, record, new)

    def _stored(self, key: str, record: Record, new: bool) -> None:
        if new:
            if self._sorted_keys is not None:
                self._sorted_keys.add(key)
            else:
                self._index((key,))
            if key.startswith(RESERVED_PREFIX):
                self.reserved += 1
        self._stale[key] = (record.hlc, record.origin, record.tombstone)

    def put_new(self, fresh: dict[str, Record]) -> None:
        """``put`` of versions of keys NOT held yet, in bulk (a batch or push of new keys):
        one update of each index instead of one call per key."""
        self.records.put_new(fresh)
        self._index(fresh)
        self._stale.update(
            (key, (record.hlc, record.origin, record.tombstone)) for key, record in fresh.items()
        )
        self.reserved += sum(key.startswith(RESERVED_PREFIX) for key in fresh)

    def drop(self, key: str) -> None:
        if not self.records.pop(key):
            return
        if key.startswith(RESERVED_PREFIX):
            self.reserved -= 1
        if self._sorted_keys is not None:
            self._sorted_keys.discard(key)
        self._stale[key] = None

    def list_live(
        self, prefix: str, limit: int, after: str, now_hlc: int = 0, *, reserved: bool = False
    ) -> list[str]:
        """Live user keys in order, starting with ``prefix``, strictly after ``after``.

        The reserved keyspace (``core.keyring``) is no user's: it is listed only when asked
        for (``reserved``, by the node's own keyring, never for a client). ``now_hlc``:
        values expired by then are not live (0: no expiry is checked).
        """
        if after and after >= prefix:
            keys = self._sorted_from(after, inclusive=False)
        else:
            keys = self._sorted_from(prefix, inclusive=True)
        found: list[str] = []
        prefixed = takewhile(methodcaller("startswith", prefix), keys)  # in order: the run
        for key in self.records.live_of(prefixed, now_hlc or -1):
            if len(found) >= limit:
                break
            if reserved or not key.startswith(RESERVED_PREFIX):
                found.append(key)
        return found

    def _index(self, added: Iterable[str]) -> None:
        """Keys just stored (not held before) enter the sorted index, made once needed."""
        if self._sorted_keys is not None:
            add_new(self._sorted_keys, added)
        elif len(self.records) > SMALL_INDEX:
            self._sorted_keys = SortedList(self.records.keys())

    def _sorted_from(self, low: str, *, inclusive: bool) -> Iterator[str]:
        """Every key from ``low`` on (``inclusive``: ``low`` too), in order."""
        if self._sorted_keys is not None:
            found: Iterator[str] = self._sorted_keys.irange(low, inclusive=(inclusive, True))
            return found
        keys = sorted(self.records.keys())  # a small store: sorted on the fly
        start = (bisect.bisect_left if inclusive else bisect.bisect_right)(keys, low)
        return iter(keys[start:])

    # --- digests -----------------------------------------------------------------------
    def digest(self, owners_of: OwnersOf, self_id: str) -> Digest:
        """The digest tree over every key held, brought up to date (unbounded work)."""
        self.fold(None, owners_of, self_id)
        return _EMPTY_DIGEST if self._digest is None else self._digest

    def _own_digest(self) -> Digest:
        if self._digest is None:
            self._digest = Digest()
        return self._digest

    def digest_for(self, peer: str, epoch: int, owners_of: OwnersOf, self_id: str) -> Digest:
        """A digest over the keys both ``self_id`` and ``peer`` own (ring ``epoch``)."""
        digest = self.ready_digest_for(peer, epoch, owners_of, self_id, None)
        assert digest is not None, "an unbounded fold always completes"
        return digest

    def ready_digest(self, owners_of: OwnersOf, self_id: str, budget: int) -> Digest | None:
        """The whole digest if at most ``budget`` keys are left to fold, else None."""
        if len(self._stale) + len(self._loaded) > budget:
            return None
        return self.digest(owners_of, self_id)

    def ready_digest_for(
        self, peer: str, epoch: int, owners_of: OwnersOf, self_id: str, budget: int | None
    ) -> Digest | None:
        """The scoped digest for ``peer`` if at most ``budget`` keys are left to fold."""
        cached = self._scoped.get(peer)
        if cached is None or cached[0] != epoch:
            # Built in slices by ``fold``: a snapshot of the keys to visit (a list of
            # references, copied in C), while writes keep arriving through ``_stale``.
            self._scoped[peer] = (epoch, Digest())
            self._building[peer] = list(self.records)
        left = len(self._stale) + len(self._loaded) + len(self._building.get(peer, ()))
        if budget is not None and left > budget:
            return None
        self.fold(None, owners_of, self_id)
        return self._scoped[peer][1]

    def pending_folds(self) -> int:
        """Keys still to fold into some digest, or to regroup in one (0: all done)."""
        # Asked on every tick and every time a driver looks for the next busy one: the
        # common case (nothing built, no scoped digest) is two lengths and two tests.
        pending = len(self._stale) + len(self._loaded)
        if self._building:
            pending += sum(len(keys) for keys in self._building.values())
        if self._digest is not None:
            pending += self._digest.regrouping() * KEYS_PER_LEAF
        if self._scoped:
            for _, digest in self._scoped.values():
                pending += digest.regrouping() * KEYS_PER_LEAF
        return pending

    def _digests(self) -> list[Digest]:
        scoped = [digest for _, digest in self._scoped.values()]
        return scoped if self._digest is None else [self._digest, *scoped]

    def forget_scoped(self) -> None:
        """The ring changed: every scoped digest covers the wrong keys now."""
        self._scoped.clear()
        self._building.clear()

    def fold(self, budget: int | None, owners_of: OwnersOf, self_id: str) -> int:
        """Fold at most ``budget`` keys (None: all) into the digests; returns what is left.

        The driver calls this on every tick with a bounded budget, so a restart with
        millions of stale keys, or a new ring epoch, never stalls its event loop.
        """
        stale, loaded = self._stale, self._loaded
        if budget is not None and len(stale) + len(loaded) > budget:
            # A backlog (a restart): reshape the tree now, not at each doubling midway.
            self._own_digest().reserve(len(self.records))
        count = len(stale) if budget is None else min(budget, len(stale))
        if count == len(stale) and count:  # all of them (an ingest's fold): in one list
            self._stale = {}  # a fresh dict: an emptied one keeps its table (~80 B/key)
            keys, stashes = list(reversed(stale)), list(reversed(stale.values()))  # newest first
            self._fold_stale(keys, stashes, owners_of, self_id)
        elif count:
            pop = stale.popitem  # newest first: O(1), and the same order in every process
            popped = [pop() for _ in range(count)]
            keys, stashes = [key for key, _ in popped], [stash for _, stash in popped]
            self._fold_stale(keys, stashes, owners_of, self_id)
        left = None if budget is None else budget - count
        take = len(loaded) if left is None else min(left, len(loaded))
        if take:  # then the loaded keys, newest first too (after every write: they are older)
            self._fold_stale(loaded[len(loaded) - take :][::-1], None, owners_of, self_id)
            del loaded[len(loaded) - take :]
            if not loaded:
                self._loaded = []
            left = None if left is None else left - take
        # A regroup after a doubling, in slices of the driver's budget only: a digest in
        # mid-regroup answers like a regrouped one (``Digest.regroup``), so no read waits.
        for digest in self._digests():
            if digest.regrouping() and left is not None and left > 0:
                split = max(1, left // KEYS_PER_LEAF)
                digest.regroup(split)
                left -= split * KEYS_PER_LEAF
        for peer, keys in list(self._building.items()):
            if left is not None and left <= 0:
                break
            take = len(keys) if left is None else min(left, len(keys))
            self._fold_into(self._scoped[peer][1], peer, keys[len(keys) - take :], owners_of, self_id)  # fmt: skip
            del keys[len(keys) - take :]
            if not keys:
                del self._building[peer]
            if left is not None:
                left -= take
        return self.pending_folds()

    def _fold_stale(
        self,
        stale: list[str],
        stashes: list[Stamp | None] | None,
        owners_of: OwnersOf,
        self_id: str,
    ) -> None:
        """Fold the keys stored or dropped since the last fold into every digest, as one
        batch: key and entry hashes computed in bulk, once for all the digests.
        ``stashes``: each key's stashed version (None: loaded keys, none stashed)."""
        version_of = self.records.version
        # A key loaded since the last fold has no stash (the store is read); one dropped
        # has no version either: its entry goes (None), from the scoped digests too.
        if stashes is None:
            versions = [version_of(key) for key in stale]
        else:
            versions = [stash or version_of(key) for key, stash in zip(stale, stashes, strict=True)]
        khashes = key_hashes(stale)
        stamps = [_NO_STAMP if version is None else version for version in versions]
        ehashes: Sequence[int | None] = stamp_entry_hashes(khashes, stamps)
        if None in versions:
            ehashes = [None if v is None else e for v, e in zip(versions, ehashes, strict=True)]
        self._own_digest().apply(stale, khashes, ehashes)
        if self._scoped:
            self._fold_scoped(stale, khashes, ehashes, owners_of, self_id)

    def _fold_scoped(
        self,
        keys: list[str],
        khashes: list[int],
        ehashes: Sequence[int | None],
        owners_of: OwnersOf,
        self_id: str,
    ) -> None:
        """The same batch into each peer's digest: the keys both nodes own, and every
        removal (a dropped key's owners no longer matter)."""
        chosen: dict[str, list[int]] = {peer: [] for peer in self._scoped}
        for position, (key, ehash) in enumerate(zip(keys, ehashes, strict=True)):
            if ehash is None:
                for positions in chosen.values():
                    positions.append(position)
                continue
            owners = owners_of(key)
            if self_id in owners:
                for peer in owners:
                    if peer in chosen:
                        chosen[peer].append(position)
        for peer, positions in chosen.items():
            picked_keys = [keys[i] for i in positions]
            picked_khashes = [khashes[i] for i in positions]
            self._scoped[peer][1].apply(
                picked_keys, picked_khashes, [ehashes[i] for i in positions]
            )

    def _fold_into(
        self, digest: Digest, peer: str, keys: list[str], owners_of: OwnersOf, self_id: str
    ) -> None:
        """One slice of a scoped digest's first build (keys dropped since are skipped)."""
        version_of = self.records.version
        held: list[str] = []
        stamps: list[Stamp] = []
        for key in keys:
            version = version_of(key)
            if version is None:
                continue
            owners = owners_of(key)
            if self_id in owners and peer in owners:
                held.append(key)
                stamps.append(version)
        khashes = key_hashes(held)
        digest.apply(held, khashes, stamp_entry_hashes(khashes, stamps))


_NO_STAMP: Stamp = (0, "", False)  # stands in for a dropped key's version (never applied)
