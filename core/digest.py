"""The digest tree that anti-entropy compares: Merkle-style buckets over key hashes.

Theory of operation. Every key lands in a leaf chosen by the top ``leaf_bits`` bits of
its 64-bit hash. A bucket is named by a *width* (how many top bits it fixes) and an index;
its hash is the XOR of the entry hashes below it, where an entry hash mixes the key hash
with its version's fingerprint. XOR makes every update O(depth): the change ``old ^ new``
is folded into each maintained ancestor, no rehashing of siblings. Levels are sparse
dicts (an empty bucket is 0 and not stored), so a node with a handful of keys costs a
handful of entries — the simulator runs thousands of them.

The shape adapts to the number of keys: ``leaf_bits`` is chosen so that a leaf holds
about ``KEYS_PER_LEAF`` keys (at least 2**12 leaves, at most 2**24), and the maintained
widths are 0, 4, 8, ... below it plus ``leaf_bits`` itself (fanout 16, the last step
possibly smaller). When the key count doubles past the shape (or falls to a quarter of
it: hysteresis, so a key count on a boundary does not flap) the leaves are regrouped
from the stored entry hashes — no rehashing. A bucket's hash depends only on the
content, never on the shape, so two nodes of different shapes still compare: a session
descends the widths of the *finer* shape (``DigestStep.leaf_bits`` carries it), and a
node asked for a width finer than its own leaves computes those buckets from its leaf
entries on demand.

Two replicas compare top-down (``core.anti_entropy``): roots first, then only the children
of buckets that differ, then the entries of the differing leaves. The bytes exchanged
grow with the number of differing keys, not with the size of the data set.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from rumordb.core.hashing import MASK64, hash64, key_hash, mix64

STEP_BITS = 4  # maintained widths are 4 bits apart (fanout 16) down to the leaves
MIN_LEAF_BITS = 12
MAX_LEAF_BITS = 24
KEYS_PER_LEAF = 4  # few keys per leaf: a differing leaf ships few entries

Entry = tuple[int, str]  # (entry hash, key), as ``entries`` lists them


def fingerprint(hlc: int, origin: str, tombstone: bool) -> int:
    """A version's identity as 64 bits: (hlc, origin) names a write uniquely."""
    return mix64(hlc & MASK64, _origin_hash(origin) ^ int(tombstone))


@lru_cache(maxsize=4096)
def _origin_hash(origin: str) -> int:
    return hash64(origin.encode()) & ~1  # the low bit carries the tombstone flag


def leaf_bits_for(keys: int, min_leaf_bits: int = MIN_LEAF_BITS) -> int:
    """The leaf width that gives about ``KEYS_PER_LEAF`` keys per leaf."""
    return max(min_leaf_bits, min(MAX_LEAF_BITS, (keys // KEYS_PER_LEAF).bit_length()))


def widths(leaf_bits: int) -> tuple[int, ...]:
    """The widths a tree of ``leaf_bits`` maintains, root (0) first, leaves last."""
    return (*range(0, leaf_bits, STEP_BITS), leaf_bits)


def next_width(width: int, leaf_bits: int) -> int | None:
    """The width below ``width`` in a descent to ``leaf_bits`` (None: it is the leaves)."""
    return min(width + STEP_BITS, leaf_bits) if width < leaf_bits else None


def children(width: int, index: int, below: int) -> range:
    """The indices at width ``below`` under bucket ``index`` of width ``width``."""
    shift = below - width
    return range(index << shift, (index + 1) << shift)


class Digest:
    """An incrementally maintained digest tree over (key, version fingerprint) entries."""

    __slots__ = ("_count", "_folds", "_leaves", "_levels", "_min_leaf_bits", "leaf_bits")

    def __init__(self, min_leaf_bits: int = MIN_LEAF_BITS) -> None:
        self._min_leaf_bits = min_leaf_bits
        self._count = 0
        # _leaves[leaf][key] = entry hash; a leaf is an index at width leaf_bits. Keyed by
        # the key itself (already held by the store): no key-hash int and no tuple per
        # key (92 B less); a key hash is recomputed when a leaf is listed (few keys).
        self._leaves: dict[int, dict[str, int]] = {}
        self._shape(min_leaf_bits)

    def _shape(self, leaf_bits: int) -> None:
        """Set the maintained widths and rebuild levels and leaves from the entries."""
        self.leaf_bits = leaf_bits
        # _levels[width][i]: XOR of entry hashes under bucket i of that width
        self._levels: dict[int, dict[int, int]] = {w: {} for w in widths(leaf_bits)}
        self._folds = tuple((nodes, 64 - w) for w, nodes in self._levels.items())
        old, self._leaves = self._leaves, {}
        leaf_shift = 64 - leaf_bits
        for leaf in old.values():
            for key, ehash in leaf.items():
                self._leaves.setdefault(key_hash(key) >> leaf_shift, {})[key] = ehash
        for index, leaf in self._leaves.items():
            value = 0
            for ehash in leaf.values():
                value ^= ehash
            if value:
                self._levels[leaf_bits][index] = value
        for width in reversed(widths(leaf_bits)[:-1]):
            self._levels[width] = _coarsen(self._levels, width, leaf_bits)
        self._folds = tuple((nodes, 64 - w) for w, nodes in self._levels.items())

    def reserve(self, keys: int) -> None:
        """Take the shape for ``keys`` keys now, while it is cheap (before a bulk fold)."""
        leaf_bits = leaf_bits_for(keys, self._min_leaf_bits)
        if leaf_bits > self.leaf_bits:
            self._shape(leaf_bits)

    @classmethod
    def of(cls, entries: Iterable[tuple[str, int]], min_leaf_bits: int = MIN_LEAF_BITS) -> Digest:
        digest = cls(min_leaf_bits)
        for key, fp in entries:
            digest.set(key, fp)
        return digest

    def set(self, key: str, fp: int, khash: int | None = None) -> None:
        """Record that ``key`` now holds the version with fingerprint ``fp``."""
        if khash is None:
            khash = key_hash(key)
        leaf_index = khash >> (64 - self.leaf_bits)
        leaf = self._leaves.get(leaf_index)
        if leaf is None:
            leaf = self._leaves[leaf_index] = {}
        old = leaf.get(key)
        ehash = mix64(khash, fp)
        delta = ehash
        if old is not None:
            if old == ehash:
                return
            delta ^= old
        leaf[key] = ehash
        self._fold(khash, delta)
        if old is None:
            self._count += 1
            if self._count >= KEYS_PER_LEAF << self.leaf_bits and self.leaf_bits < MAX_LEAF_BITS:
                self._shape(leaf_bits_for(self._count, self._min_leaf_bits))

    def remove(self, key: str, khash: int | None = None) -> None:
        if khash is None:
            khash = key_hash(key)
        leaf_index = khash >> (64 - self.leaf_bits)
        leaf = self._leaves.get(leaf_index)
        if leaf is None or key not in leaf:
            return
        ehash = leaf.pop(key)
        if not leaf:
            del self._leaves[leaf_index]
        self._fold(khash, ehash)
        self._count -= 1
        if self.leaf_bits > self._min_leaf_bits and self._count < KEYS_PER_LEAF << (self.leaf_bits - 2):  # fmt: skip
            self._shape(leaf_bits_for(self._count, self._min_leaf_bits))

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

    def hashes(self, width: int, indices: Iterable[int]) -> dict[int, int]:
        """The non-zero hashes among ``indices`` at ``width`` (absent means empty)."""
        nodes = self._levels.get(width)
        if nodes is not None:
            return {i: nodes[i] for i in indices if i in nodes}
        found: dict[int, int] = {}
        for i in indices:
            value = 0
            for ehash, _ in self.entries(width, i).values():
                value ^= ehash
            if value:
                found[i] = value
        return found

    def differing(self, width: int, theirs: dict[int, int], indices: Iterable[int]) -> list[int]:
        indices = list(indices)
        mine = self.hashes(width, indices)
        return [i for i in indices if mine.get(i, 0) != theirs.get(i, 0)]

    def entries(self, width: int, index: int) -> dict[int, Entry]:
        """The entries (key hash -> (entry hash, key)) under bucket ``index`` of ``width``."""
        if width >= self.leaf_bits:
            leaves = [self._leaves.get(index >> (width - self.leaf_bits), {})]
        else:
            leaves = [self._leaves.get(i, {}) for i in children(width, index, self.leaf_bits)]
        shift = 64 - width
        found: dict[int, Entry] = {}
        for leaf in leaves:
            for key, ehash in leaf.items():
                khash = key_hash(key)
                if khash >> shift == index:
                    found[khash] = (ehash, key)
        return found

    def key_of(self, khash: int) -> str | None:
        for key in self._leaves.get(khash >> (64 - self.leaf_bits), {}):
            if key_hash(key) == khash:
                return key
        return None

    def __len__(self) -> int:
        return self._count


def _coarsen(levels: dict[int, dict[int, int]], width: int, leaf_bits: int) -> dict[int, int]:
    """The level at ``width`` folded from the next maintained width below it."""
    below = next_width(width, leaf_bits)
    assert below is not None, "only levels above the leaves are folded"
    shift = below - width
    nodes: dict[int, int] = {}
    for index, value in levels[below].items():
        parent = index >> shift
        nodes[parent] = nodes.get(parent, 0) ^ value
    return {i: v for i, v in nodes.items() if v}


def diff_entries(mine: dict[int, Entry], theirs: dict[int, int]) -> tuple[list[int], list[int]]:
    """Key hashes whose versions differ: (ones I hold, ones only they hold)."""
    mine_differs = [kh for kh, (eh, _) in mine.items() if theirs.get(kh) != eh]
    only_theirs = [kh for kh in theirs if kh not in mine]
    return mine_differs, only_theirs
