"""LWW merge laws, property-tested on histories that real nodes could produce."""

import itertools
import random
from functools import reduce

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from rumordb.core import hlc
from rumordb.core.merge import Outcome, decide, merge
from rumordb.core.record import Record, expired_tombstone, expires_at
from rumordb.core.vclock import increment
from rumordb.core.vclock import merge as merge_clocks


def history(seed: int, n_writes: int, skew_ms: dict[str, int]) -> list[Record]:
    """Versions of one key written by three nodes whose wall clocks are skewed.

    Each write either builds on a version its node has seen (causal) or not (concurrent);
    nodes absorb the HLC of what they have seen, as ``core.node`` does.
    """
    rng = random.Random(seed)
    nodes = sorted(skew_ms)
    seen: dict[str, list[Record]] = {n: [] for n in nodes}
    clock_of: dict[str, int] = dict.fromkeys(nodes, 0)
    versions: list[Record] = []
    for step in range(n_writes):
        writer = rng.choice(nodes)
        if versions and rng.random() < 0.5:
            seen[writer].append(rng.choice(versions))  # it received someone's version
        base = reduce(merge, seen[writer][1:], seen[writer][0]) if seen[writer] else None
        floor = max((r.hlc for r in seen[writer]), default=0)
        clock_of[writer] = hlc.send(max(clock_of[writer], floor), 1_000 * step + skew_ms[writer])
        clock = increment(base.clock if base else {}, writer)
        for r in seen[writer]:
            clock = merge_clocks(clock, r.clock) if rng.random() < 0.3 else clock
        record = Record(
            f"{writer}{step}".encode(),
            "text/plain",
            increment(clock, writer),
            clock_of[writer],
            writer,
        )
        versions.append(record)
        seen[writer].append(record)
    return versions


histories = st.builds(
    history,
    st.integers(0, 10_000),
    st.integers(1, 12),
    st.fixed_dictionaries({n: st.integers(-60_000, 60_000) for n in ("a", "b", "c")}),
)


@given(histories, st.data())
def test_merge_is_commutative_associative_idempotent(
    versions: list[Record], data: st.DataObject
) -> None:
    a, b, c = (data.draw(st.sampled_from(versions)) for _ in range(3))
    assert merge(a, b) == merge(b, a)
    assert merge(merge(a, b), c) == merge(a, merge(b, c))
    assert merge(a, a) == a


@settings(max_examples=50)
@given(histories, st.randoms(use_true_random=False))
def test_any_delivery_order_with_duplicates_converges(
    versions: list[Record], rnd: random.Random
) -> None:
    deliveries_1 = versions + rnd.sample(versions, len(versions) // 2)
    deliveries_2 = list(deliveries_1)
    rnd.shuffle(deliveries_1)
    rnd.shuffle(deliveries_2)
    replica_1 = reduce(merge, deliveries_1[1:], deliveries_1[0])
    replica_2 = reduce(merge, deliveries_2[1:], deliveries_2[0])
    assert replica_1 == replica_2


@given(histories)
def test_a_causally_later_write_never_loses_whatever_the_clocks_say(versions: list[Record]) -> None:
    for older, newer in itertools.permutations(versions, 2):
        if decide(older, newer) is Outcome.DESCENDANT:
            assert merge(older, newer) == newer and merge(newer, older) == newer


def test_descendant_clock_wins_regardless_of_hlc() -> None:
    old = Record(b"old", "text/plain", {"a": 1}, hlc.pack(9_000), "a")
    new = Record(b"new", "text/plain", {"a": 2}, hlc.pack(1_000), "b")  # lower HLC
    assert decide(old, new) is Outcome.DESCENDANT
    assert merge(new, old) == new


def test_concurrent_versions_are_decided_by_hlc_then_origin() -> None:
    x = Record(b"x", "text/plain", {"a": 1}, hlc.pack(5_000), "a")
    y = Record(b"y", "text/plain", {"b": 1}, hlc.pack(6_000), "b")
    z = Record(b"z", "text/plain", {"c": 1}, hlc.pack(6_000), "c")
    assert decide(x, y) is Outcome.LWW_WON
    assert decide(y, x) is Outcome.LWW_LOST
    assert merge(y, z) == z, "equal HLC: the larger origin id breaks the tie"


def test_duplicate_and_stale_are_not_applied() -> None:
    v1 = Record(b"1", "text/plain", {"a": 1}, hlc.pack(1), "a")
    v2 = Record(b"2", "text/plain", {"a": 2}, hlc.pack(2), "a")
    assert decide(v1, v1) is Outcome.DUPLICATE
    assert decide(v2, v1) is Outcome.STALE
    assert not Outcome.STALE.applied and Outcome.NEW.applied


def with_expiries(versions: list[Record], seed: int) -> list[Record]:
    """Some versions get a TTL, and each of those the tombstone its expiry derives."""
    rng = random.Random(seed)
    out: list[Record] = []
    for record in versions:
        if rng.random() < 0.5:
            record = msgspec.structs.replace(
                record, expires=expires_at(record.hlc, rng.randrange(1, 5_000))
            )
            out.append(expired_tombstone(record))
        out.append(record)
    return out


@given(histories, st.integers(0, 1_000), st.data())
def test_merge_laws_hold_with_expiring_values_and_their_tombstones(
    versions: list[Record], seed: int, data: st.DataObject
) -> None:
    versions = with_expiries(versions, seed)
    a, b, c = (data.draw(st.sampled_from(versions)) for _ in range(3))
    assert merge(a, b) == merge(b, a)
    assert merge(merge(a, b), c) == merge(a, merge(b, c))
    assert merge(a, a) == a
    order = data.draw(st.permutations(versions))
    assert reduce(merge, order[1:], order[0]) == reduce(merge, versions[1:], versions[0])
