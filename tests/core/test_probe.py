"""A probe round: beat, judge unless away, reap, and knock on dead members' doors in turn."""

from __future__ import annotations

import random

from rumordb.core import State
from rumordb.core.membership import Membership
from rumordb.core.probe import Prober


def _table(*peers: str) -> Membership:
    m = Membership("a", "addr-a", 0.0, suspicion_mult=3, probe_interval_ms=1000)
    for peer in peers:
        m.join(peer, f"addr-{peer}", 0, 0.0)
    return m


def test_each_round_beats_and_samples_fanout_live_peers() -> None:
    m, prober = _table("b", "c", "d"), Prober()
    targets = prober.round(m, random.Random(1), 2, 1.0, 0)
    assert len(targets) == 2 and set(targets) <= {"b", "c", "d"}
    assert m.me.heartbeat == 1


def test_dead_members_are_knocked_on_one_per_round_in_turn() -> None:
    m, prober, rng = _table("b", "c", "d"), Prober(), random.Random(1)
    for t in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0):  # on time: silence is theirs
        prober.round(m, rng, 0, t, 0)
    assert sorted(m.dead_peers()) == ["b", "c", "d"]
    knocked = [prober.round(m, rng, 0, 7.0 + i, 0) for i in range(3)]
    assert sorted(t for targets in knocked for t in targets) == ["b", "c", "d"]


def test_a_late_round_judges_nobody_and_a_reaping_one_forgets_the_long_dead() -> None:
    m, prober, rng = _table("b"), Prober(), random.Random(1)
    prober.round(m, rng, 1, 30.0, 0)  # 30 s since the last probe: we were away
    assert m.get("b").state is State.ALIVE  # type: ignore[union-attr]
    for t in range(31, 40):
        prober.round(m, rng, 1, float(t), 0)
    assert m.get("b").state is State.DEAD  # type: ignore[union-attr]
    prober.round(m, rng, 1, 40.0, 60_000)
    assert m.get("b") is not None
    prober.round(m, rng, 1, 200.0, 60_000)
    assert m.get("b") is None, "reaped after a minute dead"
