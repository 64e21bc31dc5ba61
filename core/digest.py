"""The digest tree that anti-entropy compares: Merkle-style buckets over key hashes.

Theory of operation. Every key lands in a leaf chosen by the top bits of its 64-bit
hash; the tree has ``FANOUT`` children per node and ``DEPTH`` levels below the root
(16 and 3: 4 096 leaves). A node's hash is the XOR of the entry hashes below it, where an
entry hash mixes the key hash with its version's fingerprint. XOR makes every update
O(depth): the change ``old ^ new`` is folded into each ancestor, no rehashing of
siblings. Levels are sparse dicts (an empty bucket is 0 and not stored), so a node with a
handful of keys costs a handful of entries — the simulator runs thousands of them.

Two replicas compare top-down (``core.anti_entropy``): roots first, then only the children
of buckets that differ, then the entries of the differing leaves. The bytes exchanged
grow with the number of differing keys, not with the size of the data set.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from rumordb.core.hashing import MASK64, hash64, key_hash, mix64

FANOUT_BITS = 4
FANOUT = 1 << FANOUT_BITS
DEPTH = 3
LEAF_BITS = FANOUT_BITS * DEPTH


def fingerprint(hlc: int, origin: str, tombstone: bool) -> int:
    """A version's identity as 64 bits: (hlc, origin) names a write uniquely."""
    return mix64(hlc & MASK64, _origin_hash(origin) ^ int(tombstone))


@lru_cache(maxsize=4096)
def _origin_hash(origin: str) -> int:
    return hash64(origin.encode()) & ~1  # the low bit carries the tombstone flag


_SHIFTS = tuple(64 - FANOUT_BITS * level for level in range(DEPTH + 1))
_LEAF_SHIFT = _SHIFTS[DEPTH]


def bucket(khash: int, level: int) -> int:
    """The index of the level-``level`` node that holds ``khash`` (level 0 is the root)."""
    return khash >> (64 - FANOUT_BITS * level) if level else 0


def children(index: int) -> range:
    return range(index * FANOUT, index * FANOUT + FANOUT)


class Digest:
    """An incrementally maintained digest tree over (key, version fingerprint) entries."""

    __slots__ = ("_folds", "_leaves", "_levels")

    def __init__(self) -> None:
        # _levels[l][i]: XOR of entry hashes under node i of level l (l = 0 .. DEPTH)
        self._levels: list[dict[int, int]] = [{} for _ in range(DEPTH + 1)]
        # (level dict, shift) pairs: the root's index is khash >> 64, i.e. always 0
        self._folds = tuple(zip(self._levels, _SHIFTS, strict=True))
        # _leaves[leaf][khash] = (fingerprint, key)
        self._leaves: dict[int, dict[int, tuple[int, str]]] = {}

    @classmethod
    def of(cls, entries: Iterable[tuple[str, int]]) -> Digest:
        digest = cls()
        for key, fp in entries:
            digest.set(key, fp)
        return digest

    def set(self, key: str, fp: int, khash: int | None = None) -> None:
        """Record that ``key`` now holds the version with fingerprint ``fp``."""
        if khash is None:
            khash = key_hash(key)
        leaves = self._leaves
        leaf_index = khash >> _LEAF_SHIFT
        leaf = leaves.get(leaf_index)
        if leaf is None:
            leaf = leaves[leaf_index] = {}
        old = leaf.get(khash)
        delta = mix64(khash, fp)
        if old is not None:
            if old[0] == fp:
                return
            delta ^= mix64(khash, old[0])
        leaf[khash] = (fp, key)
        self._fold(khash, delta)

    def remove(self, key: str, khash: int | None = None) -> None:
        if khash is None:
            khash = key_hash(key)
        leaf_index = khash >> _LEAF_SHIFT
        leaf = self._leaves.get(leaf_index)
        if leaf is None or khash not in leaf:
            return
        fp, _ = leaf.pop(khash)
        if not leaf:
            del self._leaves[leaf_index]
        self._fold(khash, mix64(khash, fp))

    def _fold(self, khash: int, delta: int) -> None:
        """XOR ``delta`` into the root and every ancestor of ``khash``'s leaf (hot path)."""
        for nodes, shift in self._folds:
            index = khash >> shift
            value = nodes.get(index, 0) ^ delta
            if value:
                nodes[index] = value
            else:
                del nodes[index]

    @property
    def root(self) -> int:
        return self._levels[0].get(0, 0)

    def node(self, level: int, index: int) -> int:
        return self._levels[level].get(index, 0)

    def hashes(self, level: int, indices: Iterable[int]) -> dict[int, int]:
        """The non-zero hashes among ``indices`` at ``level`` (absent means empty)."""
        nodes = self._levels[level]
        return {i: nodes[i] for i in indices if i in nodes}

    def differing(self, level: int, theirs: dict[int, int], indices: Iterable[int]) -> list[int]:
        nodes = self._levels[level]
        return [i for i in indices if nodes.get(i, 0) != theirs.get(i, 0)]

    def leaf(self, index: int) -> dict[int, tuple[int, str]]:
        return self._leaves.get(index, {})

    def key_of(self, khash: int) -> str | None:
        entry = self._leaves.get(bucket(khash, DEPTH), {}).get(khash)
        return entry[1] if entry else None

    def __len__(self) -> int:
        return sum(len(leaf) for leaf in self._leaves.values())


def diff_entries(
    mine: dict[int, tuple[int, str]], theirs: dict[int, int]
) -> tuple[list[int], list[int]]:
    """Key hashes whose versions differ: (ones I hold, ones only they hold)."""
    mine_differs = [kh for kh, (fp, _) in mine.items() if theirs.get(kh) != fp]
    only_theirs = [kh for kh in theirs if kh not in mine]
    return mine_differs, only_theirs
