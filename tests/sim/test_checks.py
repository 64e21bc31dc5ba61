"""The outside-in convergence checker: who holds the latest version, event by event."""

from __future__ import annotations

import pytest

from rumordb.core import Record
from rumordb.sim.checks import Convergence, divergent_keys

NODES = ["n1", "n2", "n3"]


def _record(hlc: int, origin: str, clock: dict[str, int], tombstone: bool = False) -> Record:
    return Record(b"" if tombstone else b"v", "text/plain", clock, hlc, origin, tombstone)


def _checker(records: dict[str, dict[str, Record]] | None = None) -> Convergence:
    stores = records if records is not None else {n: {} for n in NODES}
    return Convergence(NODES, lambda node: stores[node])


def test_a_new_version_is_held_only_by_its_writer_until_it_spreads() -> None:
    checker = _checker()
    v1 = _record(10, "n1", {"n1": 1})
    assert checker.issued("k", v1, None, now=1.0)
    checker.stored("n1", "k", v1, now=1.0)
    assert checker.fractions() == [pytest.approx(1 / 3)]
    assert not checker.complete
    assert checker.nodes_current() == 1 / 3
    checker.stored("n2", "k", v1, now=1.5)
    checker.stored("n3", "k", v1, now=2.0)
    assert checker.complete
    assert checker.complete_since == 2.0
    assert checker.dissemination_s == [1.0]


def test_a_concurrent_older_write_loses_and_counts_as_an_inversion() -> None:
    checker = _checker()
    newer = _record(20, "n1", {"n1": 1})
    older = _record(10, "n2", {"n2": 1})  # issued later in true time, smaller HLC
    assert checker.issued("k", newer, None, now=1.0)
    assert not checker.issued("k", older, None, now=1.1)
    assert checker.stats.superseded_at_issue == 1
    assert checker.stats.causal_lost == 0
    checker.stored("n2", "k", older, now=1.1)
    assert not checker.holds("n2", "k")


def test_a_causal_write_wins_even_with_a_smaller_hlc() -> None:
    checker = _checker()
    v1 = _record(20, "n1", {"n1": 1})
    v2 = _record(10, "n2", {"n1": 1, "n2": 1})  # descends from v1
    checker.issued("k", v1, None, now=1.0)
    assert checker.issued("k", v2, v1, now=2.0)
    assert checker.stats.causal == 2  # the first write of a key descends from nothing
    assert checker.stats.causal_lost == 0


def test_nodes_without_the_key_hold_a_tombstone_and_purges_keep_holding() -> None:
    stores: dict[str, dict[str, Record]] = {n: {} for n in NODES}
    checker = _checker(stores)
    v1 = _record(10, "n1", {"n1": 1})
    stores["n1"]["k"] = stores["n2"]["k"] = v1
    checker.issued("k", v1, None, 1.0)
    checker.stored("n1", "k", v1, 1.0)
    checker.stored("n2", "k", v1, 1.0)
    gone = _record(20, "n1", {"n1": 2}, tombstone=True)
    stores["n1"]["k"] = gone
    checker.issued("k", gone, v1, 2.0)
    checker.stored("n1", "k", gone, 2.0)
    assert checker.holds("n3", "k")  # never had it: reads 404, like the tombstone
    assert not checker.holds("n2", "k")  # still serves the deleted value
    checker.stored("n2", "k", gone, 3.0)
    checker.purged("n1", "k", 4.0)
    assert checker.complete


def test_crashed_nodes_do_not_count_and_wiped_ones_lose_what_they_held() -> None:
    checker = _checker()
    v1 = _record(10, "n1", {"n1": 1})
    checker.issued("k", v1, None, 1.0)
    checker.stored("n1", "k", v1, 1.0)
    checker.stored("n2", "k", v1, 1.0)
    checker.set_up("n3", False, 2.0)
    assert checker.complete
    checker.wiped("n2", 3.0)
    assert not checker.complete
    checker.set_up("n3", True, 4.0)
    assert checker.fractions() == [pytest.approx(1 / 3)]


def test_with_owners_only_the_owners_count() -> None:
    checker = Convergence(NODES, lambda node: {}, owners=lambda key: ["n1", "n2"])
    v1 = _record(10, "n1", {"n1": 1})
    checker.issued("k", v1, None, 1.0)
    checker.stored("n1", "k", v1, 1.0)
    checker.stored("n2", "k", v1, 1.0)
    assert checker.complete
    assert checker.nodes_current() == 1.0  # n3 serves no key


def test_divergent_keys_treat_tombstones_as_absent() -> None:
    v1 = _record(10, "n1", {"n1": 1})
    gone = _record(20, "n1", {"n1": 2}, tombstone=True)
    states = {"n1": {"a": v1, "b": gone}, "n2": {"a": v1}, "n3": {"a": gone}}
    assert divergent_keys(states) == ["a"]
    assert divergent_keys(states, owners=lambda key: ["n1", "n2"]) == []
