"""A node's side of anti-entropy: starting, answering each step, counting what ended."""

from __future__ import annotations

import random

from rumordb.core import Node, NodeConfig, Output
from rumordb.core.messages import DigestStep, LeafEntries, SyncRecords, decode


def _node(node_id: str, *peers: str) -> Node:
    n = Node(node_id, rng=random.Random(1), now=0.0, config=NodeConfig())
    for peer in peers:
        n.join(peer, peer, 0, 0.0)
    return n


def _only(out: Output) -> tuple[str, object]:
    assert len(out.messages) == 1
    target, data = out.messages[0]
    return target, decode(data)


def test_no_peer_no_session_and_a_started_one_is_counted() -> None:
    alone = _node("a")
    out = Output()
    alone.anti_entropy.start(out)
    assert not out.messages and alone.counters.anti_entropy_sessions == 0
    a = _node("a", "b")
    a.anti_entropy.start(out)
    target, step = _only(out)
    assert target == "b" and isinstance(step, DigestStep) and step.session == 1
    assert a.counters.anti_entropy_sessions == 1


def test_a_session_walks_to_the_differing_key_and_both_sides_count_it() -> None:
    a, b = _node("a", "b"), _node("b", "a")
    a.put("only-a", b"1", "text/plain", 0.0)
    b.put("only-b", b"2", "text/plain", 0.0)
    out = Output()
    a.anti_entropy.start(out)
    sender, receiver = a, b
    seen = []
    for _ in range(40):  # DigestSteps down the tree, LeafEntries, then SyncRecords twice
        if not out.messages:
            break
        _, data = out.messages[0]
        message = decode(data)
        seen.append(type(message))
        out = receiver.receive(data, 0.0)
        sender, receiver = receiver, sender
    assert DigestStep in seen and LeafEntries in seen and seen.count(SyncRecords) == 2
    assert a.view.get("only-b") is not None and b.view.get("only-a") is not None
    assert a.counters.anti_entropy_completed + b.counters.anti_entropy_completed == 2
    assert a.counters.anti_entropy_keys_sent + b.counters.anti_entropy_keys_sent == 2


def test_agreeing_digests_end_the_session_at_the_root() -> None:
    a, b = _node("a", "b"), _node("b", "a")
    out = Output()
    a.anti_entropy.start(out)
    reply = b.receive(out.messages[0][1], 0.0)
    assert not reply.messages and b.counters.anti_entropy_completed == 1
