"""Fresh writes pushed at once (direct mail or a rumor), and gossip rounds over the queue."""

from __future__ import annotations

import random

from rumordb.core import Node, NodeConfig, Output
from rumordb.core.messages import Push, decode


def _node(peers: int, **config: object) -> Node:
    n = Node("n1", "mem://n1", rng=random.Random(1), now=0.0, config=NodeConfig(**config))  # type: ignore[arg-type]
    for i in range(2, peers + 2):
        n.join(f"n{i}", f"mem://n{i}", 0, 0.0)
    return n


def _pushes(out: Output) -> list[tuple[str, Push]]:
    found = []
    for target, data in out.messages:
        message = decode(data)
        assert isinstance(message, Push)
        found.append((target, message))
    return found


def test_a_small_cluster_gets_direct_mail_and_nothing_is_queued() -> None:
    n = _node(3)
    record = n.put("k", b"v", "text/plain", 0.0).record
    assert record is not None
    out = Output()
    n.mongering.push_fresh(out, {"k": record})
    pushes = _pushes(out)
    assert sorted(t for t, _ in pushes) == ["n2", "n3", "n4"]
    assert all(not push.relay for _, push in pushes) and n.view.queue_length() == 0


def test_a_large_cluster_gets_a_rumor_that_gossip_rounds_carry_on() -> None:
    n = _node(10, fanout=2, direct_mail_max=4, retransmit_mult=1)
    record = n.put("k", b"v", "text/plain", 0.0).record
    assert record is not None
    out = Output()
    n.mongering.push_fresh(out, {"k": record})
    assert len(_pushes(out)) == 2 and all(push.relay for _, push in _pushes(out))
    assert n.view.queue_length() == 1, "counted as sent twice, under the retransmit limit"
    rounds = Output()
    n.mongering.round(rounds)
    assert len(_pushes(rounds)) >= 1 and n.counters.rumor_rounds == 1
    for _ in range(3):
        n.mongering.round(rounds)
    assert n.view.queue_length() == 0, "retired after retransmit_limit sends"


def test_sharded_fresh_writes_go_to_each_keys_replicas_only() -> None:
    n = _node(4, sharding=True, replicas=2)
    fresh = {}
    for i in range(20):
        record = n.put(f"k{i}", b"v", "text/plain", 0.0, coordinate=True).record
        assert record is not None
        fresh[f"k{i}"] = record
    out = Output()
    n.mongering.push_fresh(out, fresh)
    for target, push in _pushes(out):
        assert all(target in n.placement.replica_targets(u.key) for u in push.updates)
