"""When a node's next tick may have work (``core.idling``): what keeps it awake, and until when."""

import math
import random

from rumordb.core import Node, NodeConfig, WriteCommand
from rumordb.core.hlc import physical_ms
from rumordb.core.membership import StaticMembership

IDS = ("n1", "n2", "n3", "n4", "n5", "n6", "n7")


def _node(static: bool = True) -> Node:
    membership = StaticMembership("n1", IDS, {m: i for i, m in enumerate(IDS)}) if static else None
    config = NodeConfig(direct_mail_max=0, probe_interval_ms=700)
    n = Node(
        "n1", "mem://n1", rng=random.Random(7), now=100.0, membership=membership, config=config
    )
    if not static:
        for peer in IDS[1:]:
            n.join(peer, f"mem://{peer}", 0, 100.0)
    return n


def test_an_idle_node_may_sleep_until_its_anti_entropy_or_its_next_rumor_round() -> None:
    n = _node(static=True)
    assert n.idle_until() == n.timers.next_anti_entropy  # probes detect nothing here
    n.put("k", b"v", "text/plain", 100.0)
    n.flush(100.0)
    assert len(n.queue) and n.idle_until() == min(n.timers.next_gossip, n.timers.next_anti_entropy)
    dynamic = _node(static=False)
    assert dynamic.idle_until() == min(dynamic.timers.next_probe, dynamic.timers.next_anti_entropy)


def test_a_value_with_a_ttl_wakes_the_node_a_millisecond_before_it_expires() -> None:
    n = _node()
    n.write(WriteCommand("soon", b"v", ttl_ms=50), 100.0)  # not flushed: no rumor queued
    expires = n.replica.expiry.next_due()
    assert expires is not None and not len(n.queue)
    assert n.idle_until() == (physical_ms(expires) - 1) / 1000 < n.timers.next_anti_entropy


def test_a_fold_backlog_or_a_step_in_slices_keeps_the_node_awake() -> None:
    n = _node()
    n.folding.due_at = 100.5  # a fold slice is due
    assert n.idle_until() == -math.inf
    n.folding.due_at = math.inf
    n.anti_entropy.due_at = 100.5  # a slice of an anti-entropy step is due
    assert n.idle_until() == -math.inf
    n.anti_entropy.due_at = math.inf
    assert n.idle_until() == n.timers.next_anti_entropy
