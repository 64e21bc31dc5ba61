"""A large digest's leaf table: leaves in 64 dicts by index, so no growth rehashes them all.

Why. A dict grows by rehashing every entry in one call, and a digest's leaf table grows
with the keys: folding 4M keys in process, the fold slices that grew it past 175k, 350k
and 700k leaves took 50, 74 and 138 ms (a slice is ~15 ms otherwise), and a 10M-key node
had 512 ms loop turns in ``Digest.apply`` while it folded after a restart
(``bench.scan_bench live``). In shards, a growth rehashes 1/64 of the leaves.

When. ``core.digest`` takes this table for a shape of more than ``SPLIT_LEAVES`` leaves
(``2**leaf_bits``): at most a dict's worth of growth stalls before (~20 ms at 131k).
Small digests (every simulated node's, every small store's) keep one dict. The shard of
a leaf is its index's low bits: an int's hash is itself, so nothing depends on the
process's hash salt. Iteration goes shard by shard: the digest's results never depend
on the order of its leaves (a bucket's hash is an XOR), only the order in which a
regroup splits them. Cost: a Python call a lookup, ~0.1-0.2 us, on large digests only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Generic, TypeVar

SPLIT_LEAVES = 1 << 17  # a shape of more leaves than this takes a sharded table
_MASK = 63  # 64 shards

V = TypeVar("V")


class LeafShards(Generic[V]):
    """Leaf index -> leaf, in 64 dicts: the part of ``dict``'s interface the digest uses."""

    __slots__ = ("_shards",)

    def __init__(self, items: Iterable[tuple[int, V]] = ()) -> None:
        self._shards: list[dict[int, V]] = [{} for _ in range(_MASK + 1)]
        shards = self._shards
        for index, leaf in items:
            shards[index & _MASK][index] = leaf

    def get(self, index: int, default: V | None = None) -> V | None:
        return self._shards[index & 63].get(index, default)

    def __getitem__(self, index: int) -> V:
        return self._shards[index & 63][index]

    def __setitem__(self, index: int, leaf: V) -> None:
        self._shards[index & 63][index] = leaf

    def __delitem__(self, index: int) -> None:
        del self._shards[index & 63][index]

    def pop(self, index: int, default: V | None = None) -> V | None:
        return self._shards[index & 63].pop(index, default)

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and index in self._shards[index & 63]

    def __len__(self) -> int:
        return sum(map(len, self._shards))

    def __bool__(self) -> bool:
        return any(self._shards)

    def __iter__(self) -> Iterator[int]:
        return chain.from_iterable(self._shards)

    def values(self) -> Iterator[V]:
        return chain.from_iterable(shard.values() for shard in self._shards)

    def items(self) -> Iterator[tuple[int, V]]:
        return chain.from_iterable(shard.items() for shard in self._shards)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LeafShards):
            return self._shards == other._shards
        if isinstance(other, dict):
            return len(other) == len(self) and all(other.get(i) == v for i, v in self.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable
