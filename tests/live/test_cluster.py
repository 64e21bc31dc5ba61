"""The ``/cluster`` body: members in order with their ages, key counts, storage, ownership."""

from __future__ import annotations

import random

import pytest

from rumordb.core import Node, NodeConfig, WriteCommand
from rumordb.live.cluster import cluster_view
from rumordb.live.storage import StorageUsage


def node(**config: object) -> Node:
    n = Node("n2", "http://n2", rng=random.Random(1), now=100.0, config=NodeConfig(**config), mono=50.0)  # type: ignore[arg-type]  # fmt: skip
    n.join("n1", "http://n1", 3, 100.0, mono=50.0)
    n.write(WriteCommand("a", b"1"), 100.0)
    n.write(WriteCommand("b", b"1"), 100.0)
    n.write(WriteCommand("b", delete=True), 100.1)
    return n


def test_members_are_sorted_by_id_and_aged_on_the_monotonic_clock() -> None:
    body = cluster_view(node().view, "http://n2", sharding=False, replicas=3, usage=None, now_mono=52.5)  # fmt: skip
    assert [m["id"] for m in body["members"]] == ["n1", "n2"]
    peer, me = body["members"]
    assert peer == {
        "id": "n1",
        "url": "http://n1",
        "state": "alive",
        "incarnation": 3,
        "heartbeat": 0,
        "last_heartbeat_age_s": 2.5,
    }
    assert me["last_heartbeat_age_s"] == 0.0 and me["url"] == "http://n2"
    assert body | {"members": []} == {
        "node_id": "n2",
        "url": "http://n2",
        "sharding": False,
        "replicas": 3,
        "keys": 1,
        "tombstones": 1,
        "storage": None,
        "members": [],
        "ownership": None,
    }


def test_a_member_heard_after_now_is_not_given_a_negative_age() -> None:
    body = cluster_view(node().view, "u", sharding=False, replicas=3, usage=None, now_mono=10.0)
    assert body["members"][0]["last_heartbeat_age_s"] == 0.0


def test_sharded_it_shows_ownership_and_the_storage_usage() -> None:
    usage = StorageUsage(4096, 0, 0, 2, 0, True)
    body = cluster_view(
        node(sharding=True, replicas=2).view, "u", sharding=True, replicas=2, usage=usage,
        now_mono=50.0,
    )  # fmt: skip
    assert body["ownership"] == {"n1": pytest.approx(0.5, abs=0.5), "n2": pytest.approx(0.5, abs=0.5)}  # fmt: skip
    assert sum(body["ownership"].values()) == pytest.approx(1.0)
    assert body["storage"] == {
        "db_bytes": 4096,
        "wal_bytes": 0,
        "free_bytes": 0,
        "rows": 2,
        "log_rows": 0,
        "reclaims": True,
    }
