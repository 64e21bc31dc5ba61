from collections import Counter

import pytest

from rumordb.core.ring import Ring

KEYS = [f"user:{i}" for i in range(10_000)]
NODES = [f"n{i}" for i in range(1, 11)]


def test_primary_load_is_balanced_with_default_vnodes() -> None:
    ring = Ring(NODES)
    load = Counter(ring.owners(key, 1)[0] for key in KEYS)
    mean = len(KEYS) / len(NODES)
    assert max(load.values()) / mean < 1.3
    assert min(load.values()) / mean > 0.7


def test_a_joining_node_takes_about_one_nth_of_the_keys() -> None:
    before = Ring(NODES)
    after = Ring([*NODES, "n11"])
    moved = [k for k in KEYS if before.owners(k, 1) != after.owners(k, 1)]
    assert all(after.owners(k, 1) == ["n11"] for k in moved), "keys move only to the newcomer"
    assert 0.5 / 11 < len(moved) / len(KEYS) < 1.5 / 11


def test_owners_are_distinct_and_stable() -> None:
    ring = Ring(NODES)
    for key in KEYS[:500]:
        owners = ring.owners(key, 3)
        assert len(set(owners)) == 3
        assert owners == Ring(list(reversed(NODES))).owners(key, 3), (
            "order of joining is irrelevant"
        )
        assert list(ring.walk(key))[:3] == owners


def test_fewer_members_than_replicas_means_everyone() -> None:
    assert sorted(Ring(["a", "b"]).owners("k", 3)) == ["a", "b"]
    assert Ring([]).owners("k", 3) == []


def test_ownership_fractions_cover_the_ring() -> None:
    shares = Ring(NODES).ownership()
    assert sum(shares.values()) == pytest.approx(1.0)
    assert max(shares.values()) < 0.15


def test_vnodes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Ring(NODES, vnodes=0)
