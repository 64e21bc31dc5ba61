"""The heap freezer: long-lived data leaves the collector's scans as the store grows."""

from __future__ import annotations

import gc
import weakref

from rumordb.live.heap import GROWTH, MIN_KEYS, HeapFreezer


def test_it_freezes_once_the_store_grew_by_a_quarter_and_not_before() -> None:
    held = [MIN_KEYS - 1]
    freezer = HeapFreezer(lambda: held[0])
    try:
        assert not freezer.check(), "a small store: nothing to freeze for"
        held[0] = MIN_KEYS
        index = [[f"k{i}"] for i in range(100)]  # a long-lived container the store would hold
        assert freezer.check() and freezer.frozen_at == MIN_KEYS
        assert gc.get_freeze_count() >= len(index), "no collection scans them any more"
        held[0] = int(MIN_KEYS * GROWTH) - 1
        assert not freezer.check(), "grown by less than a quarter"
        held[0] = int(MIN_KEYS * GROWTH) + 1
        assert freezer.check() and freezer.freezes == 2
    finally:
        gc.unfreeze()


def test_a_fresh_garbage_cycle_is_collected_not_frozen() -> None:
    class Cycle:
        me: object = None

    collected: list[bool] = []
    cycle = Cycle()
    cycle.me = cycle
    weakref.finalize(cycle, collected.append, True)
    del cycle
    freezer = HeapFreezer(lambda: MIN_KEYS)
    try:
        assert freezer.check()
        assert collected == [True]
    finally:
        gc.unfreeze()
