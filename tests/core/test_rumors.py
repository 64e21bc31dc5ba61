"""Flush targets: replicas with stand-ins for dead owners, direct mail, grouping, chunks."""

import pytest

from rumordb.core.ring import Ring
from rumordb.core.rumors import by_target, chunks, is_direct_mail, push_width, replica_targets

RING = Ring([f"n{i}" for i in range(6)])


def test_replica_targets_are_the_other_live_owners() -> None:
    owners = RING.owners("k", 3)
    targets = replica_targets(RING, "k", 3, lambda _: True, owners[0])
    assert targets == owners[1:]


def test_a_dead_owner_is_replaced_by_the_next_live_node_on_the_ring() -> None:
    owners = RING.owners("k", 3)
    dead = owners[1]
    targets = replica_targets(RING, "k", 3, lambda m: m != dead, "nobody")
    stand_in = next(m for m in RING.walk("k") if m not in owners)
    assert targets == [owners[0], owners[2], stand_in]


def test_direct_mail_when_the_push_reaches_every_peer() -> None:
    assert is_direct_mail(2, 2) and not is_direct_mail(2, 3)


@pytest.mark.parametrize(
    ("fanout", "peers", "direct_mail_max", "width"),
    [
        (3, 2, 8, 2),  # 3 nodes: every peer either way
        (3, 4, 8, 4),  # 5 nodes: direct mail, not a sample of 3
        (3, 6, 8, 6),  # 7 nodes
        (3, 8, 8, 8),  # 9 nodes: the largest direct-mail cluster
        (3, 9, 8, 3),  # 10 nodes: back to fanout and rumors
        (3, 4, 0, 3),  # turned off: fanout
        (3, 2, 0, 2),  # turned off, fanout above the peers: every peer
        (5, 20, 8, 5),
        (3, 0, 8, 0),  # alone
    ],
)
def test_push_width_mails_every_peer_up_to_the_limit_then_samples_fanout(
    fanout: int, peers: int, direct_mail_max: int, width: int
) -> None:
    assert push_width(fanout, peers, direct_mail_max) == width


def test_by_target_groups_in_first_seen_order_and_chunks_bound_the_batches() -> None:
    grouped = by_target([("a", 1), ("b", 2)], {"a": ["x", "y"], "b": ["y"]}.__getitem__)
    assert grouped == {"x": [1], "y": [1, 2]} and list(grouped) == ["x", "y"]
    assert chunks([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]] and chunks([], 2) == []
