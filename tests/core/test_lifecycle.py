"""Leaving, handoff remaining and reaping, on a real member table."""

from __future__ import annotations

from rumordb.core import State
from rumordb.core.lifecycle import handoff_remaining, is_leaving, leave_targets, reap
from rumordb.core.membership import Membership


def _table() -> Membership:
    m = Membership("a", "addr-a", 0.0, suspicion_mult=3, probe_interval_ms=1000)
    for peer in ("b", "c"):
        m.join(peer, f"addr-{peer}", 0, 0.0)
    return m


def test_a_node_is_leaving_once_it_announced_it_and_tells_every_peer() -> None:
    m = _table()
    assert not is_leaving(m) and sorted(leave_targets(m)) == ["b", "c"]
    m.leave(1.0)
    assert is_leaving(m)


def test_handoff_remaining_counts_the_keys_this_node_does_not_own() -> None:
    owners = {"k1": ["a", "b"], "k2": ["b", "c"], "k3": ["c", "a"], "k4": ["b"]}
    assert handoff_remaining(owners, owners.__getitem__, "a", sharding=True) == 2
    assert handoff_remaining(owners, owners.__getitem__, "a", sharding=False) == 0


def test_reap_forgets_long_dead_members_only_when_asked_to() -> None:
    m = _table()
    m.expire(3.0)
    m.expire(6.0)
    assert m.get("b").state is State.DEAD  # type: ignore[union-attr]
    assert reap(m, 100.0, 0) == [] and m.get("b") is not None, "0: never reap"
    assert reap(m, 6.5, 60_000) == [], "dead for less than a minute"
    assert sorted(reap(m, 100.0, 60_000)) == ["b", "c"] and m.get("b") is None
