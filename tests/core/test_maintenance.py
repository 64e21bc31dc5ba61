"""What each tick and each anti-entropy interval's maintenance does."""

from __future__ import annotations

import random

from rumordb.core import Node, NodeConfig, Output, StaticMembership, WriteCommand
from rumordb.core.maintenance import expire_due, is_due, maintain, run
from rumordb.core.messages import Push, decode


def _node(peers: int = 2, **config: object) -> Node:
    n = Node("n1", "mem://n1", rng=random.Random(1), now=0.0, config=NodeConfig(**config))  # type: ignore[arg-type]
    for i in range(2, peers + 2):
        n.join(f"n{i}", f"mem://n{i}", 0, 0.0)
    return n


def test_values_whose_ttl_ran_out_become_tombstones_within_the_budget() -> None:
    n = _node()
    for i in range(5):
        n.write(WriteCommand(f"k{i}", b"v", ttl_ms=1_000), 0.0)
    out = Output()
    expire_due(n.replica, out, 0.5, 10)
    assert out.writes == [], "not yet"
    expire_due(n.replica, out, 2.0, 3)
    assert len(out.writes) == 3 and all(record.tombstone for _, record in out.writes)
    expire_due(n.replica, out, 2.0, 3)
    assert len(out.writes) == 5 and n.counters.keys_expired == 5


def test_a_static_cluster_needs_maintenance_only_for_tombstones() -> None:
    ids = ("n1", "n2")
    static = StaticMembership("n1", ids, {m: i for i, m in enumerate(ids)})
    n = Node("n1", rng=random.Random(1), now=0.0, membership=static)
    assert not is_due(n.membership, n.replica)
    n.put("k", b"v", "text/plain", 0.0)
    n.delete("k", 0.1)
    assert is_due(n.membership, n.replica)
    assert is_due(_node().membership, _node().replica), "members can come and go"


def test_purge_asks_the_members_that_do_not_hold_a_tombstone_yet() -> None:
    n = _node()
    n.put("k", b"v", "text/plain", 0.0)
    n.delete("k", 0.1)
    out = Output()
    pushes = maintain(out, n.replica, n.membership, n.owners, False, 512)
    assert pushes == [{"n2": ["k"], "n3": ["k"]}] and out.purges == []
    for peer in ("n2", "n3"):
        n.replica.tombstones.held_by("k", peer, None)
    assert maintain(out, n.replica, n.membership, n.owners, False, 512) == [{}]
    assert out.purges == ["k"], "every ring member holds it: purged"


def test_sharded_maintenance_hands_off_keys_this_node_does_not_own() -> None:
    n = _node(peers=3, sharding=True, replicas=1)
    for i in range(40):
        n.put(f"k{i}", b"v", "text/plain", 0.0, coordinate=True)
    foreign = {key for key in n.view.records() if n.owners(key) != ["n1"]}
    out = Output()
    pushes = maintain(out, n.replica, n.membership, n.owners, True, 512)
    handoff = pushes[-1]
    assert foreign and {key for keys in handoff.values() for key in keys} == foreign
    assert all(n.owners(key) == [target] for target, keys in handoff.items() for key in keys)


def test_run_pushes_each_target_its_keys_asking_for_an_acknowledgement() -> None:
    n = _node()
    n.put("k", b"v", "text/plain", 0.0)
    n.delete("k", 0.1)
    out = Output()
    run(out, n.replica, n.placement, n.outbox, 512)
    sent = {target: decode(data) for target, data in out.messages}
    assert set(sent) == {"n2", "n3"}
    for message in sent.values():
        assert isinstance(message, Push) and message.ack
        assert [u.key for u in message.updates] == ["k"] and message.updates[0].record.tombstone
