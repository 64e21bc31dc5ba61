"""Node clocks: offsets, drift, and readings that never run backwards."""

from __future__ import annotations

from rumordb.sim.clock import EPOCH_S, NodeClock


def test_clock_offsets_drift_and_never_run_backwards() -> None:
    clock = NodeClock()
    assert clock.now(1.0) == EPOCH_S + 1.0
    clock.set(2.0, offset_s=0.5, drift=None)
    assert clock.now(2.0) == EPOCH_S + 2.5
    clock.set(3.0, offset_s=-1.0, drift=None)  # stepped back: frozen, not backwards
    assert clock.now(3.0) == EPOCH_S + 2.5
    assert clock.now(3.4) == EPOCH_S + 2.5
    assert clock.now(4.0) == EPOCH_S + 3.0
    assert clock.now(5.0) == EPOCH_S + 4.0
    clock.set(5.0, offset_s=None, drift=0.01)  # a rate change does not jump
    assert clock.now(5.0) == EPOCH_S + 4.0
    assert abs(clock.now(105.0) - (EPOCH_S + 105.0)) < 1e-6
    assert abs(clock.true_time(EPOCH_S + 105.0) - 105.0) < 1e-6


def test_a_timer_on_time_reads_its_deadline_and_a_late_one_reads_the_clock() -> None:
    clock = NodeClock()
    clock.set(0.0, offset_s=0.0, drift=3e-6)  # a drifting clock: the inverse rounds
    deadline = EPOCH_S + 12.345678
    at, reading = clock.tick_at(deadline, floor_true_s=0.0)
    assert at == clock.true_time(deadline) and reading == deadline
    late_at, late_reading = clock.tick_at(deadline, floor_true_s=20.0)
    assert late_at == 20.0 and late_reading == clock.reading(20.0) > deadline
    clock.last_s = EPOCH_S + 30.0  # a reading taken since: never read below it
    assert clock.tick_at(deadline, 0.0)[1] == EPOCH_S + 30.0
