import copy
import random
from unittest import mock

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from rumordb.core import anti_entropy
from rumordb.core import digest as digest_module
from rumordb.core.digest import (
    Digest,
    entry_hashes,
    fingerprint,
    fingerprints,
    leaf_bits_for,
    stamp_entry_hashes,
)
from rumordb.core.hashing import MASK64, key_hash, key_hashes, mix64, mix64_many, mix64_nested
from rumordb.core.leaf_shards import LeafShards
from rumordb.core.messages import DigestStep, SyncRecords, encode


def full(n: int) -> dict[str, int]:
    return {f"key:{i}": fingerprint(1_000 + i, "n1", False) for i in range(n)}


def test_incremental_updates_equal_a_rebuild() -> None:
    entries = full(2_000)
    digest = Digest.of(entries.items())
    rng = random.Random(1)
    for key in rng.sample(sorted(entries), 300):
        entries[key] = fingerprint(9_999, "n2", False)
        digest.set(key, entries[key])
    for key in rng.sample(sorted(entries), 100):
        del entries[key]
        digest.remove(key)
    rebuilt = Digest.of(entries.items())
    assert digest.root == rebuilt.root != 0
    assert len(digest) == len(rebuilt) == 1_900
    for key in entries:
        digest.remove(key)
    assert digest.root == 0


def walk(a: Digest, b: Digest) -> tuple[set[str], int]:
    """Run the anti-entropy descent between a and b; return differing keys and digest bytes."""
    rng = random.Random(0)
    message = anti_entropy.start("a", 1, a)
    sides = [b, a]
    turn = 0
    sent = 0
    while True:
        sent += len(encode(message))
        reply = anti_entropy.on_digest("x", message, sides[turn % 2], rng)
        if not isinstance(reply, DigestStep):
            break
        message, turn = reply, turn + 1
    assert isinstance(reply, anti_entropy.Listing)
    lister, receiver = sides[turn % 2], sides[(turn + 1) % 2]
    leaves = anti_entropy.leaf_chunk("x", reply, lister, 100_000, 100_000)
    sent += len(encode(leaves))
    keys, want, _ = anti_entropy.on_leaf_entries(leaves, receiver, 100_000)
    found = set(keys) | {lister.key_of(kh) or "?" for kh in want}
    return found, sent


def test_100k_keys_50_differ_found_exactly_with_little_traffic() -> None:
    entries = full(100_000)
    a = Digest.of(entries.items())
    b = Digest.of(entries.items())
    rng = random.Random(7)
    changed = rng.sample(sorted(entries), 50)
    for i, key in enumerate(changed):
        if i % 3 == 0:
            b.remove(key)  # missing on b
        else:
            b.set(key, fingerprint(5, "n9", False))  # another version on b
    found, digest_bytes = walk(a, b)
    assert found == set(changed)
    value = b"x" * 100
    full_state = sum(
        len(msgspec.msgpack.encode([k, value, {"n1": 1}, 1_000, "n1"])) for k in entries
    )
    assert digest_bytes < 0.05 * full_state, (digest_bytes, full_state)


def test_replicas_in_sync_exchange_one_message() -> None:
    entries = full(1_000)
    a, b = Digest.of(entries.items()), Digest.of(entries.items())
    step = anti_entropy.start("a", 1, a)
    assert anti_entropy.on_digest("b", step, b, random.Random(0)) is None


def _all_buckets(digest: Digest, upto: int) -> list[dict[int, int]]:
    return [digest.hashes(width, range(1 << width)) for width in range(upto + 1)]


_keys = st.integers(0, 300).map(lambda i: f"k{i}")


def _assert_same_buckets_and_entries(digest: Digest, fresh: Digest) -> None:
    """Every bucket down to two widths below the finer shape, and every bucket's entries."""
    upto = max(digest.leaf_bits, fresh.leaf_bits) + 2
    assert _all_buckets(digest, upto) == _all_buckets(fresh, upto)
    for width in range(upto + 1):
        for index in range(1 << width):
            assert digest.entries(width, index) == fresh.entries(width, index)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(_keys, st.integers(0, 3), st.booleans()), max_size=400))
def test_an_adaptive_digest_equals_a_fresh_build_whatever_its_history(
    ops: list[tuple[str, int, bool]],
) -> None:
    """Inserts and removes reshape the tree (2 leaves .. 2**7 here); buckets stay equal."""
    digest = Digest(min_leaf_bits=1)
    entries: dict[str, int] = {}
    for key, version, remove in ops:
        if remove:
            entries.pop(key, None)
            digest.remove(key)
        else:
            entries[key] = fingerprint(version + 1, "n1", False)
            digest.set(key, entries[key])
    fresh = Digest.of(entries.items(), min_leaf_bits=1)
    assert len(digest) == len(fresh) == len(entries)
    _assert_same_buckets_and_entries(digest, fresh)


def test_the_shape_grows_with_the_keys_and_shrinks_with_hysteresis() -> None:
    digest = Digest.of(full(4 * 8_192).items())
    assert digest.leaf_bits == leaf_bits_for(4 * 8_192) == 14
    keys = list(full(4 * 8_192))
    for key in keys[: 2 * 8_192]:
        digest.remove(key)
    assert digest.leaf_bits == 14, "half the keys: the shape stays (no flapping)"
    digest.remove(keys[2 * 8_192])
    assert digest.leaf_bits == leaf_bits_for(len(digest)) == 12


def _repair(a: dict[str, int], b: dict[str, int]) -> int:
    """Anti-entropy sessions between a and b until equal; returns the sessions taken.
    Each session descends once, then lists the differing leaves in bounded chunks."""
    for session in range(1, 200):
        da, db = Digest.of(a.items(), min_leaf_bits=2), Digest.of(b.items(), min_leaf_bits=2)
        if da.root == db.root:
            return session - 1
        message = anti_entropy.start("a", session, da)
        sides = [(db, b), (da, a)]
        turn = 0
        while True:
            reply = anti_entropy.on_digest("x", message, sides[turn % 2][0], random.Random(0))
            if not isinstance(reply, DigestStep):
                break
            message, turn = reply, turn + 1
        assert isinstance(reply, anti_entropy.Listing)
        (lister_d, lister), (recv_d, recv) = sides[turn % 2], sides[(turn + 1) % 2]
        while True:
            chunk = anti_entropy.leaf_chunk("x", reply, lister_d, 10, 10)
            keys, want, next_leaf = anti_entropy.on_leaf_entries(chunk, recv_d, 10)
            for key in keys:  # the union wins: these tests only add keys
                lister[key] = recv[key]
            for key in anti_entropy.wanted_keys(want, lister_d, 10):
                recv[key] = lister[key]
            answer = SyncRecords("y", session, [], want, next_leaf)
            if not anti_entropy.resume(reply, answer):
                break
    raise AssertionError("no convergence")


def test_replicas_of_different_shapes_converge() -> None:
    a = {f"k{i}": fingerprint(i + 1, "n1", False) for i in range(600)}
    b = {k: fp for k, fp in a.items() if int(k[1:]) % 7 == 0}
    b["only-b"] = fingerprint(1, "n2", False)
    assert Digest.of(a.items(), 2).leaf_bits != Digest.of(b.items(), 2).leaf_bits
    sessions = _repair(a, b)
    assert a == b and sessions == 1, "bounded steps (10 keys) resume within one session"


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.integers(0, 2_000).map(lambda i: f"k{i}"), st.integers(1, 3), max_size=300),
    st.dictionaries(st.integers(0, 2_000).map(lambda i: f"k{i}"), st.integers(4, 6), max_size=60),
)
def test_digests_of_any_two_shapes_repair_every_difference_in_one_session(
    a_versions: dict[str, int], b_versions: dict[str, int]
) -> None:
    """Key sets of different sizes give different shapes (2**2 .. 2**7 leaves here); the
    aligned descent walks the finer one, and bounded chunks finish in one session."""
    a = {k: fingerprint(v, "n1", False) for k, v in a_versions.items()}
    b = {k: fingerprint(v, "n2", False) for k, v in b_versions.items()}
    expected = len(set(a) ^ set(b))
    sessions = _repair(a, b) if a != b else 0
    assert a.keys() == b.keys() and len(a) >= expected
    assert sessions <= 1


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(_keys, st.integers(0, 3), st.booleans()),
            st.integers(1, 5),  # a slice of a regroup: this many old leaves split
        ),
        max_size=400,
    )
)
def test_a_digest_regrouped_in_slices_equals_a_fresh_build_at_every_step(
    ops: list[tuple[str, int, bool] | int],
) -> None:
    """Doublings regroup in slices, reads and writes split old leaves on demand; between
    any two steps every bucket and every leaf's entries equal a fresh build's."""
    digest = Digest(min_leaf_bits=1)
    entries: dict[str, int] = {}
    for op in ops:
        if isinstance(op, int):
            digest.regroup(op)
        elif op[2]:
            entries.pop(op[0], None)
            digest.remove(op[0])
        else:
            entries[op[0]] = fingerprint(op[1] + 1, "n1", False)
            digest.set(op[0], entries[op[0]])
        fresh = Digest.of(entries.items(), min_leaf_bits=1)
        assert len(digest) == len(fresh) and digest.root == fresh.root
        # Reads split old leaves: compare a copy, so the regroup goes on in ``digest``.
        seen = copy.deepcopy(digest)
        upto = max(digest.leaf_bits, fresh.leaf_bits) + 1
        assert _all_buckets(seen, upto) == _all_buckets(fresh, upto)
        seen = copy.deepcopy(digest)
        for width in range(upto + 1):
            for index in range(1 << width):
                assert seen.entries(width, index) == fresh.entries(width, index)


def test_a_doubling_regroups_in_slices_not_at_once() -> None:
    entries = full(4 << 12)  # one key short of doubling the 2**12-leaf shape, then past it
    digest = Digest.of(list(entries.items())[:-1])
    assert digest.leaf_bits == 12 and digest.regrouping() == 0
    key, fp = list(entries.items())[-1]
    digest.set(key, fp)
    assert digest.leaf_bits == 13 and digest.regrouping() > 4_000, "old leaves left to split"
    assert digest.root == Digest.of(entries.items()).root
    while digest.regroup(100):
        pass
    assert _all_buckets(digest, 13) == _all_buckets(Digest.of(entries.items()), 13)


def test_a_buckets_pairs_are_its_entries_without_the_keys() -> None:
    digest = Digest.of(full(3_000).items())
    for width in (digest.leaf_bits - 4, digest.leaf_bits, digest.leaf_bits + 3):
        for index in range(0, 1 << width, max(1, (1 << width) // 50)):
            entries = digest.entries(width, index)
            assert sorted(digest.pairs(width, index)) == sorted((kh, eh) for kh, (eh, _) in entries.items())  # fmt: skip


def _oracle(entries: dict[str, int], width: int) -> dict[int, int]:
    """Every non-empty bucket at ``width``, straight from the entries (no digest code)."""
    buckets: dict[int, int] = {}
    for key, fp in entries.items():
        khash = key_hash(key)
        index = khash >> (64 - width)
        buckets[index] = buckets.get(index, 0) ^ mix64(khash, fp)
    return {i: v for i, v in buckets.items() if v}


_lazy_op = st.one_of(
    st.tuples(st.just("set"), _keys, st.integers(0, 3)),
    st.tuples(st.just("remove"), _keys),
    st.tuples(st.just("set_many"), st.lists(st.tuples(_keys, st.integers(0, 3)), max_size=40)),
    st.tuples(st.just("regroup"), st.integers(1, 5)),
    st.tuples(st.just("read"), st.integers(0, 10)),  # 0: the root, else a width + 1
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_lazy_op, max_size=120), st.sampled_from([1, 3, 4096]), st.sampled_from([0, 5, 64]))
def test_lazy_ancestors_read_like_a_fresh_build_after_any_history(
    ops: list[tuple[object, ...]], dirty_leaves: int, dense_keys: int
) -> None:
    """Writes change leaves only; the levels above catch up when read or when too many
    leaves are dirty. A read at any moment, of the root or of any width, and every bucket
    and leaf at the end, equal buckets computed straight from the entries: with levels
    from the start (``dense_keys`` 0), built midway (5) or mostly none (64: sparse)."""
    digest = Digest(min_leaf_bits=1)
    entries: dict[str, int] = {}
    with (
        mock.patch.object(digest_module, "DIRTY_LEAVES", dirty_leaves),
        mock.patch.object(digest_module, "DENSE_KEYS", dense_keys),
    ):
        if not dense_keys:
            digest = Digest(min_leaf_bits=1)  # dense from the start
        for op in ops:
            if op[0] == "set":
                entries[op[1]] = fingerprint(op[2] + 1, "n1", False)  # type: ignore[operator]
                digest.set(op[1], entries[op[1]])  # type: ignore[arg-type]
            elif op[0] == "remove":
                entries.pop(op[1], None)  # type: ignore[call-overload]
                digest.remove(op[1])  # type: ignore[arg-type]
            elif op[0] == "set_many":
                batch = [(key, fingerprint(v + 1, "n2", False)) for key, v in op[1]]  # type: ignore[attr-defined]
                entries.update(batch)
                digest.set_many(batch)
            elif op[0] == "regroup":
                digest.regroup(op[1])  # type: ignore[arg-type]
            elif op[1] == 0:
                assert digest.root == _oracle(entries, 0).get(0, 0)
            else:
                width = op[1] - 1
                assert digest.hashes(width, range(1 << width)) == _oracle(entries, width)  # type: ignore[arg-type, operator]
            assert len(digest) == len(entries)
    upto = digest.leaf_bits + 2
    for width in range(upto + 1):
        assert digest.hashes(width, range(1 << width)) == _oracle(entries, width)
        for index in range(1 << width):
            assert digest.entries(width, index) == Digest.of(entries.items(), 1).entries(width, index)  # fmt: skip


def test_bulk_hashes_equal_the_scalar_ones() -> None:
    rng = random.Random(5)
    a = [0, MASK64, *(rng.getrandbits(64) for _ in range(500))]
    b = [MASK64, 0, *(rng.getrandbits(64) for _ in range(500))]
    for count in (0, 1, 3, 4, len(a)):
        pairs = zip(a[:count], b[:count], strict=True)
        assert mix64_many(a[:count], b[:count]) == [mix64(x, y) for x, y in pairs]
    keys = ["", "a", "é", *(f"k{i}" for i in range(100))]
    assert key_hashes(keys) == [key_hash(key) for key in keys]
    stamps = [(rng.getrandbits(70), f"n{i % 3}", i % 2 == 1) for i in range(50)]
    assert fingerprints(stamps) == [fingerprint(*stamp) for stamp in stamps]
    c = [rng.getrandbits(64) for _ in a]
    for count in (0, 1, 3, 4, len(a)):
        nested = [mix64(x, mix64(y, z)) for x, y, z in zip(a, b, c, strict=False)][:count]
        assert mix64_nested(a[:count], b[:count], c[:count]) == nested
    khashes = key_hashes([f"k{i}" for i in range(len(stamps))])
    for count in (0, 2, len(stamps)):
        folded = stamp_entry_hashes(khashes[:count], stamps[:count])
        assert folded == entry_hashes(khashes[:count], fingerprints(stamps[:count]))
    digest, scalar = Digest(), Digest()
    digest.set_many((key, fingerprint(1, "n1", False)) for key in keys)
    for key in keys:
        scalar.set(key, fingerprint(1, "n1", False))
    assert digest.root == scalar.root != 0


def test_a_batch_across_doublings_keeps_its_changes_at_their_width() -> None:
    """Changes still dirty when the shape doubles are named at the old leaf width: the
    levels catch up before the shape changes, in one batch or over many."""
    entries = {f"k{i}": fingerprint(i + 1, "n1", False) for i in range(3_000)}
    digest = Digest(min_leaf_bits=1)
    items = list(entries.items())
    digest.set_many(items[:1_000])
    digest.set_many(items[1_000:])
    assert digest.leaf_bits == leaf_bits_for(3_000, 1) == 10
    for width in range(digest.leaf_bits + 1):
        assert digest.hashes(width, range(1 << width)) == _oracle(entries, width)


def test_a_growing_tree_splits_a_few_old_leaves_per_write_never_the_whole_regroup() -> None:
    """Each write during a regroup splits its own old leaf and one more, so the regroup
    ends long before the next doubling, which never has to finish one at once (that was
    a 0.9 s event-loop turn of a node folding 10M keys after a restart)."""
    digest, most, doublings, left_at_doubling = Digest(), 0, 0, []
    entries = full(6 * 16_384)
    for key, fp in entries.items():
        before, bits = digest.regrouping(), digest.leaf_bits
        digest.set(key, fp)
        if digest.leaf_bits != bits:  # a doubling: the regroup before it must be over
            doublings += 1
            left_at_doubling.append(before)
        else:  # a write that started no regroup: what it split
            most = max(most, before - digest.regrouping())
    assert left_at_doubling == [0, 0, 0], "no regroup is finished at once"
    assert doublings == 3 and digest.leaf_bits == leaf_bits_for(len(entries)) == 15
    assert 1 <= most <= 4
    assert digest.root == Digest.of(entries.items()).root


def test_a_regroup_step_looks_at_a_bounded_number_of_old_leaves() -> None:
    """Near a regroup's end most of its order is leaves that writes split already: a
    step passes over at most REGROUP_LOOKS of them per leaf it may split."""
    from rumordb.core.digest import REGROUP_LOOKS

    digest = Digest()
    entries = full(4 * 4096)
    for key, fp in entries.items():
        digest.set(key, fp)  # the last one doubles: a regroup of 4 096 old leaves starts
    assert digest.regrouping() > 3_000
    order = digest._old_order
    for index in order[1:]:  # split every old leaf but the one the order pops last...
        digest._split(index)  # ...as writes landing in them would
    left = len(order)
    digest.regroup(1)
    assert left - len(order) <= REGROUP_LOOKS, "a bounded look, not the whole order"
    while digest.regroup(1):
        pass
    assert digest.regrouping() == 0 and digest.root == Digest.of(entries.items()).root


# (key, its version: None removes it). A quarter of the keys share 7 hashes: key hashes
# that collide, which the inline placement must leave to ``_place``.
_batch_entry = st.tuples(_keys, st.one_of(st.none(), st.integers(1, 3)))


def _colliding_hash(key: str) -> int:
    number = int(key[1:])
    return key_hash(key) if number % 4 else (number % 7 * 0x9E3779B97F4A7C15) & MASK64


@settings(max_examples=120, deadline=None)
@given(st.lists(st.lists(_batch_entry, max_size=60), max_size=12))
def test_a_batch_applies_exactly_as_placing_its_keys_one_by_one(
    batches: list[list[tuple[str, int | None]]],
) -> None:
    """``apply`` places new keys inline (no regroup under way, no doubling due); the
    leaves (their entries in the same order), the shape and the root are those of
    ``_place`` and ``remove`` called key by key, across doublings, regroups and key
    hashes that collide."""
    batched, single = Digest(min_leaf_bits=1), Digest(min_leaf_bits=1)
    for batch in batches:
        keys = [key for key, _ in batch]
        khashes = [_colliding_hash(key) for key in keys]
        versions = [version for _, version in batch]
        ehashes = [
            None if v is None else mix64(kh, v) for kh, v in zip(khashes, versions, strict=True)
        ]
        batched.apply(keys, khashes, ehashes)
        for key, khash, ehash in zip(keys, khashes, ehashes, strict=True):
            if ehash is None:
                single.remove(key, khash)
            else:
                single._place(key, khash, ehash)
        assert batched.leaf_bits == single.leaf_bits and len(batched) == len(single)
        assert batched._leaves == single._leaves and batched._old_leaves == single._old_leaves
        assert batched.root == single.root


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(_keys, st.integers(0, 3), st.booleans()), max_size=40), max_size=12
    ),
    st.sampled_from([1 << 2, 1 << 4]),
)
def test_a_digest_with_sharded_leaves_equals_one_with_a_dict_of_them(
    batches: list[list[tuple[str, int, bool]]], split_leaves: int
) -> None:
    """``core.leaf_shards`` past ``SPLIT_LEAVES`` (made tiny here): folds (``apply``),
    regroups and shrinks give the buckets and entries of a fresh build with one dict."""
    entries: dict[str, int] = {}
    with mock.patch.object(digest_module, "SPLIT_LEAVES", split_leaves):
        digest, sharded = Digest(min_leaf_bits=1), False
        for batch in batches:
            keys = [key for key, _, _ in batch]
            ehashes: list[int | None] = []
            for key, version, remove in batch:
                if remove:
                    entries.pop(key, None)
                    ehashes.append(None)
                else:
                    entries[key] = fingerprint(version + 1, "n1", False)
                    ehashes.append(mix64(key_hash(key), entries[key]))
            digest.apply(keys, key_hashes(keys), ehashes)
            sharded |= isinstance(digest._leaves, LeafShards)
    fresh = Digest.of(entries.items(), min_leaf_bits=1)
    assert not isinstance(fresh._leaves, LeafShards)
    assert len(digest) == len(fresh) == len(entries)
    _assert_same_buckets_and_entries(digest, fresh)
    if len(entries) > 4 * split_leaves:
        assert sharded, "a shape past the split took shards"


def test_a_small_tree_keeps_no_levels_and_answers_like_a_dense_one() -> None:
    """Below ``DENSE_KEYS`` keys no level above the leaves is kept (a one-key digest was
    2.4 KB of empty buckets); its root and buckets are those of a tree that keeps them."""
    entries = full(digest_module.DENSE_KEYS - 1)
    small = Digest.of(entries.items())
    with mock.patch.object(digest_module, "DENSE_KEYS", 0):
        dense = Digest.of(entries.items())
    assert small._levels == {} and dense._levels
    assert small.root == dense.root != 0
    for width in (0, 4, 8, small.leaf_bits):
        assert small.hashes(width, range(1 << width)) == dense.hashes(width, range(1 << width))
    small.set("one more", fingerprint(7, "n2", False))
    assert small._levels and small.root == Digest.of([*entries.items(), ("one more", fingerprint(7, "n2", False))]).root  # fmt: skip
