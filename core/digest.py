"""The digest tree that anti-entropy compares: Merkle-style buckets over key hashes.

Theory of operation. Every key lands in a leaf chosen by the top ``leaf_bits`` bits of
its 64-bit hash. A bucket is named by a *width* (how many top bits it fixes) and an index;
its hash is the XOR of the entry hashes below it, where an entry hash mixes the key hash
with its version's fingerprint. XOR makes every update cheap: the change ``old ^ new``
is folded into each maintained ancestor, no rehashing of siblings. The leaves are a
sparse dict (an empty leaf is not stored), so a node with a handful of keys costs a
handful of leaves — the simulator runs thousands of them. The levels above the leaves
are dense arrays of 8-byte buckets (2**width each; ~2 KB in all for the smallest shape):
a level there holds 4 or more keys per bucket, where a dict of Python ints cost ~100 B
a bucket and a hash lookup with a cache miss or three per update at 1M keys. A tree of
fewer than ``DENSE_KEYS`` keys keeps no levels at all (a read XORs its few leaves).

The ancestors are lazy: a write changes its leaf and XORs its change into a small dict
of dirty leaves; the levels above catch up, finest first and each touched bucket once,
when a level is read (the root, ``hashes`` above the leaves) or when more than
``DIRTY_LEAVES`` leaves are dirty (so a read never catches up more than that: ~1-2 ms).
Measured at 1M keys: folding into 5 levels on every write was a third of a fold's cost,
and grew with the depth. ``set_many`` and ``apply`` take a batch: key hashes and entry
hashes are computed for all its keys at once (``core.hashing``'s bulk forms).

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

import struct
from array import array
from collections.abc import Iterable, Sequence
from functools import lru_cache

from rumordb.core.hashing import MASK64, hash64, key_hashes, mix64, mix64_many, mix64_nested
from rumordb.core.leaf_shards import SPLIT_LEAVES, LeafShards

STEP_BITS = 4  # maintained widths are 4 bits apart (fanout 16) down to the leaves
MIN_LEAF_BITS = 12
MAX_LEAF_BITS = 24
KEYS_PER_LEAF = 4  # few keys per leaf: a differing leaf ships few entries
REGROUP_LOOKS = 64  # old leaves a regroup step looks at per leaf it may split
DIRTY_LEAVES = 4096  # leaves changed before the levels above catch up (bounds a read)
# Below this many keys a tree keeps no levels above its leaves: a bucket's hash is the XOR
# of the few leaves under it, computed when asked. The smallest shape's levels are 2.4 KB
# (1 + 16 + 256 buckets), where a one-key node of a simulation holds one leaf (measured:
# 100 000-node sim_bench peak RSS 1106 -> 870 MiB).
DENSE_KEYS = 64

Entry = tuple[int, str]  # (entry hash, key), as ``entries`` lists them
_PAIR = struct.Struct("=QQ")  # (entry hash, key hash) in a leaf (native: never sent)
_HASH = struct.Struct("=Q")
assert array("Q").itemsize * 2 == _PAIR.size == 16


def fingerprint(hlc: int, origin: str, tombstone: bool) -> int:
    """A version's identity as 64 bits: (hlc, origin) names a write uniquely."""
    return mix64(hlc & MASK64, _origin_hash(origin) ^ int(tombstone))


def fingerprints(stamps: Sequence[tuple[int, str, bool]]) -> list[int]:
    """``fingerprint(*stamp)`` of each (hlc, origin, tombstone), for a batch at once."""
    return mix64_many(*_stamp_parts(stamps))


def entry_hashes(khashes: Sequence[int], fps: Sequence[int]) -> list[int]:
    """The entry hash of each (key hash, fingerprint): what a leaf holds and XORs."""
    return mix64_many(khashes, fps)


def stamp_entry_hashes(
    khashes: Sequence[int], stamps: Sequence[tuple[int, str, bool]]
) -> list[int]:
    """``entry_hashes(khashes, fingerprints(stamps))`` in one pass (a fold's hashes)."""
    return mix64_nested(khashes, *_stamp_parts(stamps))


def _stamp_parts(stamps: Sequence[tuple[int, str, bool]]) -> tuple[list[int], list[int]]:
    """What ``fingerprint`` mixes, for each stamp: the HLC and the origin's hash with the
    tombstone bit. A batch has few origins: each is hashed (looked up) once."""
    origin_hash = _origin_hash
    origins = {origin: origin_hash(origin) for origin in {origin for _, origin, _ in stamps}}
    hlcs = [hlc & MASK64 for hlc, _, _ in stamps]
    return hlcs, [origins[origin] ^ tomb for _, origin, tomb in stamps]


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


# A leaf: (its (entry hash, key hash) pairs packed as native uint64s, then its keys in the
# same order). One tuple and one bytes object per leaf of ~4 keys, instead of a dict and an
# int per key: measured 205 -> ~60 B per key at 100k keys. The key hashes (8 B a key) make
# listing a leaf a C unpack instead of a BLAKE2b per key: a 20 000-entry anti-entropy step
# took 157 ms of CPU recomputing them, over the 50 ms stall budget.
Leaf = tuple[object, ...]
Leaves = dict[int, Leaf] | LeafShards[Leaf]  # one dict, or shards for a large shape


def _leaf_table(leaf_bits: int, items: Iterable[tuple[int, Leaf]] = ()) -> Leaves:
    """An empty (or filled) leaf table for a shape of ``2**leaf_bits`` leaves."""
    if 1 << leaf_bits > SPLIT_LEAVES:
        return LeafShards(items)
    return dict(items)


def _leaf_keys(leaf: Leaf) -> tuple[str, ...]:
    return leaf[1:]  # type: ignore[return-value]


def _leaf_pairs(leaf: Leaf) -> tuple[int, ...]:
    """entry hash, key hash, entry hash, key hash, ... (one pair per key, in key order)."""
    packed: bytes = leaf[0]  # type: ignore[assignment]
    return struct.unpack(f"={len(packed) >> 3}Q", packed)


def _leaf_items(leaf: Leaf) -> Iterable[tuple[str, int, int]]:
    """(key, entry hash, key hash) for each key of the leaf."""
    pairs = _leaf_pairs(leaf)
    return zip(_leaf_keys(leaf), pairs[0::2], pairs[1::2], strict=True)


def _slot_of(leaf: Leaf, key: str, khash: int) -> int:
    """Where ``key``'s entry hash is in its leaf's packed pairs (a byte offset), or -1.
    Found by its key hash in the bytes: no key string is read (at 1M keys each would be
    a cache miss) but the one that matches, to tell apart keys whose hashes collide."""
    packed: bytes = leaf[0]  # type: ignore[assignment]
    needle = _HASH.pack(khash)
    at = packed.find(needle)
    while at >= 0:
        if at & 15 == 8 and leaf[1 + (at >> 4)] == key:
            return at - 8
        at = packed.find(needle, at + 1)
    return -1


def _make_leaf(pairs: Iterable[int], keys: Iterable[str]) -> Leaf:
    packed = array("Q", pairs).tobytes()
    return (packed, *keys)


def _leaf_xor(leaf: Leaf) -> int:
    value = 0
    for ehash in _leaf_pairs(leaf)[0::2]:
        value ^= ehash
    return value


class Digest:
    """An incrementally maintained digest tree over (key, version fingerprint) entries."""

    __slots__ = (
        "_count",
        "_dirty",
        "_leaves",
        "_levels",
        "_min_leaf_bits",
        "_old_bits",
        "_old_leaves",
        "_old_order",
        "_sparse",
        "leaf_bits",
    )

    def __init__(self, min_leaf_bits: int = MIN_LEAF_BITS) -> None:
        self._min_leaf_bits = min_leaf_bits
        self._count = 0
        # _leaves[leaf] = (entry hashes, *keys); a leaf is an index at width leaf_bits. The
        # key is the store's own string; a key hash is recomputed when a leaf is listed.
        # The leaves' own XORs are computed from their entries when asked (few per step).
        self._leaves: Leaves = {}
        # A growing regroup in progress: leaves still at the previous, coarser width, split
        # into the new leaves in slices (``regroup``) or when one of their keys is touched.
        self._old_leaves: Leaves = {}
        self._old_order: list[int] = []  # the old leaves' indices, split from the end
        self._old_bits = 0
        # Leaf index -> XOR of its changes not yet folded into the levels (lazy ancestors).
        self._dirty: dict[int, int] = {}
        self._shape(min_leaf_bits)

    def _shape(self, leaf_bits: int) -> None:
        """Set the maintained widths and rebuild levels and leaves from the entries (all at
        once: for a shrink, or an empty tree; a growing tree regroups in slices)."""
        self.regroup(None)
        self.leaf_bits = leaf_bits
        grouped: dict[int, tuple[list[int], list[str]]] = {}
        leaf_shift = 64 - leaf_bits
        for leaf in self._leaves.values():
            _group(grouped, leaf, leaf_shift)
        self._leaves = _leaf_table(
            leaf_bits, ((i, _make_leaf(pairs, keys)) for i, (pairs, keys) in grouped.items())
        )
        # _levels[width][i]: XOR of entry hashes under bucket i of that width (above leaves)
        self._sparse = True
        self._levels: dict[int, array[int]] = {}
        self._dirty = {}
        if self._count >= DENSE_KEYS:
            self._densify()

    def _densify(self) -> None:
        """Build the levels above the leaves (``DENSE_KEYS`` reached): a catch-up of every
        leaf into levels of empty buckets."""
        self._sparse = False
        self._levels = {w: _zeros(w) for w in widths(self.leaf_bits)[:-1]}
        self._dirty = self._leaf_level()
        self._catch_up()

    def _leaf_level(self) -> dict[int, int]:
        found = {i: _leaf_xor(leaf) for i, leaf in self._leaves.items()}
        return {i: v for i, v in found.items() if v}

    def reserve(self, keys: int) -> None:
        """Take the shape for ``keys`` keys now, while it is cheap (before a bulk fold)."""
        leaf_bits = leaf_bits_for(keys, self._min_leaf_bits)
        if leaf_bits > self.leaf_bits:
            self._grow(leaf_bits) if self._count else self._shape(leaf_bits)

    def _grow(self, leaf_bits: int) -> None:
        """Start regrouping into ``leaf_bits`` leaves: the levels above the old leaves stay
        (a bucket's hash does not depend on the shape), the finer ones fill as old leaves
        split. Measured: an all-at-once regroup took ~1 s at 1M keys, on the event loop.

        A doubling due while a regroup is under way waits for it to end (leaves hold more
        keys meanwhile; no hash depends on that): finishing the first regroup at once
        was a 0.9 s turn of a node folding 10M keys after a restart."""
        if self._old_leaves:
            return
        if self._sparse:
            self._densify()  # the finer levels start from the coarser ones
        self._catch_up()  # the dirty leaves are named at the old width
        self._old_leaves, self._leaves = self._leaves, _leaf_table(leaf_bits)
        self._old_order = list(self._old_leaves)
        self._old_bits, self.leaf_bits = self.leaf_bits, leaf_bits
        self._levels = {w: self._levels.get(w) or _zeros(w) for w in widths(leaf_bits)[:-1]}

    def regrouping(self) -> int:
        """Old leaves still to split (0: the tree has its shape)."""
        return len(self._old_leaves)

    def regroup(self, budget: int | None) -> int:
        """Split at most ``budget`` old leaves (None: all); returns how many are left.
        Old leaves that writes split already are passed over, not counted, but at most
        ``REGROUP_LOOKS`` a leaf of the budget are looked at: near its end, most of a
        regroup's order is leaves split already (one call went through millions)."""
        order, old = self._old_order, self._old_leaves
        done, looks = 0, 0 if budget is None else REGROUP_LOOKS * budget
        while order and (budget is None or (done < budget and looks > 0)):
            index = order.pop()
            looks -= 1
            if index in old:
                self._split(index)
                done += 1
        if not order:
            self._old_leaves = {}
        return len(self._old_leaves)

    def _split(self, old_index: int) -> None:
        """Move one old leaf's entries into the new leaves, and their XORs into the levels
        finer than the old leaves (those levels hold nothing under it until now)."""
        leaf = self._old_leaves.pop(old_index, None)
        if leaf is None:
            return
        leaves, leaf_bits = self._leaves, self.leaf_bits
        finer = [(w, nodes) for w, nodes in self._levels.items() if w >= self._old_bits]
        for index, part in _parts(leaf, 64 - leaf_bits):
            leaves[index] = part
            if finer:
                value = _leaf_xor(part)
                for width, nodes in finer:
                    nodes[index >> (leaf_bits - width)] ^= value

    def _settle(self, width: int, indices: Iterable[int]) -> None:
        """Split the old leaves under or above these buckets before they are read."""
        if not self._old_leaves:
            return
        old_bits = self._old_bits
        for index in indices:
            if width >= old_bits:
                self._split(index >> (width - old_bits))
            else:
                for old_index in children(width, index, old_bits):
                    self._split(old_index)

    @classmethod
    def of(cls, entries: Iterable[tuple[str, int]], min_leaf_bits: int = MIN_LEAF_BITS) -> Digest:
        digest = cls(min_leaf_bits)
        digest.set_many(entries)
        return digest

    def set(self, key: str, fp: int, khash: int | None = None) -> None:
        """Record that ``key`` now holds the version with fingerprint ``fp``."""
        if khash is None:
            khash = hash64(key.encode())  # uncached: at random keys a cache only misses
        self._place(key, khash, mix64(khash, fp))
        if len(self._dirty) > DIRTY_LEAVES:
            self._catch_up()

    def set_many(self, items: Iterable[tuple[str, int]]) -> None:
        """``set`` of each (key, fingerprint), in order, for a batch at once: the key and
        entry hashes of the whole batch are computed in bulk (``core.hashing``)."""
        keys: list[str] = []
        fps: list[int] = []
        for key, fp in items:
            keys.append(key)
            fps.append(fp)
        khashes = key_hashes(keys)
        self.apply(keys, khashes, entry_hashes(khashes, fps))

    def apply(
        self, keys: Sequence[str], khashes: Sequence[int], ehashes: Sequence[int | None]
    ) -> None:
        """Give each key, in order, its entry hash (``entry_hashes``; None: remove it).
        ``khashes`` are the keys' hashes (``core.hashing.key_hashes``). The store's fold
        computes both once for the digest and every scoped one.

        A key new to its leaf, with no regroup under way and no doubling due (most of an
        ingest), is placed inline, as ``_place`` would (a call and a lookup less a key);
        anything else goes through ``_place`` or ``remove``."""
        pack_pair, pack_hash = _PAIR.pack, _HASH.pack
        fast = self._fast_state()
        for key, khash, ehash in zip(keys, khashes, ehashes, strict=True):
            if fast is not None and ehash is not None and self._count < fast[3]:
                leaves, dirty, shift = fast[:3]
                index = khash >> shift
                leaf = leaves.get(index)
                if leaf is None:
                    leaves[index] = (pack_pair(ehash, khash), key)
                elif leaf[0].find(pack_hash(khash)) < 0:  # type: ignore[attr-defined]
                    leaves[index] = (leaf[0] + pack_pair(ehash, khash), *leaf[1:], key)  # type: ignore[operator]
                else:  # its hash is in the leaf: this key's entry, or another key's
                    self._place(key, khash, ehash)
                    continue  # no doubling was due, so none happened: the state holds
                dirty[index] = dirty.get(index, 0) ^ ehash
                self._count += 1
                continue
            if ehash is None:
                self.remove(key, khash)
            else:
                self._place(key, khash, ehash)
            fast = self._fast_state()
        if self._sparse and self._count >= DENSE_KEYS:
            self._densify()
        elif len(self._dirty) > DIRTY_LEAVES:
            self._catch_up()

    def _fast_state(self) -> tuple[Leaves, dict[int, int], int, int] | None:
        """What ``apply``'s inline placement needs: the leaves, the dirty leaves, the leaf
        shift and the key count below which no doubling is due (``_place``'s rule: at that
        count it grows); None while a regroup is under way."""
        if self._old_leaves:
            return None
        due = KEYS_PER_LEAF << self.leaf_bits if self.leaf_bits < MAX_LEAF_BITS else 1 << 62
        return self._leaves, self._dirty, 64 - self.leaf_bits, due - 1

    def _place(self, key: str, khash: int, ehash: int) -> None:
        """Put one entry in its leaf and mark the leaf dirty (the hot path of a fold)."""
        if self._old_leaves:  # a regroup under way: this key's old leaf, and one more, so
            self._split(khash >> (64 - self._old_bits))  # that it ends within as many
            self.regroup(1)  # writes as it has old leaves, long before the next doubling
        index = khash >> (64 - self.leaf_bits)
        leaves = self._leaves
        leaf = leaves.get(index)
        slot = -1 if leaf is None else _slot_of(leaf, key, khash)
        if slot >= 0:
            packed: bytes = leaf[0]  # type: ignore[index, assignment]
            delta = _HASH.unpack_from(packed, slot)[0] ^ ehash
            if delta:
                leaves[index] = (packed[:slot] + _HASH.pack(ehash) + packed[slot + 8 :], *leaf[1:])  # type: ignore[index]
                dirty = self._dirty
                dirty[index] = dirty.get(index, 0) ^ delta
            return
        if leaf is None:
            leaves[index] = (_PAIR.pack(ehash, khash), key)
        else:
            leaves[index] = (leaf[0] + _PAIR.pack(ehash, khash), *leaf[1:], key)  # type: ignore[operator]
        dirty = self._dirty
        dirty[index] = dirty.get(index, 0) ^ ehash
        self._count += 1
        if self._sparse and self._count >= DENSE_KEYS:
            self._densify()
        if self._count >= KEYS_PER_LEAF << self.leaf_bits and self.leaf_bits < MAX_LEAF_BITS:
            if self._old_leaves:  # not over yet (removals came between): a little more
                self.regroup(2)
            else:
                self._grow(leaf_bits_for(self._count, self._min_leaf_bits))

    def remove(self, key: str, khash: int | None = None) -> None:
        if khash is None:
            khash = hash64(key.encode())
        if self._old_leaves:
            self._split(khash >> (64 - self._old_bits))
        leaf_index = khash >> (64 - self.leaf_bits)
        leaf = self._leaves.get(leaf_index)
        slot = -1 if leaf is None else _slot_of(leaf, key, khash)
        if leaf is None or slot < 0:
            return
        position = slot >> 4
        pairs = list(_leaf_pairs(leaf))
        ehash = pairs[2 * position]
        del pairs[2 * position : 2 * position + 2]
        if pairs:
            keys = _leaf_keys(leaf)
            self._leaves[leaf_index] = _make_leaf(pairs, keys[:position] + keys[position + 1 :])
        else:
            del self._leaves[leaf_index]
        self._dirty[leaf_index] = self._dirty.get(leaf_index, 0) ^ ehash
        self._count -= 1
        if self.leaf_bits > self._min_leaf_bits and self._count < KEYS_PER_LEAF << (self.leaf_bits - 2):  # fmt: skip
            self._shape(leaf_bits_for(self._count, self._min_leaf_bits))
        elif len(self._dirty) > DIRTY_LEAVES:
            self._catch_up()

    def _catch_up(self) -> None:
        """Fold the dirty leaves' changes into the levels above them: one array update per
        dirty leaf and level (no hashing, contiguous memory), except that a level with
        fewer buckets below it than dirty leaves is summed from the level below instead."""
        deltas = self._dirty
        if not deltas:
            return
        self._dirty = {}
        changes = deltas.items()
        finer: array[int] | None = None  # the level just below, already up to date
        for width, nodes in reversed(self._levels.items()):
            if finer is not None and len(finer) <= len(deltas):
                _coarsen(nodes, finer)
            else:
                shift = self.leaf_bits - width
                for index, delta in changes:
                    nodes[index >> shift] ^= delta
            finer = nodes

    @property
    def root(self) -> int:
        if not self.leaf_bits or self._sparse:
            return self._sparse_hashes(0, (0,)).get(0, 0)
        self._catch_up()
        return self._levels[0][0]

    def _sparse_hashes(self, width: int, indices: Iterable[int]) -> dict[int, int]:
        """``hashes`` at a width at or above the leaves, from the leaves (no levels)."""
        self._dirty = {}  # (nothing to catch up: no level is kept)
        wanted, shift = set(indices), self.leaf_bits - width
        found: dict[int, int] = {}
        for leaf_index, leaf in self._leaves.items():
            index = leaf_index >> shift
            if index in wanted:
                found[index] = found.get(index, 0) ^ _leaf_xor(leaf)
        return {i: v for i, v in found.items() if v}

    def hashes(self, width: int, indices: Iterable[int]) -> dict[int, int]:
        """The non-zero hashes among ``indices`` at ``width`` (absent means empty)."""
        if self._old_leaves and width >= self._old_bits:
            indices = list(indices)
            self._settle(width, indices)
        if self._sparse and width < self.leaf_bits:
            return self._sparse_hashes(width, indices)
        nodes = self._levels.get(width)
        if nodes is not None:
            self._catch_up()
            size = len(nodes)
            return {i: nodes[i] for i in indices if 0 <= i < size and nodes[i]}
        found: dict[int, int] = {}
        for i in indices:
            if width == self.leaf_bits:
                leaf = self._leaves.get(i)
                value = 0 if leaf is None else _leaf_xor(leaf)
            else:
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
        self._settle(width, (index,))
        if width >= self.leaf_bits:
            indices: Iterable[int] = (index >> (width - self.leaf_bits),)
        else:
            indices = children(width, index, self.leaf_bits)
        shift = 64 - width
        found: dict[int, Entry] = {}
        for i in indices:
            leaf = self._leaves.get(i)
            if leaf is None:
                continue
            for key, ehash, khash in _leaf_items(leaf):
                if khash >> shift == index:
                    found[khash] = (ehash, key)
        return found

    def pairs(self, width: int, index: int) -> list[tuple[int, int]]:
        """(key hash, entry hash) under bucket ``index`` of ``width``: what a leaf step sends
        (``entries`` without the keys, built straight from the packed pairs)."""
        if width < self.leaf_bits:
            return [(kh, eh) for kh, (eh, _) in self.entries(width, index).items()]
        self._settle(width, (index,))
        leaf = self._leaves.get(index >> (width - self.leaf_bits))
        if leaf is None:
            return []
        flat = _leaf_pairs(leaf)
        shift = 64 - width
        pairs = zip(flat[0::2], flat[1::2], strict=True)
        return [(kh, eh) for eh, kh in pairs if kh >> shift == index]

    def key_of(self, khash: int) -> str | None:
        self._settle(64, (khash,))
        leaf = self._leaves.get(khash >> (64 - self.leaf_bits))
        for key, _, held in () if leaf is None else _leaf_items(leaf):
            if held == khash:
                return key
        return None

    def __len__(self) -> int:
        return self._count


def _group(grouped: dict[int, tuple[list[int], list[str]]], leaf: Leaf, leaf_shift: int) -> None:
    """Add ``leaf``'s entries to ``grouped`` by the leaf each falls in at a finer width."""
    for key, ehash, khash in _leaf_items(leaf):
        group = grouped.get(khash >> leaf_shift)
        if group is None:
            group = grouped[khash >> leaf_shift] = ([], [])
        group[0].extend((ehash, khash))
        group[1].append(key)


def _parts(leaf: Leaf, leaf_shift: int) -> Iterable[tuple[int, Leaf]]:
    """``leaf`` cut into the finer leaves its entries fall in (index ``khash >> leaf_shift``),
    each keeping the entries' order, as ``_group`` would make them; a leaf whose entries all
    land in one finer leaf is reused as it is. Each part is a slice of the packed pairs
    per entry and a tuple of keys, with no list of integers rebuilt and packed again."""
    packed: bytes = leaf[0]  # type: ignore[assignment]
    indices = [khash >> leaf_shift for khash in _leaf_pairs(leaf)[1::2]]
    first = indices[0]
    if indices.count(first) == len(indices):
        return ((first, leaf),)
    parts: dict[int, tuple[list[bytes], list[object]]] = {}
    for position, index in enumerate(indices):
        part = parts.get(index)
        if part is None:
            part = parts[index] = ([], [])
        part[0].append(packed[16 * position : 16 * position + 16])
        part[1].append(leaf[1 + position])
    return [(index, (b"".join(pairs), *keys)) for index, (pairs, keys) in parts.items()]


def _coarsen(nodes: array[int], finer: array[int]) -> None:
    """Set each bucket of ``nodes`` to the XOR of its children in ``finer``."""
    fanout = len(finer) // len(nodes)
    for index in range(len(nodes)):
        value = 0
        for child in finer[index * fanout : (index + 1) * fanout]:
            value ^= child
        nodes[index] = value


def _zeros(width: int) -> array[int]:
    """A level of ``2**width`` buckets, all empty: 8 bytes a bucket, in one block (a level
    above the leaves has 4 or more keys a bucket, so a dense array costs less than a dict)."""
    return array("Q", bytes(8 << width))


def diff_entries(mine: dict[int, Entry], theirs: dict[int, int]) -> tuple[list[int], list[int]]:
    """Key hashes whose versions differ: (ones I hold, ones only they hold)."""
    mine_differs = [kh for kh, (eh, _) in mine.items() if theirs.get(kh) != eh]
    only_theirs = [kh for kh in theirs if kh not in mine]
    return mine_differs, only_theirs
