"""Bounded growth (issue 15) in the simulator: the scenario of experiments/bounded_growth,
smaller. A member dies for good, 2 000 keys are written then deleted on the survivors:
they hold every tombstone while they remember the dead member, none once it is
forgotten (by an operator, or reaped), and a constant delete load afterwards keeps the
count hovering instead of growing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sim.helpers import run

KEYS = 2000
DEATH_S, DELETES_S, FORGET_S = 3.0, 5.0, 12.0
CHURN = (18.0, 38.0)  # 100 puts/s, each key deleted 1 s later: 100 deletes/s
SURVIVORS = ["n1", "n2", "n3"]


def _phase(start_s: float, rate: float, **fields: Any) -> dict[str, Any]:
    base = {"start_s": start_s, "rate_per_s": rate, "key_order": "sequential"}
    return base | {"nodes": SURVIVORS, "pick": "up", **fields}


def growth_raw(forget: bool, reap_after_s: float = 0.0) -> dict[str, Any]:
    churn = {"key_prefix": "c", "key_range": [0, 5000]}
    faults: list[dict[str, Any]] = [{"at_s": DEATH_S, "action": "crash", "nodes": ["n4"]}]
    if forget:
        faults.append({"at_s": FORGET_S, "action": "forget", "nodes": ["n4"]})
    return {
        "seed": 15,
        "duration_s": 42,
        "sample_interval_ms": 250,
        "cluster": {"nodes": 4, "reap_dead_after_s": reap_after_s},
        "network": {"latency_ms": 2, "jitter_ms": 1},
        "gossip": {"interval_ms": 200, "anti_entropy_interval_ms": 500, "probe_interval_ms": 500},
        "workload": {
            "phases": [
                _phase(0.5, 2000, key_range=[0, KEYS], writes=KEYS),
                _phase(DELETES_S, 2000, key_range=[0, KEYS], writes=KEYS, mix={"delete": 1.0}),
                _phase(CHURN[0], 100, stop_s=CHURN[1], **churn),
                _phase(CHURN[0] + 1, 100, stop_s=CHURN[1] + 1, mix={"delete": 1.0}, **churn),
            ]
        },
        "faults": faults,
    }


def _between(series: dict[str, list[float]], name: str, lo_s: float, hi_s: float) -> list[float]:
    return [v for t, v in zip(series["t_s"], series[name], strict=True) if lo_s <= t < hi_s]


def _first_zero_after(series: dict[str, list[float]], after_s: float) -> float | None:
    for t, most in zip(series["t_s"], series["tombstones_max"], strict=True):
        if t >= after_s and most == 0:
            return t
    return None


def _assert_bounded_under_constant_deletes(series: dict[str, list[float]]) -> None:
    settle_s = CHURN[0] + 4
    held = _between(series, "tombstones_max", settle_s, CHURN[1])
    rows = _between(series, "disk_rows_max", settle_s, CHURN[1])
    third = len(held) // 3
    early, late = sum(held[:third]) / third, sum(held[-third:]) / third
    # 100 deletes/s: a purge needs every survivor's acknowledgement, about a second.
    assert max(held) < 400, held
    assert late <= 1.5 * early + 20, (early, late)  # hovers, does not grow
    assert max(rows) < 600, rows  # live keys (~100) plus tombstones
    assert not any(_between(series, "tombstones_max", CHURN[1] + 8, 99))  # load over: 0


@pytest.mark.timeout(120)
def test_tombstones_fall_to_zero_after_forget_and_stay_bounded() -> None:
    metrics = run(growth_raw(forget=True))
    series = metrics["series"]
    # Every survivor holds every tombstone while the dead member is remembered.
    assert set(_between(series, "tombstones_min", DELETES_S + 3, FORGET_S)) == {KEYS}
    assert set(_between(series, "disk_rows_max", DELETES_S + 3, FORGET_S)) == {KEYS}
    zero_at = _first_zero_after(series, FORGET_S)
    assert zero_at is not None and zero_at < FORGET_S + 8, zero_at
    assert not any(_between(series, "disk_rows_max", zero_at, CHURN[0]))  # purged on disk
    _assert_bounded_under_constant_deletes(series)
    assert metrics["divergent_keys"] == 0


@pytest.mark.timeout(120)
def test_a_dead_member_is_reaped_and_its_tombstones_purged() -> None:
    metrics = run(growth_raw(forget=False, reap_after_s=4.0))
    series = metrics["series"]
    # Dead about 2 s after the crash, reaped 4 s later; the deletes end at ~6 s.
    assert set(_between(series, "tombstones_min", DELETES_S + 2, DELETES_S + 2.5)) == {KEYS}
    zero_at = _first_zero_after(series, DELETES_S + 2)
    assert zero_at is not None and zero_at < FORGET_S + 4, zero_at
    _assert_bounded_under_constant_deletes(series)


def test_without_forget_or_reap_the_tombstones_stay() -> None:
    """The reference: nothing purges while the dead member counts (the reason for both)."""
    raw = growth_raw(forget=False)
    raw["duration_s"] = 14
    raw["workload"]["phases"] = raw["workload"]["phases"][:2]
    series = run(raw)["series"]
    assert set(_between(series, "tombstones_min", DELETES_S + 3, 14)) == {KEYS}
