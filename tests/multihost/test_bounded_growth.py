"""Bounded growth (issue 15) on real nodes in network namespaces: a node killed for good
holds every later tombstone on its survivors until it is forgotten (``rumor cluster
forget``) or reaped (``--reap-dead-after-s``); then the count falls to zero, on
``/metrics`` too, the rows leave the SQLite files, and a constant delete load afterwards
stays bounded. The full-size run (10 000 keys, 5 nodes) is ``make bench-growth``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.multihost.cluster import LabCluster
from tests.multihost.growth import GrowthPlan, GrowthResult, run_growth
from tests.multihost.netns import Lab

pytestmark = [pytest.mark.multihost, pytest.mark.slow, pytest.mark.timeout(240)]

THREE = ["h1", "h2", "h3"]
KEYS = 1000


def _between(result: GrowthResult, node: str, name: str, lo: str, hi: str) -> list[float]:
    origin = result.events["killed"]
    lo_s, hi_s = result.events[lo] - origin, result.events[hi] - origin
    return [v for t, v in result.series(node, name) if lo_s <= t <= hi_s]


def _assert_purged_everywhere(result: GrowthResult) -> None:
    for node in result.survivors:
        last = [s for s in result.samples if s["node"] == node][-1]
        assert last["tombstones"] == 0 and last["keys"] == 0, last
        assert last["storage"]["rows"] == 0, last["storage"]
        assert last["gauges"]["rumor_tombstones"] == 0, last["gauges"]  # what operators see
        assert last["gauges"]["rumor_storage_rows"] == 0, last["gauges"]
        assert result.file_rows[node] == 0, result.file_rows  # read from the file itself


def test_forget_purges_a_dead_nodes_tombstones_and_a_constant_load_stays_bounded(
    make_lab: Callable[[int], Lab], tmp_path: Path
) -> None:
    cluster = LabCluster(make_lab(3), tmp_path)
    cluster.start_all(THREE)
    plan = GrowthPlan(keys=KEYS, hold_s=3.0, churn_s=10.0, churn_rate=100.0)
    result = run_growth(cluster, THREE, plan)
    for node in result.survivors:
        # Held while the dead member is remembered: no purge before the forget.
        held = _between(result, node, "tombstones", "held", "forget_sent")
        assert held and set(held) == {KEYS}, held
        under_load = _between(result, node, "tombstones", "churn_start", "churn_end")
        assert under_load and max(under_load) < 500, under_load  # 100 deletes/s
    _assert_purged_everywhere(result)
    took = result.events["purged"] - result.events["forgotten"]
    print(f"namespace bounded growth: {KEYS} tombstones purged {took:.1f} s after forget")


def test_a_reaped_dead_node_lets_its_tombstones_go(
    make_lab: Callable[[int], Lab], tmp_path: Path
) -> None:
    cluster = LabCluster(make_lab(3), tmp_path, extra_args=["--reap-dead-after-s", "12"])
    cluster.start_all(THREE)
    result = run_growth(cluster, THREE, GrowthPlan(keys=KEYS, reap_after_s=12.0))
    _assert_purged_everywhere(result)
    after_kill = result.events["purged"] - result.events["killed"]
    assert after_kill >= 12, after_kill  # not before the reap time
    print(f"namespace bounded growth: {KEYS} tombstones purged {after_kill:.1f} s after kill")
