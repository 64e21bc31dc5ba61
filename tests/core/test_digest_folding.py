"""Digest folding in slices on ticks, and no digest offered while a backlog is pending."""

from __future__ import annotations

import math
import random

from rumordb.core import Node, NodeConfig
from rumordb.core.digest_folding import FOLD_SLICE_GAP_S


def _node(**config: object) -> Node:
    n = Node("n1", "mem://n1", rng=random.Random(1), now=0.0, config=NodeConfig(**config))  # type: ignore[arg-type]
    n.join("n2", "mem://n2", 0, 0.0)
    return n


def test_a_backlog_is_folded_one_slice_per_tick_with_the_next_slice_due_soon() -> None:
    n = _node(digest_fold_batch=100)
    for i in range(350):
        n.put(f"k{i}", b"v", "text/plain", 0.0)
    folding = n.folding
    assert folding.digest_for("n2") is None, "a half-built digest is never offered"
    folding.work(1.0)
    assert folding.due_at == 1.0 + FOLD_SLICE_GAP_S and n.next_deadline() <= folding.due_at
    assert n.store.pending_folds() == 250
    folding.work(1.001)
    folding.work(1.002)
    assert n.store.pending_folds() == 50 and folding.due_at == 1.002 + FOLD_SLICE_GAP_S
    folding.work(1.003)  # at most half a slice left: anti-entropy folds it when it asks
    assert folding.due_at == math.inf and n.store.pending_folds() == 50
    assert folding.digest_for("n2") is not None and n.store.pending_folds() == 0


def test_sharded_digests_are_scoped_to_each_peer() -> None:
    n = _node(sharding=True, replicas=1)
    n.join("n3", "mem://n3", 0, 0.0)
    for i in range(60):
        n.put(f"k{i}", b"v", "text/plain", 0.0, coordinate=True)
    a, b = n.folding.digest_for("n2"), n.folding.digest_for("n3")
    whole = n.store.ready_digest(n.owners, n.node_id, 10**6)
    assert a is not None and b is not None and whole is not None
    assert a.hashes(0, [0]) != whole.hashes(0, [0]), "only the keys both nodes own"
