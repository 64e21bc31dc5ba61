from hypothesis import given
from hypothesis import strategies as st

from rumordb.core.vclock import Order, compare, descends, from_pairs, increment, merge, to_pairs

clocks = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 5), max_size=4)


def test_compare_names_every_relation() -> None:
    assert compare({"a": 1}, {"a": 1}) is Order.EQUAL
    assert compare({"a": 1}, {"a": 2}) is Order.BEFORE
    assert compare({"a": 2, "b": 1}, {"a": 2}) is Order.AFTER
    assert compare({"a": 1}, {"b": 1}) is Order.CONCURRENT
    assert compare({}, {}) is Order.EQUAL
    assert compare({"a": 0}, {}) is Order.EQUAL


def test_increment_makes_a_descendant() -> None:
    clock = {"a": 3, "b": 1}
    bumped = increment(clock, "b")
    assert bumped == {"a": 3, "b": 2}
    assert compare(bumped, clock) is Order.AFTER
    assert clock == {"a": 3, "b": 1}, "clocks are never mutated"


@given(clocks, clocks)
def test_compare_is_antisymmetric(a: dict[str, int], b: dict[str, int]) -> None:
    mirror = {Order.BEFORE: Order.AFTER, Order.AFTER: Order.BEFORE}
    order = compare(a, b)
    assert compare(b, a) is mirror.get(order, order)


@given(clocks, clocks)
def test_merge_is_the_least_common_descendant(a: dict[str, int], b: dict[str, int]) -> None:
    m = merge(a, b)
    assert descends(m, a) and descends(m, b)
    assert compare(merge(a, b), merge(b, a)) is Order.EQUAL
    assert all(m.get(k, 0) in (a.get(k, 0), b.get(k, 0)) for k in m)


@given(clocks)
def test_compact_pairs_round_trip(clock: dict[str, int]) -> None:
    pairs = to_pairs(clock)
    assert pairs == sorted(pairs)
    assert compare(from_pairs(pairs), clock) is Order.EQUAL
