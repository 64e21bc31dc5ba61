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
