"""Placement: owners from the ring of current members, routes, and ring rebuilds."""

import pytest

from rumordb.core.membership import Membership, StaticMembership
from rumordb.core.placement import Placement
from rumordb.core.ring import Ring


def table(*peers: str) -> Membership:
    m = Membership("me", "addr", 0.0)
    for peer in peers:
        m.join(peer, f"addr-{peer}", 0, 0.0)
    return m


def test_unsharded_every_member_owns_every_key_and_nothing_routes() -> None:
    p = Placement(
        table("b", "c"), sharding=False, replicas=1, vnodes=8, ring=None, on_new_ring=list
    )
    assert sorted(p.owners("k")) == ["b", "c", "me"] and p.route("k") is None


def test_sharded_a_foreign_key_routes_to_its_owners_and_an_owned_key_stays() -> None:
    p = Placement(
        table("b", "c", "d"), sharding=True, replicas=1, vnodes=8, ring=None, on_new_ring=list
    )
    keys = [f"k{i}" for i in range(50)]
    mine = next(k for k in keys if p.owners(k) == ["me"])
    theirs = next(k for k in keys if p.owners(k) != ["me"])
    assert p.route(mine) is None and p.route(theirs) == p.owners(theirs)


def test_the_ring_is_rebuilt_only_when_membership_changes() -> None:
    rebuilt: list[int] = []
    members = table("b")
    p = Placement(
        members,
        sharding=True,
        replicas=2,
        vnodes=8,
        ring=None,
        on_new_ring=lambda: rebuilt.append(1),
    )
    first = p.ring()
    assert p.ring() is first and len(rebuilt) == 1
    members.join("c", "addr-c", 0, 0.0)
    assert p.ring() is not first and len(rebuilt) == 2 and "c" in p.ring().members


def test_a_shared_ring_needs_a_static_member_table() -> None:
    ring = Ring(["me", "b"])
    with pytest.raises(ValueError):
        Placement(table("b"), sharding=True, replicas=1, vnodes=8, ring=ring, on_new_ring=list)
    static = StaticMembership("me", ("me", "b"), {"me": 0, "b": 1})
    p = Placement(static, sharding=True, replicas=1, vnodes=8, ring=ring, on_new_ring=list)
    assert p.ring() is ring
