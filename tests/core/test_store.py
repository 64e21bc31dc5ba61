"""The store: records with a lazy sorted index and lazy digests that match a rebuild."""

import os
import subprocess
import sys
from itertools import islice

from hypothesis import given, settings
from hypothesis import strategies as st

from rumordb.core.digest import Digest, fingerprint
from rumordb.core.hlc import pack
from rumordb.core.record import Record
from rumordb.core.store import SMALL_INDEX, Store


def rec(ms: int, tombstone: bool = False, origin: str = "a") -> Record:
    return Record(
        b"" if tombstone else b"v", "text/plain", {origin: ms}, pack(ms), origin, tombstone
    )


def _rebuilt(store: Store) -> Digest:
    return Digest.of((k, fingerprint(r.hlc, r.origin, r.tombstone)) for k, r in store.items())


def no_owners(key: str) -> list[str]:
    raise AssertionError("unscoped digests never ask for owners")


def test_put_returns_what_it_replaced_and_drop_forgets() -> None:
    store = Store()
    assert store.put("k", rec(1)) is None
    assert store.put("k", rec(2)) == rec(1)
    store.drop("k")
    assert store.get("k") is None and len(store) == 0
    store.drop("k")  # dropping an absent key is harmless


def test_listing_keeps_order_skips_tombstones_and_follows_later_changes() -> None:
    store = Store()
    for key in ("b", "a", "c"):
        store.put(key, rec(1))
    assert store.list_live("", 10, "") == ["a", "b", "c"]  # builds the index
    store.put("ab", rec(2))
    store.put("b", rec(3, tombstone=True))
    store.drop("c")
    assert store.list_live("", 10, "") == ["a", "ab"]
    assert store.list_live("a", 1, "a") == ["ab"]


def test_the_lazy_digest_equals_one_rebuilt_from_the_records() -> None:
    store = Store()
    for i in range(50):
        store.put(f"k{i}", rec(i + 1))
    assert store.digest(no_owners, "me").hashes(0, [0]) == _rebuilt(store).hashes(0, [0])
    store.put("k1", rec(99, tombstone=True))
    store.drop("k2")
    assert store.digest(no_owners, "me").hashes(0, [0]) == _rebuilt(store).hashes(0, [0])


def test_a_scoped_digest_covers_only_keys_both_own_and_follows_changes() -> None:
    store = Store()
    owners = {"x": ["me", "peer"], "y": ["me", "other"], "z": ["peer", "me"]}
    for key in owners:
        store.put(key, rec(1))
    scoped = store.digest_for("peer", 1, owners.__getitem__, "me")
    want = Digest.of((k, fingerprint(rec(1).hlc, "a", False)) for k in ("x", "z"))
    assert scoped.hashes(0, [0]) == want.hashes(0, [0])
    store.drop("z")
    again = store.digest_for("peer", 1, owners.__getitem__, "me")
    assert again.hashes(0, [0]) == Digest.of([("x", fingerprint(rec(1).hlc, "a", False))]).hashes(
        0, [0]
    )


def test_a_new_ring_epoch_rebuilds_the_scoped_digest() -> None:
    store = Store()
    store.put("x", rec(1))
    first = store.digest_for("peer", 1, lambda _: ["me", "peer"], "me")
    assert store.digest_for("peer", 1, lambda _: ["me"], "me") is first, "cached per epoch"
    assert store.digest_for("peer", 2, lambda _: ["me"], "me").hashes(0, [0]) == {}


@settings(max_examples=60, deadline=None)
@given(
    stable=st.sets(st.text("abcd", min_size=1, max_size=4), min_size=1, max_size=40),
    churn=st.lists(st.tuples(st.text("abcd", min_size=1, max_size=4), st.booleans()), max_size=80),
    page=st.integers(1, 7),
)
def test_a_scan_under_concurrent_writes_returns_every_lasting_key_exactly_once(
    stable: set[str], churn: list[tuple[str, bool]], page: int
) -> None:
    """Between pages, other keys come and go and lasting keys are rewritten."""
    store = Store()
    for key in stable:
        store.put(key, rec(1))
    seen: list[str] = []
    after, steps = "", iter(churn)
    while True:
        keys = store.list_live("", page, after)
        seen.extend(keys)
        if len(keys) < page:
            break
        after = keys[-1]
        for key, add in islice(steps, 3):
            if key in stable:
                store.put(key, rec(2))  # a rewrite: the key exists throughout
            elif add:
                store.put(key, rec(2))
            else:
                store.drop(key)
    assert seen == sorted(set(seen)), "in order, no key twice"
    assert stable <= set(seen)


def test_a_prefix_scan_starts_at_the_prefix_or_after_the_cursor() -> None:
    store = Store()
    for key in ("a", "ba", "bb", "bc", "c"):
        store.put(key, rec(1))
    assert store.list_live("b", 10, "") == ["ba", "bb", "bc"]
    assert store.list_live("b", 10, "a") == ["ba", "bb", "bc"]
    assert store.list_live("b", 10, "bb") == ["bc"]
    assert store.list_live("b", 10, "c") == []


def test_folding_in_slices_defers_the_digest_then_equals_a_rebuild() -> None:
    store = Store()
    for i in range(3_000):
        store.put(f"k{i}", rec(i + 1))
    assert store.ready_digest(no_owners, "me", 1_000) is None, "3 000 keys pending > 1 000"
    assert store.fold(1_000, no_owners, "me") == 2_000
    store.put("late", rec(1))  # writes keep arriving between slices
    store.drop("k5")
    while store.fold(1_000, no_owners, "me"):
        pass
    ready = store.ready_digest(no_owners, "me", 1_000)
    assert ready is not None and ready.root == _rebuilt(store).root


def test_a_folded_backlog_gives_back_the_tables_of_its_pending_keys() -> None:
    """A dict keeps its table when emptied: a backlog of 20 000 keys would leave ~1 MB of
    empty slots in the store's pending-key table for the rest of the run."""
    store = Store()
    small = sys.getsizeof({})
    for i in range(20_000):
        store.put(f"k{i}", rec(i + 1))
    while store.fold(1_000, no_owners, "me"):
        pass
    assert sys.getsizeof(store._stale) == small
    store.put("after", rec(1))  # the next write stashes and folds as before
    assert store.fold(None, no_owners, "me") == 0
    ready = store.ready_digest(no_owners, "me", 1_000)
    assert ready is not None and ready.root == _rebuilt(store).root


def test_a_fold_of_every_stale_key_places_them_newest_first_as_slices_do() -> None:
    """A fold that takes every stale key at once (an ingest's) visits them in the order
    slices would, newest first: the leaves hold their entries in the same order, so the
    pairs a leaf step sends (and the simulator's traces) do not depend on the budget."""
    whole, sliced = Store(), Store()
    for store in (whole, sliced):
        for i in range(3_000):  # in 4 096 leaves: many hold two keys or more
            store.put(f"k{i}", rec(i + 1))
    assert whole.fold(None, no_owners, "me") == 0
    while sliced.fold(700, no_owners, "me"):
        pass
    assert whole._digest is not None and sliced._digest is not None
    assert whole._digest._leaves == sliced._digest._leaves


def test_a_scoped_digest_builds_in_slices_under_writes() -> None:
    store = Store()
    for i in range(2_500):
        store.put(f"k{i}", rec(1))
    store.digest(no_owners, "me")
    both = lambda key: ["me", "peer"] if hash(key) % 2 else ["me"]  # noqa: E731
    assert store.ready_digest_for("peer", 1, both, "me", 1_000) is None, "a build began"
    store.fold(1_000, both, "me")
    store.put("k1", rec(7))
    store.drop("k2")
    store.put("new", rec(3))
    while store.fold(1_000, both, "me"):
        pass
    scoped = store.ready_digest_for("peer", 1, both, "me", 1_000)
    want = Digest.of(
        (k, fingerprint(r.hlc, r.origin, r.tombstone))
        for k, r in store.items()
        if "peer" in both(k)
    )
    assert scoped is not None and scoped.root == want.root != 0


def test_a_bulk_load_indexes_sorts_and_counts_like_puts() -> None:
    from rumordb.core.keyring import RESERVED_PREFIX

    loaded, put = Store(), Store()
    items = [("b", rec(1)), (RESERVED_PREFIX + "x", rec(1)), ("a", rec(2))]
    loaded.load(items)
    for key, record in items:
        put.put(key, record)
    assert loaded.list_live("", 10, "") == put.list_live("", 10, "") == ["a", "b"]
    assert loaded.reserved == put.reserved == 1
    assert loaded.digest(no_owners, "me").root == put.digest(no_owners, "me").root


def test_a_doubling_regroups_the_digest_in_the_drivers_fold_slices() -> None:
    store = Store()
    for i in range(4 << 12):  # the 2**12-leaf shape holds 4 keys a leaf: the last one doubles
        store.put(f"k{i}", rec(i + 1))
    digest = store.digest(no_owners, "me")  # an unbounded fold starts the regroup only
    assert digest.regrouping() > 0 and store.pending_folds() > 0
    slices = 0
    while store.fold(1_000, no_owners, "me"):
        slices += 1
    assert slices > 4 and digest.regrouping() == 0, "many bounded slices, then done"
    assert digest.root == _rebuilt(store).root


# (operation, key, ms): put / put_new of a key not held / drop / fold a slice of 2 keys
operations = st.lists(
    st.tuples(
        st.sampled_from(["put", "put_new", "drop", "fold"]),
        st.sampled_from(["a", "b", "c", "d"]),
        st.integers(1, 5),
        st.booleans(),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "x"]), unique=True), operations)
def test_the_fingerprints_writes_stash_fold_into_the_digest_a_rebuild_gives(
    loaded: list[str], steps: list[tuple[str, str, int, bool]]
) -> None:
    store = Store()
    store.load((key, rec(9)) for key in loaded)  # loaded keys have no stashed fingerprint
    for operation, key, ms, tombstone in steps:
        if operation == "put":
            store.put(key, rec(ms, tombstone, origin=key))
        elif operation == "put_new" and store.get(key) is None:
            store.put_new({key: rec(ms, tombstone)})
        elif operation == "drop":
            store.drop(key)
        elif operation == "fold":
            store.fold(2, no_owners, "me")
    assert store.digest(no_owners, "me").root == _rebuilt(store).root
    assert store.pending_folds() == 0


_LEAF_ORDER = """
import hashlib
from rumordb.core.hlc import pack
from rumordb.core.record import Record
from rumordb.core.store import SMALL_INDEX, Store

store = Store()
for i in range(2000):
    store.put(f"k{i}", Record(b"v", "text/plain", {"a": i}, pack(i), "a", False))
while store.fold(300, lambda key: [], "a"):
    pass
digest = store.digest(lambda key: [], "a")
bits = digest.leaf_bits
print(hashlib.sha256(repr([digest.pairs(bits, i) for i in range(1 << bits)]).encode()).hexdigest())
"""


def test_folded_leaves_are_the_same_whatever_the_process_hash_seed() -> None:
    """The stale keys fold in insertion order, not a set's (salted) order: leaf entries go
    on the wire in leaf order, so a set made the simulator's traces differ by process."""
    outputs = {
        subprocess.run(
            [sys.executable, "-c", _LEAF_ORDER],
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1


@given(
    st.lists(
        st.tuples(st.sampled_from(["put", "drop"]), st.text("abc", min_size=1, max_size=3)),
        max_size=120,
    ),
    st.text("abc", max_size=2),
    st.text("abc", max_size=3),
)
@settings(max_examples=60, deadline=None)
def test_listings_are_the_same_below_and_above_the_small_index_bound(
    ops: list[tuple[str, str]], prefix: str, after: str
) -> None:
    """Below SMALL_INDEX keys a listing sorts on the fly; above, the SortedList answers:
    both give the keys a sorted scan of the records would."""
    store = Store()
    for op, key in ops:
        if op == "put":
            store.put(key, rec(1))
        else:
            store.drop(key)
        expected = sorted(
            k for k in store.records if k.startswith(prefix) and (not after or k > after)
        )[:50]
        assert store.list_live(prefix, 50, after) == expected


def test_the_sorted_index_is_made_only_above_the_small_index_bound() -> None:
    store = Store()
    store.put_new({f"k{i:03}": rec(1) for i in range(SMALL_INDEX)})
    assert store._sorted_keys is None  # a small store keeps no index
    store.put("k999", rec(1))
    assert store._sorted_keys is not None
    assert list(store._sorted_keys) == sorted(store.keys())


def test_a_store_that_folded_nothing_shares_the_empty_digest_and_never_changes_it() -> None:
    first, second = Store(), Store()
    assert first.digest(no_owners, "n1") is second.digest(no_owners, "n1")
    first.put("k", rec(1))
    own = first.digest(no_owners, "n1")
    assert own is not second.digest(no_owners, "n1") and len(own) == 1
    assert len(second.digest(no_owners, "n1")) == 0 and second.digest(no_owners, "n1").root == 0
    assert own.root == _rebuilt(first).root
