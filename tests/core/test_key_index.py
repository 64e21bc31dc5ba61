"""``add_new`` leaves the index exactly as adding each key with ``SortedList.add`` does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from sortedcontainers import SortedList

from rumordb.core.key_index import add_new

keys = st.text(alphabet="abcdefgh/0123", min_size=1, max_size=6)


def index_of(keys: list[str] | set[str], load: int = 1000) -> SortedList[str]:
    """A SortedList with a small load factor, so that few keys span many sublists."""
    index: SortedList[str] = SortedList()
    index._reset(load)
    index.update(keys)
    return index


def check(index: SortedList[str]) -> None:
    index._check()  # sortedcontainers' own invariant check: maxes, lengths, order


@settings(max_examples=300, deadline=None)
@given(
    held=st.sets(keys, min_size=1, max_size=400),
    batches=st.lists(st.sets(keys, max_size=40), max_size=4),  # mostly under a quarter
    load=st.sampled_from((4, 8, 1000)),
)
def test_bulk_insert_equals_one_add_per_key(
    held: set[str], batches: list[set[str]], load: int
) -> None:
    index = index_of(held, load)
    expected = set(held)
    for batch in batches:
        fresh = batch - expected
        add_new(index, fresh)
        expected |= fresh
        check(index)
        assert list(index) == sorted(expected)
        assert len(index) == len(expected)
    if expected:  # positional access rebuilds the cleared index
        assert index[len(expected) // 2] == sorted(expected)[len(expected) // 2]
    assert list(index.irange("b", "d")) == [k for k in sorted(expected) if "b" <= k <= "d"]


def test_keys_past_the_last_sublist_are_split_into_load_sized_sublists() -> None:
    index = index_of([f"a{i:04d}" for i in range(100)], load=10)
    add_new(index, [f"b{i:04d}" for i in range(20)])
    check(index)
    assert max(map(len, index._lists)) <= 20
    assert index[-1] == "b0019" and len(index) == 120


def test_nothing_to_add_changes_nothing() -> None:
    index: SortedList[str] = SortedList(["a", "b"])
    add_new(index, [])
    assert list(index) == ["a", "b"]


def test_a_split_leaves_no_sublist_shorter_than_half_the_load() -> None:
    # 21 keys into one middle sublist of 10 (load 10): load-sized cuts left a piece of 1
    # between full ones (found by hypothesis: SortedList._check refuses it)
    index = index_of([f"a{i:03d}" for i in range(100)], load=10)
    add_new(index, [f"a050_{i:02d}" for i in range(21)])
    check(index)
    assert min(map(len, index._lists[:-1])) >= 5 and len(index) == 121


class Counted(str):
    """A key that counts its comparisons (sorting, bisecting and merging all use ``<``)."""

    compared = 0

    def __lt__(self, other: object) -> bool:
        Counted.compared += 1
        return str.__lt__(self, other)  # type: ignore[operator]


def test_a_few_keys_spread_over_many_sublists_compare_with_few_keys_not_whole_sublists() -> None:
    # keys spread by hash put one or two in each sublist: a merge pass per sublist read
    # the whole index for a small batch (1 000 keys into 1M: 50-75 ms)
    index = index_of([Counted(f"k{i:05d}") for i in range(20_000)], load=1000)
    fresh = [Counted(f"k{i:05d}x") for i in range(0, 20_000, 1000)]  # one per sublist
    Counted.compared = 0
    add_new(index, fresh)
    check(index)
    assert len(index) == 20_020 and index[1] == "k00000x"
    assert Counted.compared < 20 * 40, "a bisect per key, not a pass over 20 000 keys"
