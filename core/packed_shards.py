"""A key -> packed record mapping past one dict's size: new keys in shards, no rehash of all.

Why. A Python dict grows by rehashing every entry into a table twice as large, in one
call. Measured on this VM, inserting 512 keys at a time: the growth at 700k keys took
82 ms, at 1.4M 172 ms, at 2.8M 402 ms. A 10M-key node loading its records at start had
a 1.1 s loop turn in it (``bench.scan_bench live``), and at 1M keys the replicas of a
loading node had 72-137 ms turns in it (``bench.volume_bench``). Sharded, a growth
rehashes one shard: 1/``SHARDS`` of the keys (~20 ms at 10M).

How. ``core.record_table.RecordTable`` starts with one dict: every small node, and every
simulated node, keeps it, and with it the insertion order of its keys. When the table
reaches ``SPLIT_KEYS`` keys, that dict becomes the *base* of a ``PackedShards``: the base
takes no new key from then on (its keys are overwritten or dropped in place, so it never
grows again), and new keys go to one of ``SHARDS`` dicts chosen by ``hash(key)``. That is
Python's string hash, salted per process: a split table iterates in an order that
differs between processes. Only live nodes hold that many keys (the simulator's nodes
hold thousands), and nothing there depends on the order. A lookup tries the key's shard,
then the base: a Python call and a second lookup, ~0.1-0.2 us, paid only by large tables.

The base was built by growing too: ``SPLIT_KEYS`` is 2**18, so its last growth was at
175k keys (~22 ms here), and the next one (at 350k keys, ~41 ms) never comes.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView
from itertools import chain

SPLIT_KEYS = 1 << 18  # keys in one dict before a table splits
SHARDS = 64  # a power of two: a shard is ``hash(key) & (SHARDS - 1)``
_MASK = SHARDS - 1
assert _MASK == 63, "add_new spells the mask out"


class PackedShards:
    """Key -> packed record bytes, in a base dict that no longer grows plus ``SHARDS``
    dicts of the keys stored since: the part of ``dict``'s interface the table uses."""

    __slots__ = ("_base", "_count", "_shards")

    def __init__(self, base: dict[str, bytes]) -> None:
        self._base = base
        self._shards: list[dict[str, bytes]] = [{} for _ in range(SHARDS)]
        self._count = 0  # keys in the shards

    def get(self, key: str, default: bytes | None = None) -> bytes | None:
        blob = self._shards[hash(key) & _MASK].get(key)
        return self._base.get(key, default) if blob is None else blob

    def __getitem__(self, key: str) -> bytes:
        blob = self._shards[hash(key) & _MASK].get(key)
        return self._base[key] if blob is None else blob

    def __contains__(self, key: object) -> bool:
        return key in self._shards[hash(key) & _MASK] or key in self._base

    def __setitem__(self, key: str, blob: bytes) -> None:
        base = self._base
        if key in base:  # held since before the split: overwritten where it is
            base[key] = blob
            return
        shard = self._shards[hash(key) & _MASK]
        if key not in shard:
            self._count += 1
        shard[key] = blob

    def add_new(self, fresh: dict[str, bytes]) -> None:
        """Store keys held nowhere yet (``RecordTable.put_new``'s contract): one shard
        lookup each, no look in the base."""
        shards = self._shards
        for key, blob in fresh.items():
            shards[hash(key) & 63][key] = blob  # 63: _MASK, as a constant
        self._count += len(fresh)

    def pop(self, key: str, default: bytes | None = None) -> bytes | None:
        blob = self._shards[hash(key) & _MASK].pop(key, None)
        if blob is None:
            return self._base.pop(key, default)
        self._count -= 1
        return blob

    def __len__(self) -> int:
        return len(self._base) + self._count

    def __iter__(self) -> Iterator[str]:
        return chain(self._base, *self._shards)

    def keys(self) -> KeysView[str]:
        return KeysView(self)

    def items(self) -> ItemsView[str, bytes]:
        return ItemsView(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (dict, PackedShards)):
            return NotImplemented
        return len(other) == len(self) and all(other.get(k) == v for k, v in self.items())

    __hash__ = None  # type: ignore[assignment]  # mutable
