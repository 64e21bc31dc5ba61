"""The read-only view: what a driver may read of a node, always current, never a handle."""

import random

import pytest

from rumordb.core import Node, NodeConfig, StaticMembership, WriteCommand


def node(node_id: str = "n1", **config: object) -> Node:
    return Node(
        node_id, f"mem://{node_id}", rng=random.Random(1), now=100.0, config=NodeConfig(**config)
    )  # type: ignore[arg-type]


def test_view_reads_what_the_node_holds_without_exposing_it() -> None:
    n = node()
    n.join("n2", "mem://n2", 0, 100.0)
    record = n.write(WriteCommand("k", b"1"), 100.0).record
    view = n.view
    assert view.version("k") == record and dict(view.items()) == {"k": record}
    assert view.key_count() == (1, 0) and view.peers() == ["n2"]
    assert {m.id for m in view.members()} == {"n1", "n2"} and view.me().id == "n1"
    assert view.is_alive("n2") and view.address("n2") == "mem://n2"
    counters = view.counters()
    counters.messages_sent += 99
    assert n.view.counters().messages_sent == 0, "a snapshot, not the live counters"
    assert view.incarnation == 0 and view.me().heartbeat == 0 and view.member_count() == 2


def test_the_view_follows_the_node_and_counts_tombstones() -> None:
    n = node()
    view = n.view
    n.write(WriteCommand("a", b"1"), 100.0)
    n.write(WriteCommand("b", b"1"), 100.0)
    n.write(WriteCommand("b", delete=True), 100.1)
    assert view.key_count() == (1, 1) and view.get("b") is None and view.version("b")
    assert view.list_keys() == ["a"] and view.owners("a") == ["n1"]
    assert view.ownership() == {"n1": pytest.approx(1.0)}


def test_a_static_member_table_answers_the_same_questions() -> None:
    ids = ("n1", "n2", "n3")
    members = StaticMembership("n1", ids, {m: i for i, m in enumerate(ids)})
    n = Node("n1", rng=random.Random(1), now=0.0, membership=members)
    view = n.view
    assert view.peers() == ["n2", "n3"] and view.is_alive("n3")
    assert [m.id for m in view.members()] == list(ids) and view.me().id == "n1"
    assert view.incarnation == 0 and view.address("n2") == "n2"
