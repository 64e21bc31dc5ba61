"""Vector clocks: node id -> counter.

A clock is a plain ``dict[str, int]`` that is never mutated after it is built:
every function here returns a new dict. Plain dicts keep the hot path cheap (msgspec
encodes them in C) and make clocks trivially comparable in tests.

``compare(a, b)`` answers how ``a`` relates to ``b``:

* ``BEFORE``: every entry of ``a`` <= ``b`` and at least one is smaller (``b`` descends ``a``)
* ``AFTER``: the mirror image (``a`` descends ``b``)
* ``EQUAL``: identical
* ``CONCURRENT``: neither descends the other (a conflict, decided by LWW in ``merge``)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

VClock = dict[str, int]


class Order(enum.Enum):
    BEFORE = "before"
    AFTER = "after"
    EQUAL = "equal"
    CONCURRENT = "concurrent"


def compare(a: Mapping[str, int], b: Mapping[str, int]) -> Order:
    a_bigger = False
    b_bigger = False
    for node, count in a.items():
        other = b.get(node, 0)
        if count > other:
            a_bigger = True
        elif count < other:
            b_bigger = True
    for node, count in b.items():
        if node not in a and count > 0:
            b_bigger = True
    if a_bigger and b_bigger:
        return Order.CONCURRENT
    if a_bigger:
        return Order.AFTER
    if b_bigger:
        return Order.BEFORE
    return Order.EQUAL


def descends(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """True when ``a`` has seen everything ``b`` has (``a`` >= ``b``)."""
    return all(a.get(node, 0) >= count for node, count in b.items())


def merge(a: Mapping[str, int], b: Mapping[str, int]) -> VClock:
    """The least clock that descends both (entry-wise maximum)."""
    merged = dict(a)
    for node, count in b.items():
        if count > merged.get(node, 0):
            merged[node] = count
    return merged


def increment(clock: Mapping[str, int], node: str) -> VClock:
    bumped = dict(clock)
    bumped[node] = bumped.get(node, 0) + 1
    return bumped


def advance(clock: Mapping[str, int], node: str, counter: int) -> VClock:
    """Set ``node``'s entry to ``counter``, or one more than it has if that is larger.

    Writers use their HLC as the counter: unique and increasing for ever, even across
    restarts and purged history, where a +1 counter could be reused.
    """
    bumped = dict(clock)
    current = bumped.get(node, 0)
    bumped[node] = counter if counter > current else current + 1
    return bumped


def to_pairs(clock: Mapping[str, int]) -> list[tuple[str, int]]:
    """Compact, canonical form: sorted (node, counter) pairs, zeros dropped."""
    return sorted((node, count) for node, count in clock.items() if count)


def from_pairs(pairs: list[tuple[str, int]] | list[list[object]]) -> VClock:
    clock: VClock = {}
    for pair in pairs:
        node, count = pair[0], pair[1]
        if not isinstance(node, str) or not isinstance(count, int) or count < 0:
            raise ValueError("a clock entry is a (node id, non-negative counter) pair")
        clock[node] = count
    return clock
