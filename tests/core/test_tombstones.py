"""Tombstone holders, the purge plan over a bounded window, and purge memory."""

from rumordb.core import tombstones as t
from rumordb.core.tombstones import Tombstones


def test_a_stored_tombstone_is_held_by_us_and_a_live_version_forgets_it() -> None:
    ts = Tombstones("me")
    ts.stored("k", tombstone=True, replaced_tombstone=False)
    assert ts.holders_of("k") == ["me"] and len(ts) == 1
    ts.held_by("k", "b", ["c"])
    assert ts.holders_of("k") == ["b", "c", "me"]
    ts.stored("k", tombstone=False, replaced_tombstone=True)
    assert len(ts) == 0


def test_plan_purges_what_everyone_required_holds_and_asks_live_missing_members() -> None:
    ts = Tombstones("me")
    for key in ("done", "half"):
        ts.stored(key, True, False)
    ts.held_by("done", "b", ["c"])
    ts.held_by("half", "b", None)
    plan = ts.plan(10, lambda _: {"me", "b", "c", "d"} - {"d"}, lambda m: m != "dead")
    assert plan.purge == ["done"] and plan.confirm == {"c": ["half"]}
    plan = ts.plan(10, lambda _: {"me", "dead"}, lambda m: m != "dead")
    assert plan.purge == [] and plan.confirm == {}, "a dead member is not asked"


def test_plan_examines_a_bounded_window_that_walks_every_tombstone() -> None:
    ts = Tombstones("me")
    for i in range(5):
        ts.stored(f"k{i}", True, False)
    seen = [ts.plan(2, lambda _: {"me", "x"}, lambda _: True).confirm["x"] for _ in range(3)]
    assert seen == [["k0", "k1"], ["k2", "k3"], ["k4", "k0"]]  # the window wraps


def test_purge_memory_is_bounded_oldest_first(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(t, "PURGED_MEMORY", 2)
    ts = Tombstones("me")
    for i in range(3):
        ts.remember(f"k{i}", (i, "a"))
    assert list(ts.purged) == ["k1", "k2"]
