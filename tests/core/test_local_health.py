"""Lifeguard's local health as formulas, and the member table crediting a pause to itself."""

from __future__ import annotations

import pytest

from rumordb.core import State
from rumordb.core.local_health import (
    MAX_LOCAL_HEALTH,
    away_s,
    member_time,
    next_health,
    widened_s,
)
from rumordb.core.membership import Membership


@pytest.mark.parametrize(
    ("gap_s", "probe_s", "expected"),
    [(1.0, 1.0, 0.0), (2.0, 1.0, 0.0), (2.5, 1.0, 1.5), (30.0, 1.0, 29.0), (0.3, 0.1, 0.2)],
)
def test_a_probe_late_by_two_intervals_or_more_means_we_were_away(
    gap_s: float, probe_s: float, expected: float
) -> None:
    assert away_s(gap_s, probe_s) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("health", "away", "expected"),
    [(0, False, 0), (0, True, 1), (3, False, 2), (MAX_LOCAL_HEALTH, True, MAX_LOCAL_HEALTH)],
)
def test_health_moves_one_step_and_stays_in_bounds(health: int, away: bool, expected: int) -> None:
    assert next_health(health, away) == expected


def test_timeouts_widen_with_ill_health_and_mono_wins_when_given() -> None:
    assert [widened_s(3.0, h) for h in (0, 1, 2)] == [3.0, 6.0, 9.0]
    assert member_time(100.0, None) == 100.0 and member_time(100.0, 7.0) == 7.0


def test_a_paused_node_credits_its_members_instead_of_suspecting_them() -> None:
    m = Membership("a", "addr-a", 0.0, suspicion_mult=3, probe_interval_ms=1000)
    m.join("b", "addr-b", 0, 0.0)
    assert m.was_away(1.0) is False
    assert m.was_away(20.0) is True, "a 19 s gap between probes: we were away"
    assert m.local_health == 1 and m.suspect_timeout_s() == widened_s(3.0, 1)
    m.expire(20.0)
    assert m.get("b").state is State.ALIVE  # type: ignore[union-attr]
    assert m.was_away(21.0) is False and m.local_health == 0
