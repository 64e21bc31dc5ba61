import random

import pytest

from rumordb.core.membership import (
    MemberEntry,
    Membership,
    State,
    StaticMembership,
    sample_below,
    suspicion_timeout_ms,
)


@pytest.mark.parametrize(
    ("mult", "n", "interval_ms", "expected_ms"),
    [
        (3, 1, 1000, 3000),
        (3, 5, 1000, 3000),
        (3, 10, 1000, 3000),
        (4, 100, 1000, 8000),
        (3, 1000, 200, 1800),
    ],
)
def test_suspicion_timeout_formula(mult: int, n: int, interval_ms: int, expected_ms: int) -> None:
    assert suspicion_timeout_ms(mult, n, interval_ms) == expected_ms


def table(now: float = 0.0) -> Membership:
    m = Membership("a", "addr-a", now, suspicion_mult=3, probe_interval_ms=1000)
    m.join("b", "addr-b", 0, now)
    return m


def test_silence_moves_alive_to_suspect_to_dead() -> None:
    m = table()
    assert m.expire(2.9) == []
    assert [t.new for t in m.expire(3.0)] == [State.SUSPECT]
    assert m.expire(5.9) == []
    assert [t.new for t in m.expire(6.0)] == [State.DEAD]
    assert m.peers() == [] and m.dead_peers() == ["b"]


def test_heartbeat_progress_revives_a_suspect_and_a_dead_member() -> None:
    m = table()
    m.expire(3.5)
    m.observe(MemberEntry("b", "addr-b", 0, 1), 3.6)
    assert m.get("b").state is State.ALIVE  # type: ignore[union-attr]
    m.expire(20.0)
    assert m.get("b").state is State.DEAD  # type: ignore[union-attr]
    m.observe(MemberEntry("b", "addr-b", 1, 0), 21.0)  # restarted: higher incarnation
    assert m.get("b").state is State.ALIVE  # type: ignore[union-attr]


def test_no_progress_means_no_revival() -> None:
    m = table()
    m.observe(MemberEntry("b", "addr-b", 0, 5), 1.0)
    m.expire(10.0)
    m.observe(MemberEntry("b", "addr-b", 0, 5), 10.5)  # a stale relay of the same beat
    assert m.get("b").state is State.DEAD  # type: ignore[union-attr]


def test_a_member_rumoured_dead_refutes_with_a_higher_incarnation() -> None:
    m = table()
    m.observe(MemberEntry("a", "addr-a", 0, 3, "dead"), 1.0)
    assert m.me.incarnation == 1 and m.me.state is State.ALIVE
    m.observe(MemberEntry("a", "addr-a", 0, 3, "suspect"), 1.0)  # old news: already refuted
    assert m.me.incarnation == 1


def test_gossiped_suspicion_of_others_is_only_advisory() -> None:
    m = table()
    m.observe(MemberEntry("b", "addr-b", 0, 0, "dead"), 1.0)
    assert m.get("b").state is State.ALIVE  # type: ignore[union-attr]


def test_left_is_final_until_a_new_incarnation() -> None:
    m = table()
    m.observe(MemberEntry("b", "addr-b", 1, 0, "left"), 1.0)
    assert m.get("b").state is State.LEFT and "b" not in m.ring_members()  # type: ignore[union-attr]
    m.observe(MemberEntry("b", "addr-b", 1, 9), 2.0)
    assert m.get("b").state is State.LEFT  # type: ignore[union-attr]
    m.observe(MemberEntry("b", "addr-b", 2, 0), 3.0)
    assert m.get("b").state is State.ALIVE  # type: ignore[union-attr]


def test_unknown_members_join_from_gossip_and_epoch_tracks_changes() -> None:
    m = table()
    epoch = m.epoch
    m.observe(MemberEntry("c", "addr-c", 0, 0), 1.0)
    assert "c" in m.peers() and m.epoch > epoch
    assert m.gossip_entries(__import__("random").Random(1), 5)[0].id == "a"


def test_static_membership_samples_without_self() -> None:
    ids = tuple(f"n{i}" for i in range(100))
    index = {n: i for i, n in enumerate(ids)}
    view = StaticMembership("n42", ids, index)
    rng = random.Random(3)
    for _ in range(200):
        sample = view.sample_peers(rng, 3)
        assert len(set(sample)) == 3 and "n42" not in sample


@pytest.mark.parametrize(("n", "k"), [(22, 5), (23, 3), (100_000, 3), (30, 1), (21, 3), (50, 6)])
def test_sample_below_picks_what_random_sample_picks_from_the_same_draws(n: int, k: int) -> None:
    for seed in range(300):
        ours, stdlib = random.Random(seed), random.Random(seed)
        assert sample_below(ours, n, k) == stdlib.sample(range(n), k)
        assert ours.random() == stdlib.random()  # as many draws made
