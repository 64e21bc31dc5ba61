"""A node's start: built from its data directory, then every stored record reaches it in
slices that let the loop serve."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from rumordb.core import Node, Record
from rumordb.core.hlc import pack
from rumordb.core.keyring import RESERVED_PREFIX
from rumordb.live import startup
from rumordb.live.startup import StartupLoader, open_node
from rumordb.live.storage import Storage
from tests.live.harness import settings_for

pytestmark = pytest.mark.anyio


def rec(i: int) -> Record:
    return Record(b"v%d" % i, "text/plain", {"old": i + 1}, pack(1_000 + i), "old")


async def stored(tmp_path: Path, count: int, reserved: int = 0) -> Storage:
    """A reopened data directory holding ``count`` user keys and ``reserved`` reserved ones."""
    storage = Storage.open(tmp_path, "batch")
    writes = [(f"k{i:04d}", rec(i)) for i in range(count)]
    writes += [(f"{RESERVED_PREFIX}r{i}", rec(i)) for i in range(reserved)]
    await storage.persist(writes, [])
    await storage.close()
    return Storage.open(tmp_path, "batch")


def restarted(storage: Storage) -> Node:
    """A node built as the runner builds it: the reserved keyspace first."""
    records = storage.stream(within=RESERVED_PREFIX)
    return Node("n1", rng=random.Random(1), now=10.0, records=records)


async def test_a_store_loads_in_one_slice_while_its_time_lasts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(startup, "LOAD_SLICE_S", 60.0)  # three steps of 200 fit in it
    storage = await stored(tmp_path, 450, reserved=3)
    try:
        node = restarted(storage)
        loader = StartupLoader(node.startup, storage)
        assert loader.load_slice() is False, "nothing is left for a second slice"
        assert loader.keys == 453 and node.view.key_count() == (450, 0)
        assert node.view.list_keys(limit=1000) == [f"k{i:04d}" for i in range(450)]
    finally:
        await storage.close()


async def test_a_large_store_loads_slice_by_slice_and_the_loop_serves_in_between(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(startup, "LOAD_STEP_ROWS", 50)
    monkeypatch.setattr(startup, "LOAD_SLICE_S", 0.0)  # one step per slice
    storage = await stored(tmp_path, 500, reserved=2)
    try:
        node = restarted(storage)
        loader = StartupLoader(node.startup, storage)
        assert loader.load_slice() is True and loader.keys == 52
        seen: list[int] = []  # what another task saw of the load at each of its turns
        served = asyncio.Event()

        async def reader() -> None:
            while not served.is_set():
                seen.append(loader.keys)
                await asyncio.sleep(0)

        task = asyncio.create_task(reader())
        await loader.load_rest()
        served.set()
        await task
        assert loader.keys == 502 and node.view.key_count() == (500, 0)
        assert len(set(seen)) >= 5, "the loop ran between slices, not only after the load"
        assert all(52 <= keys <= 502 for keys in seen)
    finally:
        await storage.close()


async def test_a_record_that_cannot_be_read_stops_the_load(tmp_path: Path) -> None:
    storage = await stored(tmp_path, 10)
    try:
        node = restarted(storage)
        loader = StartupLoader(node.startup, storage)

        def unreadable() -> object:
            yield ("k", rec(1))
            raise ValueError("a corrupt row")

        loader._rows = unreadable()  # type: ignore[assignment]
        with pytest.raises(ValueError, match="corrupt"):
            await loader.load_rest()
    finally:
        await storage.close()


async def test_a_reopened_data_dir_keeps_its_id_bumps_its_incarnation_and_its_memory(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, durability="batch").model_copy(update={"node_id": None})
    storage, node = open_node(settings, "http://127.0.0.1:9001", 10.0, 5.0)
    first_id, first = node.view.node_id, node.view.incarnation
    await storage.persist([(f"{RESERVED_PREFIX}key", rec(1)), ("user", rec(2))], [])
    storage.remember_purged([("gone", (pack(1_000), "old"))], 10)
    await storage.close()
    storage, node = open_node(settings, "http://127.0.0.1:9001", 20.0, 6.0)
    try:
        assert node.view.node_id == first_id != "" and node.view.incarnation > first
        assert storage.get_meta("incarnation") == str(node.view.incarnation), "persisted first"
        assert list(node.view.records()) == [f"{RESERVED_PREFIX}key"], "the rest is streamed"
        assert node.view.address(first_id) == "http://127.0.0.1:9001"
        assert node.replica.tombstones.purged.get("gone") == (pack(1_000), "old")
    finally:
        await storage.close()


async def test_a_configured_node_id_wins_over_the_kept_one(tmp_path: Path) -> None:
    storage, node = open_node(settings_for(tmp_path, node_id="named"), "u", 10.0, 5.0)
    try:
        assert node.view.node_id == "named" and storage.get_meta("node_id") == "named"
    finally:
        await storage.close()


async def test_a_data_dir_that_cannot_be_read_is_released(tmp_path: Path) -> None:
    """A failed start leaves the data directory free for the next attempt."""
    settings = settings_for(tmp_path, durability="batch")
    storage = Storage.open(Path(settings.data_dir), "batch")
    storage.set_meta("incarnation", "not a number")
    await storage.close()
    with pytest.raises(ValueError):
        open_node(settings, "u", 10.0, 5.0)
    reopened = Storage.open(Path(settings.data_dir), "batch")  # not locked by the failure
    try:
        assert reopened.get_meta("incarnation") == "not a number"
    finally:
        await reopened.close()
