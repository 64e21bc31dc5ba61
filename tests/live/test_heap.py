"""The heap freezer: long-lived data leaves the collector's scans as the store grows."""

from __future__ import annotations

import contextlib
import gc
import itertools
import weakref

import pytest

from rumordb.live.heap import (
    GROWTH,
    LONG_FULL_GC_S,
    LONG_GC_FREEZE_INTERVAL_S,
    MIN_KEYS,
    HeapFreezer,
)


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


def test_a_long_full_collection_freezes_at_the_next_check_at_most_once_an_interval() -> None:
    """A restarted node folds its digest after the load: no growth, but a new leaf table
    that writes keep tracking again, and every full collection traversed anew."""
    now = [0.0]
    freezer = HeapFreezer(lambda: 10, clock=lambda: now[0])  # a small, unchanging store

    def full_collection(seconds: float, generation: int = 2) -> None:
        freezer.on_gc("start", {"generation": generation})
        now[0] += seconds
        freezer.on_gc("stop", {"generation": generation, "collected": 0})

    try:
        full_collection(LONG_FULL_GC_S / 2)
        full_collection(1.0, generation=1)  # a young collection, however long: not counted
        assert not freezer.check(), "only short full collections: nothing to freeze for"
        full_collection(LONG_FULL_GC_S * 2)
        leaves = {i: (b"pairs", f"k{i}") for i in range(100)}  # tracked again by a write
        frozen = gc.get_freeze_count()
        assert freezer.check() and freezer.freezes == 1
        assert gc.get_freeze_count() > frozen
        gc.collect()
        assert gc.is_tracked(leaves), "frozen: no collection untracks (or scans) it now"
        assert not freezer.check(), "no long collection since"
        full_collection(LONG_FULL_GC_S * 2)
        assert not freezer.check(), "within the interval of the last such freeze"
        now[0] += LONG_GC_FREEZE_INTERVAL_S
        assert freezer.check() and freezer.freezes == 2
    finally:
        gc.unfreeze()


@pytest.mark.anyio
async def test_running_it_times_real_collections_and_stops_when_cancelled() -> None:
    import asyncio

    ticks = itertools.count()  # a second passes at each reading: every collection is long
    freezer = HeapFreezer(lambda: 0, clock=lambda: float(next(ticks)))
    task = asyncio.ensure_future(freezer.run())
    await asyncio.sleep(0)
    gc.collect()
    assert freezer.long_collections == 1  # a real full collection, seen start and stop
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    gc.collect()
    assert freezer.long_collections == 1 and freezer.on_gc not in gc.callbacks
