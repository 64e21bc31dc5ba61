"""The wire shape of anti-entropy steps: packed hashes, and steps refused whole."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from rumordb.core import Node, NodeConfig, anti_entropy_wire
from rumordb.core.bounds import InvalidMessage
from rumordb.core.messages import DigestStep, LeafEntries, SyncRecords, encode


def _node(node_id: str, *peers: str) -> Node:
    n = Node(node_id, rng=random.Random(1), now=0.0, config=NodeConfig())
    for peer in peers:
        n.join(peer, peer, 0, 0.0)
    return n


@given(st.lists(st.integers(0, 2**64 - 1), max_size=50))
def test_packed_hashes_round_trip_at_8_bytes_each(values: list[int]) -> None:
    packed = anti_entropy_wire.pack(values)
    assert len(packed) == 8 * len(values) and list(anti_entropy_wire.unpack(packed)) == values


# --- hostile steps: refused whole and counted, the node goes on ------------------------
@settings(max_examples=200, deadline=None)
@given(
    st.integers(-2, 30),
    st.integers(-2, 30),
    st.lists(st.integers(-2, 1 << 20), max_size=40),
    st.binary(max_size=400),
    st.integers(-2, 40),
)
def test_a_malformed_digest_step_is_refused_and_counted_never_a_crash(
    above: int, width: int, parents: list[int], hashes: bytes, leaf_bits: int
) -> None:
    b = _node("b", "a")
    b.put("k", b"v", "text/plain", 0.0)
    step = DigestStep("a", 1, above, width, parents, hashes, leaf_bits)
    try:
        b.receive(encode(step), 0.0)
    except InvalidMessage:
        assert b.counters.messages_refused == 1
    else:
        assert b.counters.messages_refused == 0


@settings(max_examples=200, deadline=None)
@given(
    st.integers(-2, 30),
    st.lists(st.integers(-2, 1 << 13), max_size=20),
    st.lists(st.binary(max_size=48), max_size=20),
    st.booleans(),
)
def test_malformed_leaf_entries_are_refused_and_counted_never_a_crash(
    width: int, leaves: list[int], pairs: list[bytes], more: bool
) -> None:
    b = _node("b", "a")
    b.put("k", b"v", "text/plain", 0.0)
    try:
        b.receive(encode(LeafEntries("a", 1, width, leaves, pairs, more)), 0.0)
    except InvalidMessage:
        assert b.counters.messages_refused == 1
    else:
        assert b.counters.messages_refused == 0


def test_the_shape_checks_name_what_is_wrong() -> None:
    root = (7).to_bytes(8, "little")
    assert anti_entropy_wire.step_problem(DigestStep("a", 1, 0, 0, [0], root, 12)) is None
    bad = [
        DigestStep("a", 1, 0, 0, [0], root, 99),  # a shape beyond the largest
        DigestStep("a", 1, 4, 12, [0], root, 12),  # a step of 8 bits
        DigestStep("a", 1, 4, 8, [3, 3], bytes(256), 12),  # a repeated parent
        DigestStep("a", 1, 4, 8, [16], bytes(128), 12),  # a parent outside width 4
        DigestStep("a", 1, 4, 8, [1], bytes(127), 12),  # hashes not aligned
        DigestStep("a", 1, 16, 20, list(range(1 << 15)), b"", 20),  # too many children
    ]
    assert all(anti_entropy_wire.step_problem(step) for step in bad)
    outside = anti_entropy_wire.pack([5 << 52, 1])  # a key hash in leaf 5 of width 12
    assert anti_entropy_wire.leaves_problem(LeafEntries("a", 1, 12, [4], [outside]))
    assert anti_entropy_wire.leaves_problem(LeafEntries("a", 1, 12, [5], [outside])) is None
    too_far = SyncRecords("a", 1, [], [], next_leaf=1 << 30)
    assert anti_entropy_wire.problem(too_far)
