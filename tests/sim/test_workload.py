"""The workload stream: kinds in proportion to their rates, deterministic per seed."""

import random
from collections import Counter

from rumordb.sim.scenario import WorkloadSpec
from rumordb.sim.workload import operations, value_for


def _kinds(spec: WorkloadSpec, seed: int = 1) -> Counter[str]:
    return Counter(op.kind for op in operations(spec, 100.0, random.Random(seed)))


def test_kinds_follow_their_rates() -> None:
    kinds = _kinds(WorkloadSpec(writes_per_s=10, reads_per_s=20, lists_per_s=10))
    total = sum(kinds.values())
    assert abs(kinds["put"] / total - 0.25) < 0.05
    assert abs(kinds["read"] / total - 0.5) < 0.05
    assert abs(kinds["list"] / total - 0.25) < 0.05


def test_no_listing_rate_means_no_listings() -> None:
    assert "list" not in _kinds(WorkloadSpec(writes_per_s=10, reads_per_s=10))


def test_listings_name_no_key_and_writes_count_up() -> None:
    ops = list(operations(WorkloadSpec(writes_per_s=5, lists_per_s=5), 10.0, random.Random(2)))
    assert all(op.key == "" for op in ops if op.kind == "list")
    assert [op.seq for op in ops if op.kind == "put"] == list(
        range(1, 1 + sum(op.kind == "put" for op in ops))
    )


def test_same_seed_same_stream() -> None:
    spec = WorkloadSpec(writes_per_s=10, reads_per_s=5, lists_per_s=1, delete_fraction=0.3)
    first = list(operations(spec, 20.0, random.Random(3)))
    assert first == list(operations(spec, 20.0, random.Random(3)))


def test_values_have_the_asked_size_and_name_their_write() -> None:
    assert len(value_for(7, 100)) == 100 and value_for(7, 100).startswith(b"v7:")
    assert value_for(7, 0) == b""


def test_a_ttl_applies_to_puts_only_and_leaves_the_stream_as_it_was() -> None:
    plain = WorkloadSpec(writes_per_s=10, delete_fraction=0.3, reads_per_s=5)
    timed = WorkloadSpec(writes_per_s=10, delete_fraction=0.3, reads_per_s=5, ttl_s=2.5)
    ops = list(operations(timed, 20.0, random.Random(4)))
    assert {op.ttl_s for op in ops if op.kind == "put"} == {2.5}
    assert {op.ttl_s for op in ops if op.kind != "put"} == {0.0}
    same = list(operations(plain, 20.0, random.Random(4)))
    assert [(o.at_s, o.kind, o.key) for o in ops] == [(o.at_s, o.kind, o.key) for o in same]
