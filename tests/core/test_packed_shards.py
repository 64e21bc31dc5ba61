"""A record table past its split: the same mapping as one dict, whatever the operations."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from rumordb.core import Node
from rumordb.core.packed_shards import SHARDS, PackedShards
from rumordb.core.record import Record
from rumordb.core.record_table import RecordTable

keys = st.text(alphabet="abcdefgh", min_size=1, max_size=3)
operations = st.lists(
    st.tuples(st.sampled_from(["put", "put_new", "replace", "pop"]), st.lists(keys, max_size=6)),
    max_size=40,
)


def record(n: int, tombstone: bool = False) -> Record:
    return Record(b"v%d" % n, "text/plain", {"n1": n}, n, "n1", tombstone)


@settings(max_examples=300, deadline=None)
@given(operations, st.integers(1, 12))
def test_a_table_that_splits_holds_what_a_dict_would(
    ops: list[tuple[str, list[str]]], split_at: int
) -> None:
    table, model = RecordTable(split_at=split_at), {}
    splits: list[int] = []
    table.on_split += (lambda: splits.append(len(table)),)
    n = 0
    for op, some in ops:
        for key in some:
            n += 1
            if op == "put":
                assert table.put(key, record(n)) == (key not in model)
                model[key] = record(n)
            elif op == "replace":
                assert table.replace(key, record(n)) == model.get(key)
                model[key] = record(n)
            elif op == "pop":
                assert table.pop(key) == (key in model)
                model.pop(key, None)
        if op == "put_new":
            fresh = {key: record(n + i) for i, key in enumerate(some) if key not in model}
            table.put_new(fresh)
            model.update(fresh)
        assert len(table) == len(model) and set(table) == set(model) == set(table.keys())
        assert dict(table.items()) == model and table == model
        stored = table.keys()  # the view the merge loop tests membership in
        for key in model:
            assert key in table and key in stored and table[key] == model[key]
            assert table.version_token(key) is table.version_token(key) is not None
        assert table.get("zz-absent") is None and "zz-absent" not in stored
    assert len(splits) <= 1, "a table splits once"
    if splits:
        assert splits[0] >= split_at and isinstance(table._packed, PackedShards)


def test_a_key_held_before_the_split_is_overwritten_in_place_and_its_token_changes() -> None:
    table = RecordTable(split_at=3)
    for i in range(3):
        table.put(f"old{i}", record(i))
    assert isinstance(table._packed, PackedShards)  # split at the third key
    token = table.version_token("old1")
    table.put("old1", record(9))  # held in the base: stays there, no second copy
    assert table.version_token("old1") is not token and table["old1"] == record(9)
    for i in range(SHARDS * 4):  # new keys spread over the shards
        table.put(f"new{i}", record(i))
    assert len(table) == 3 + SHARDS * 4 == len(set(table))
    assert table.pop("old1") and table.get("old1") is None and len(table) == 2 + SHARDS * 4
    table.put("old1", record(10))  # back, now in a shard
    assert table["old1"] == record(10) and len(table) == 3 + SHARDS * 4


def test_the_view_and_the_reader_follow_the_token_when_the_table_splits() -> None:
    node = Node("n1", "http://127.0.0.1:1", rng=random.Random(1), now=1_000.0)
    node.store.records._split_at = 3
    bound = []
    node.view.follow_version_token(bound.append)
    for i in range(5):
        node.put(f"k{i}", b"v", "text/plain", 1_000.0)
    assert len(bound) == 2 and bound[-1] == node.store.records.version_token
    assert node.view.version_token("k4") is node.store.records.version_token("k4") is not None
    plan = node.read("k4")
    assert plan.token is node.view.version_token("k4") is not None  # type: ignore[union-attr]
