"""SQLite storage: round trips, purges, group commit, and no acknowledged write lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumordb.core.record import Record
from rumordb.live.storage import Storage, StorageError, StorageUsage


def record(value: bytes, counter: int = 1, origin: str = "n1", tombstone: bool = False) -> Record:
    return Record(value, "text/plain", {origin: counter}, 1000 + counter, origin, tombstone)


def test_records_survive_close_and_reopen(tmp_path: Path) -> None:
    async def scenario() -> None:
        storage = Storage.open(tmp_path, "sync")
        await storage.persist([("a", record(b"1")), ("b", record(b"2", tombstone=True))], [])
        await storage.persist([("a", record(b"3", counter=2))], [])
        await storage.close()

    asyncio.run(scenario())
    storage = Storage.open(tmp_path, "sync")
    try:
        assert dict(storage.load()) == {
            "a": record(b"3", counter=2),
            "b": record(b"2", tombstone=True),
        }
    finally:
        storage.close_sync()


def test_replicated_versions_commit_without_their_own_fsync(tmp_path: Path) -> None:
    """Peers' versions skip the fsync (their origin holds them); client writes never do."""
    synced: list[bool] = []

    async def scenario() -> None:
        storage = Storage.open(tmp_path, "sync")
        original = storage._set_synchronous

        def spy(full: bool) -> None:
            synced.append(full)
            original(full)

        storage._set_synchronous = spy  # type: ignore[method-assign]
        await storage.persist([("from-peer", record(b"p"))], [], durable=False)
        await storage.persist([("from-client", record(b"c"))], [])
        await storage.close()

    asyncio.run(scenario())
    assert synced == [False, True]
    storage = Storage.open(tmp_path, "sync")
    try:
        assert set(dict(storage.load())) == {"from-peer", "from-client"}
    finally:
        storage.close_sync()


def test_purges_delete_records(tmp_path: Path) -> None:
    async def scenario() -> None:
        storage = Storage.open(tmp_path, "sync")
        await storage.persist([("a", record(b"1")), ("b", record(b"2"))], [])
        await storage.persist([], ["a", "never-written"])
        await storage.close()

    asyncio.run(scenario())
    storage = Storage.open(tmp_path, "batch")
    try:
        assert [key for key, _ in storage.load()] == ["b"]
    finally:
        storage.close_sync()


def test_batch_mode_commits_without_waiting_and_close_flushes(tmp_path: Path) -> None:
    async def scenario() -> Storage:
        storage = Storage.open(tmp_path, "batch")
        for i in range(200):
            await storage.persist([(f"k{i}", record(b"v"))], [])
        await storage.close()
        return storage

    stats = asyncio.run(scenario()).stats
    assert stats.jobs == 200
    storage = Storage.open(tmp_path, "sync")
    try:
        assert len(storage.load()) == 200
    finally:
        storage.close_sync()


def test_batch_mode_commits_within_a_few_ms(tmp_path: Path) -> None:
    async def scenario() -> float:
        storage = Storage.open(tmp_path, "batch")
        await storage.persist([("k", record(b"v"))], [])
        deadline = time.monotonic() + 2.0
        started = time.monotonic()
        while storage.stats.commits == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        elapsed = time.monotonic() - started
        await storage.close()
        return elapsed

    assert asyncio.run(scenario()) < 0.5  # generous: the machine is shared


def test_concurrent_persists_share_few_transactions(tmp_path: Path) -> None:
    async def scenario() -> Storage:
        storage = Storage.open(tmp_path, "sync")
        await asyncio.gather(*(storage.persist([(f"k{i}", record(b"v"))], []) for i in range(500)))
        await storage.close()
        return storage

    stats = asyncio.run(scenario()).stats
    assert stats.jobs == 500
    assert stats.records_written == 500
    assert stats.commits <= 50  # one fsync per batch, not per caller
    assert stats.largest_commit_jobs >= 10


def test_last_version_of_a_key_wins_within_one_commit(tmp_path: Path) -> None:
    async def scenario() -> None:
        storage = Storage.open(tmp_path, "sync")
        await asyncio.gather(
            *(storage.persist([("k", record(b"%d" % i, counter=i))], []) for i in range(1, 100))
        )
        await storage.persist([("gone", record(b"x"))], [])
        await asyncio.gather(
            storage.persist([], ["gone"]), storage.persist([("gone", record(b"y", 2))], [])
        )
        await storage.close()

    asyncio.run(scenario())
    storage = Storage.open(tmp_path, "sync")
    try:
        loaded = dict(storage.load())
        assert loaded["k"] == record(b"99", counter=99)
        assert loaded["gone"] == record(b"y", 2)
    finally:
        storage.close_sync()


def test_full_queue_makes_callers_wait_in_order(tmp_path: Path) -> None:
    async def scenario() -> Storage:
        storage = Storage.open(tmp_path, "batch", queue_max=4)
        for i in range(300):
            await storage.persist([("k", record(b"%d" % i, counter=i + 1))], [])
        await storage.close()
        return storage

    assert asyncio.run(scenario()).stats.jobs == 300
    storage = Storage.open(tmp_path, "sync")
    try:
        assert storage.load() == [("k", record(b"299", counter=300))]
    finally:
        storage.close_sync()


def test_meta_survives_reopen(tmp_path: Path) -> None:
    storage = Storage.open(tmp_path, "sync")
    assert storage.get_meta("incarnation") is None
    storage.set_meta("incarnation", "1")
    storage.set_meta("incarnation", "2")
    storage.set_meta("node_id", "n7")
    storage.close_sync()
    storage = Storage.open(tmp_path, "sync")
    try:
        assert storage.get_meta("incarnation") == "2"
        assert storage.get_meta("node_id") == "n7"
    finally:
        storage.close_sync()


def test_memory_mode_touches_no_disk(tmp_path: Path) -> None:
    async def scenario() -> None:
        storage = Storage.open(tmp_path / "data", "memory")
        await storage.persist([("a", record(b"1"))], [])
        storage.set_meta("incarnation", "3")
        assert storage.get_meta("incarnation") == "3"
        assert storage.load() == []
        await storage.close()

    asyncio.run(scenario())
    assert not (tmp_path / "data").exists()


def test_one_data_dir_serves_one_process(tmp_path: Path) -> None:
    storage = Storage.open(tmp_path, "sync")
    try:
        with pytest.raises(StorageError, match="in use"):
            Storage.open(tmp_path, "sync")
    finally:
        storage.close_sync()
    Storage.open(tmp_path, "sync").close_sync()


def test_persist_after_close_fails(tmp_path: Path) -> None:
    async def scenario() -> None:
        storage = Storage.open(tmp_path, "sync")
        await storage.close()
        with pytest.raises(StorageError, match="closed"):
            await storage.persist([("a", record(b"1"))], [])

    asyncio.run(scenario())


def test_unknown_durability_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="durability"):
        Storage.open(tmp_path, "fsync-sometimes")


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from rumordb.core.record import Record
    from rumordb.live.storage import Storage

    async def main() -> None:
        storage = Storage.open(Path(sys.argv[1]), "sync")

        async def write(i: int) -> None:
            key = f"k{i}"
            await storage.persist([(key, Record(key.encode(), "text/plain", {"n1": i}, i, "n1"))], [])
            sys.stdout.write(key + "\\n")
            sys.stdout.flush()

        i = 0
        while True:  # until SIGKILL
            await asyncio.gather(*(write(i + j) for j in range(16)))
            i += 16

    asyncio.run(main())
    """
)


def test_sigkill_loses_no_acknowledged_sync_write(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    acknowledged: list[str] = []
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 60
        while len(acknowledged) < 1000 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acknowledged.append(line.strip())
        os.kill(child.pid, signal.SIGKILL)  # right after the acks, mid-stream of writes
    finally:
        child.kill()
        child.wait(timeout=30)
        assert child.stdout is not None
        acknowledged.extend(line.strip() for line in child.stdout.read().splitlines())
        child.stdout.close()
    assert len(acknowledged) >= 1000, "the writer did not acknowledge enough writes"
    storage = Storage.open(data_dir, "sync")
    try:
        stored = dict(storage.load())
    finally:
        storage.close_sync()
    missing = [key for key in acknowledged if key not in stored]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
    assert all(stored[key].value == key.encode() for key in acknowledged)


def test_large_commits_write_every_row_once(tmp_path: Path) -> None:
    """Rows go in as multi-row statements of several sizes: none lost, none duplicated."""
    from rumordb.live.storage import _pieces

    for count in (0, 1, 2, 3, 31, 255, 256, 257, 1000):
        covered = [i for start, size in _pieces(count) for i in range(start, start + size)]
        assert covered == list(range(count))

    async def scenario() -> None:
        storage = Storage.open(tmp_path, "sync")
        await storage.persist([(f"k{i}", record(b"%d" % i)) for i in range(700)], [])
        await storage.persist(
            [(f"k{i}", record(b"new", counter=2)) for i in range(0, 700, 3)],
            [f"k{i}" for i in range(1, 700, 3)],
        )
        await storage.close()

    asyncio.run(scenario())
    storage = Storage.open(tmp_path, "sync")
    try:
        loaded = dict(storage.load())
    finally:
        storage.close_sync()
    assert loaded == {
        f"k{i}": record(b"new", counter=2) if i % 3 == 0 else record(b"%d" % i)
        for i in range(700)
        if i % 3 != 1
    }


def _log_rows(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "rumor.sqlite3") as db:
        return int(db.execute("SELECT count(*) FROM log").fetchone()[0])


def test_a_log_left_by_a_crash_is_replayed_over_the_compacted_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commits append to a log; what no compaction folded in is replayed at open."""

    async def scenario() -> None:
        storage = Storage.open(tmp_path, "sync")
        await storage.persist([("a", record(b"1")), ("b", record(b"2")), ("c", record(b"3"))], [])
        storage._compact()  # records: a=1, b=2, c=3; empty log
        assert _log_rows(tmp_path) == 0
        monkeypatch.setattr(Storage, "_compact", lambda self: None)  # "crash" before folding
        await storage.persist([("a", record(b"4", counter=2))], ["b"])
        await storage.persist([("d", record(b"5"))], [])
        await storage.close()

    asyncio.run(scenario())
    assert _log_rows(tmp_path) == 2
    monkeypatch.undo()
    storage = Storage.open(tmp_path, "sync")
    expected = {"a": record(b"4", counter=2), "c": record(b"3"), "d": record(b"5")}
    try:
        assert dict(storage.load()) == expected
    finally:
        storage.close_sync()  # folds the replayed log in
    assert _log_rows(tmp_path) == 0
    storage = Storage.open(tmp_path, "sync")
    try:
        assert dict(storage.load()) == expected
    finally:
        storage.close_sync()


def test_the_log_is_compacted_when_it_grows_or_idles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rumordb.live.storage as live_storage

    monkeypatch.setattr(live_storage, "COMPACT_ROWS", 4)
    monkeypatch.setattr(live_storage, "COMPACT_AFTER_S", 60.0)  # first: by size only

    async def scenario() -> Storage:
        storage = Storage.open(tmp_path, "sync")
        for i in range(4):  # the 4th log row triggers a compaction (after the ack)
            await storage.persist([(f"k{i % 2}", record(b"%d" % i, counter=i + 1))], [])
        deadline = time.monotonic() + 5
        while storage.stats.compactions < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        assert storage.stats.compactions == 1
        assert storage.stats.records_compacted == 2  # k0 and k1, each written twice
        monkeypatch.setattr(live_storage, "COMPACT_AFTER_S", 0.05)
        await storage.persist([("k2", record(b"x"))], [])
        deadline = time.monotonic() + 5
        while storage.stats.compactions < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # idle: folded after COMPACT_AFTER_S
        assert storage.stats.compactions == 2
        assert _log_rows(tmp_path) == 0
        return storage

    storage = asyncio.run(scenario())
    storage.close_sync()
    storage = Storage.open(tmp_path, "sync")
    try:
        assert dict(storage.load()) == {
            "k0": record(b"2", counter=3),
            "k1": record(b"3", counter=4),
            "k2": record(b"x"),
        }
    finally:
        storage.close_sync()


def test_a_corrupt_log_row_is_quarantined_not_fatal(tmp_path: Path) -> None:
    async def write(storage: Storage, key: str) -> None:
        await storage.persist([(key, record(b"v"))], [])

    storage = Storage.open(tmp_path, "sync")
    asyncio.run(write(storage, "before"))
    storage.close_sync()
    with sqlite3.connect(tmp_path / "rumor.sqlite3") as db:
        db.execute("INSERT INTO log (batch) VALUES (?)", (b"\xc1 not msgpack",))
    storage = Storage.open(tmp_path, "sync")  # starts anyway
    try:
        assert storage.stats.corrupt_skipped == 1
        assert dict(storage.load()) == {"before": record(b"v")}
        asyncio.run(write(storage, "after"))
    finally:
        storage.close_sync()
    with sqlite3.connect(tmp_path / "rumor.sqlite3") as db:  # kept aside for an operator
        assert db.execute("SELECT batch FROM quarantine").fetchall() == [(b"\xc1 not msgpack",)]
    storage = Storage.open(tmp_path, "sync")
    try:
        assert storage.stats.corrupt_skipped == 0  # quarantined once, not at every start
        assert set(dict(storage.load())) == {"before", "after"}
    finally:
        storage.close_sync()


def test_a_stored_record_that_does_not_decode_is_skipped_and_counted(tmp_path: Path) -> None:
    async def write(storage: Storage) -> None:
        await storage.persist([("good", record(b"g")), ("bad", record(b"b"))], [])

    storage = Storage.open(tmp_path, "sync")
    asyncio.run(write(storage))
    storage.close_sync()  # compacts: both are rows of ``records`` now
    with sqlite3.connect(tmp_path / "rumor.sqlite3") as db:
        db.execute("UPDATE records SET record = ? WHERE key = 'bad'", (b"\x93\x01",))
    storage = Storage.open(tmp_path, "sync")
    try:
        assert dict(storage.load()) == {"good": record(b"g")}
        assert storage.stats.corrupt_skipped == 1
    finally:
        storage.close_sync()


# --- a failing commit fails its batch, never the writer ---------------------------------
class FailingConnection:
    """A connection whose next ``failures`` log appends raise, as a full disk would."""

    def __init__(self, real: sqlite3.Connection, failures: int = 1) -> None:
        self.real = real
        self.failures = failures

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql.startswith("INSERT INTO log") and self.failures > 0:
            self.failures -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return self.real.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


def inject_commit_failures(storage: Storage, failures: int = 1) -> FailingConnection:
    assert storage._db is not None
    failing = FailingConnection(storage._db, failures)
    storage._db = failing  # type: ignore[assignment]
    return failing


def test_a_failed_commit_fails_its_batch_and_later_writes_succeed(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        storage = Storage.open(tmp_path, "sync")
        inject_commit_failures(storage, failures=2)
        seen: list[str] = []
        for key in ("lost-1", "lost-2"):
            with pytest.raises(StorageError, match=r"commit failed: .*disk is full"):
                await storage.persist([(key, record(b"x"))], [])
            seen += storage.problems()
        assert storage.stats.failing_commits == 2 and storage.stats.commit_failures == 2
        await storage.persist([("kept", record(b"y"))], [])  # the writer went on
        assert storage.problems() == [] and storage.stats.failing_commits == 0
        assert storage.stats.commit_failures == 2
        await storage.close()
        return seen

    seen = asyncio.run(scenario())
    assert "failed" in seen[0] and "last 2 commit(s) failed" in seen[1]
    storage = Storage.open(tmp_path, "sync")
    try:
        assert dict(storage.load()) == {"kept": record(b"y")}  # nothing half-written
    finally:
        storage.close_sync()


def test_a_record_that_cannot_be_encoded_fails_alone(tmp_path: Path) -> None:
    """An HLC of 2**64 (beyond MessagePack) once killed the writer for every later write."""
    poisoned = Record(b"p", "text/plain", {"n1": 1}, 2**64, "n1", False)

    async def scenario() -> Storage:
        storage = Storage.open(tmp_path, "sync")
        results = await asyncio.gather(
            storage.persist([("poisoned", poisoned)], []),
            storage.persist([("innocent", record(b"i"))], []),
            return_exceptions=True,
        )
        assert isinstance(results[0], StorageError) and results[1] is None
        await storage.persist([("later", record(b"l"))], [])
        assert storage._thread is not None and storage._thread.is_alive()
        assert storage.stats.encode_failures == 1 and storage.problems() == []
        await storage.close()
        return storage

    asyncio.run(scenario())
    storage = Storage.open(tmp_path, "sync")
    try:
        assert set(dict(storage.load())) == {"innocent", "later"}
    finally:
        storage.close_sync()


def test_an_unexpected_exception_in_the_writer_answers_its_callers(tmp_path: Path) -> None:
    async def scenario() -> None:
        storage = Storage.open(tmp_path, "sync")
        original = storage._encode
        calls = 0

        def broken_once(jobs: list[object]) -> object:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("a bug in the writer")
            return original(jobs)  # type: ignore[arg-type]

        storage._encode = broken_once  # type: ignore[method-assign,assignment]
        with pytest.raises(StorageError, match="a bug in the writer"):
            await asyncio.wait_for(storage.persist([("a", record(b"1"))], []), 10)
        await asyncio.wait_for(storage.persist([("b", record(b"2"))], []), 10)
        await storage.close()

    asyncio.run(scenario())


def test_a_log_line_that_cannot_be_written_neither_ends_the_writer_nor_acks_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closed stdout pipe made the writer's log call raise: the thread ended, and every
    later persist waited forever; a crashed commit logged before failing its jobs."""
    import rumordb.live.storage as live_storage

    class BrokenLog:
        def __getattr__(self, name: str) -> Callable[..., None]:
            def write(*args: object, **kwargs: object) -> None:
                raise BrokenPipeError(32, "Broken pipe")

            return write

    monkeypatch.setattr(live_storage, "log", BrokenLog())

    async def scenario() -> None:
        storage = Storage.open(tmp_path, "sync")
        inject_commit_failures(storage, failures=1)
        with pytest.raises(StorageError, match="disk is full"):
            await asyncio.wait_for(storage.persist([("lost", record(b"x"))], []), 10)
        original = storage._encode
        calls = 0

        def broken_once(jobs: list[object]) -> object:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("a bug in the writer")
            return original(jobs)  # type: ignore[arg-type]

        storage._encode = broken_once  # type: ignore[method-assign,assignment]
        with pytest.raises(StorageError, match="a bug in the writer"):
            await asyncio.wait_for(storage.persist([("crashed", record(b"c"))], []), 10)
        await asyncio.wait_for(storage.persist([("kept", record(b"y"))], []), 10)
        assert storage._thread is not None and storage._thread.is_alive()
        await storage.close()

    asyncio.run(scenario())
    storage = Storage.open(tmp_path, "sync")
    try:
        assert dict(storage.load()) == {"kept": record(b"y")}
    finally:
        storage.close_sync()


def _fast_measurements(monkeypatch: pytest.MonkeyPatch) -> None:
    import rumordb.live.storage as live_storage

    monkeypatch.setattr(live_storage, "COMPACT_AFTER_S", 0.05)
    monkeypatch.setattr(live_storage, "RECOUNT_MIN_INTERVAL_S", 0.0)


async def _until(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert check()


def test_a_mass_purge_gives_the_file_back_and_usage_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tombstones a forgotten member held back are purged at once: the file must shrink."""
    _fast_measurements(monkeypatch)
    value = b"x" * 1000
    keys = [f"k{i}" for i in range(3000)]

    async def scenario() -> tuple[StorageUsage, StorageUsage, int]:
        storage = Storage.open(tmp_path, "sync")
        await storage.persist([(key, record(value)) for key in keys], [])
        size = len(keys) * len(value)
        # Rows are counted after a fold; the pages reach the file at a WAL checkpoint.
        await _until(lambda: (u := storage.usage()) is not None and u.rows == len(keys))
        await _until(lambda: (u := storage.usage()) is not None and u.db_bytes > size)
        full = storage.usage()
        assert full is not None
        await storage.persist([], keys)
        await _until(lambda: (u := storage.usage()) is not None and u.rows == 0)
        await _until(lambda: (u := storage.usage()) is not None and u.db_bytes < full.db_bytes / 4)
        empty = storage.usage()
        assert empty is not None
        # The writer thread counts a vacuum step after the file has shrunk: poll for it.
        await _until(lambda: storage.stats.pages_reclaimed * 4096 >= full.db_bytes / 2)
        reclaimed = storage.stats.pages_reclaimed
        await storage.close()
        return full, empty, reclaimed

    full, empty, reclaimed = asyncio.run(scenario())
    assert full.reclaims
    assert empty.db_bytes < full.db_bytes / 4, (full, empty)
    assert reclaimed * 4096 >= full.db_bytes / 2
    with sqlite3.connect(tmp_path / "rumor.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_busy_writer_keeps_freed_pages_for_its_next_commits_and_gives_them_back_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between group commits a compaction's freed pages are reused, not given back (a
    vacuum then only made the file shrink and grow again); once idle, they are."""
    import rumordb.live.storage as live_storage

    monkeypatch.setattr(live_storage, "COMPACT_ROWS", 1)  # every commit compacts (busy path)
    monkeypatch.setattr(live_storage, "COMPACT_AFTER_S", 3600.0)  # never idle meanwhile
    value = b"z" * 1000
    keys = [f"k{i}" for i in range(3000)]

    async def scenario() -> tuple[int, int, Storage]:
        storage = Storage.open(tmp_path, "sync")
        await storage.persist([(key, record(value)) for key in keys], [])
        await storage.persist([], keys)  # a mass purge: most of the file is free now
        await _until(lambda: storage.stats.compactions >= 2)
        # Measured after the purge's compaction: nearly the whole file is free, and kept.
        await _until(lambda: (u := storage.usage()) is not None and u.free_bytes > 0.8 * u.db_bytes)
        busy = storage.stats.pages_reclaimed
        await storage.close()  # the stopping writer takes its idle steps
        return busy, storage.stats.pages_reclaimed, storage

    busy, idle, storage = asyncio.run(scenario())
    assert busy == 0
    assert idle * 4096 > len(keys) * len(value) / 2, storage.stats


def test_freed_pages_are_not_rewritten_with_zeros(tmp_path: Path) -> None:
    """secure_delete=FAST: deleted cells are zeroed on their b-tree pages, but a freed
    page (every overflow page of a compacted log row) is not written again (this
    SQLite build defaults to 1, which did: ~0.5 us of writer CPU per record)."""
    storage = Storage.open(tmp_path, "sync")
    try:
        assert storage._db is not None
        assert storage._db.execute("PRAGMA secure_delete").fetchone()[0] == 2  # FAST
    finally:
        storage.close_sync()


def test_a_database_made_without_auto_vacuum_reuses_its_free_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old data dir cannot shrink, but rounds of writes and purges do not grow it."""
    _fast_measurements(monkeypatch)
    with sqlite3.connect(tmp_path / "rumor.sqlite3") as db:  # as before this version
        db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    value = b"y" * 1000

    async def scenario() -> list[int]:
        storage = Storage.open(tmp_path, "sync")
        sizes = []
        for round_ in range(6):
            keys = [f"r{round_}-{i}" for i in range(1000)]
            await storage.persist([(key, record(value)) for key in keys], [])
            await storage.persist([], keys)
            await _until(lambda: (u := storage.usage()) is not None and u.log_rows == 0)
            # Copy the WAL into the file, so its size is what the rounds left (when an
            # automatic checkpoint comes depends on how much each commit writes).
            with sqlite3.connect(tmp_path / "rumor.sqlite3", timeout=10) as other:
                other.execute("PRAGMA wal_checkpoint(FULL)").fetchall()
            usage = storage.usage()
            assert usage is not None and not usage.reclaims
            sizes.append(usage.db_bytes)
        await storage.close()
        return sizes

    sizes = asyncio.run(scenario())
    # From the second round on, the pages the first one freed are reused.
    assert sizes[0] > 100_000 and max(sizes[1:]) <= sizes[0] * 1.1, sizes


def test_memory_mode_reports_no_usage(tmp_path: Path) -> None:
    storage = Storage.open(tmp_path, "memory")
    assert storage.usage() is None
    storage.close_sync()


def test_jobs_commit_in_call_order_even_when_awaited_out_of_order(tmp_path: Path) -> None:
    """A tombstone received (persisted behind, awaited later) then purged by the tick
    (awaited at once) must not come back on disk: the call fixes the order."""

    async def scenario() -> None:
        storage = Storage.open(tmp_path, "sync")
        received = storage.persist([("k", record(b"", tombstone=True))], [], durable=False)
        await storage.persist([], ["k"])  # the purge, called second, awaited first
        await received
        await storage.close()

    asyncio.run(scenario())
    storage = Storage.open(tmp_path, "sync")
    try:
        assert storage.load() == []
    finally:
        storage.close_sync()


def test_a_full_queue_keeps_call_order_for_callers_that_await_later(tmp_path: Path) -> None:
    async def scenario() -> None:
        storage = Storage.open(tmp_path, "sync", queue_max=1)
        calls = [storage.persist([(f"k{i % 3}", record(b"%d" % i, i + 1))], []) for i in range(9)]
        calls.append(storage.persist([], ["k0"]))
        for call in reversed(calls):  # awaited in the opposite order
            await call
        await storage.close()

    asyncio.run(scenario())
    storage = Storage.open(tmp_path, "sync")
    try:
        assert dict(storage.load()) == {"k1": record(b"7", 8), "k2": record(b"8", 9)}
    finally:
        storage.close_sync()


def test_the_start_up_stream_reads_in_chunks_every_latest_version_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rumordb.live.storage as storage_module

    async def scenario() -> None:
        storage = Storage.open(tmp_path, "batch")
        await storage.persist([(f"k{i}", record(b"old")) for i in range(50)], [])
        await storage.close()  # compacted: the records table
        storage = Storage.open(tmp_path, "batch")
        await storage.persist([(f"k{i}", record(b"new", counter=2)) for i in range(0, 50, 5)], [])
        await storage.persist([], ["k1", "k2"])  # in the log, over the table
        storage.close_sync()

    asyncio.run(scenario())
    monkeypatch.setattr(storage_module, "LOAD_CHUNK_ROWS", 7)
    storage = Storage.open(tmp_path, "sync")
    try:
        streamed = list(storage.stream())
        keys = [key for key, _ in streamed]
        assert len(keys) == len(set(keys)) == 48 and "k1" not in keys and "k2" not in keys
        loaded = dict(streamed)
        assert all(loaded[f"k{i}"] == record(b"new", counter=2) for i in range(0, 50, 5))
        assert loaded["k3"] == record(b"old")
    finally:
        storage.close_sync()


Item = tuple[str, int | None]  # (key, a version's counter, or None: a purge)
items = st.lists(st.tuples(st.sampled_from("abcdef"), st.none() | st.integers(1, 40)), max_size=8)


def _apply(data_dir: Path, jobs: list[list[Item]]) -> None:
    """Each job as one ``persist`` (its writes, then its purges), awaited in order."""

    async def scenario() -> None:
        storage = Storage.open(data_dir, "sync")
        for job in jobs:
            writes = [(key, record(b"%d" % n, counter=n)) for key, n in job if n is not None]
            await storage.persist(writes, [key for key, n in job if n is None])
        await storage.close()

    asyncio.run(scenario())


def _rows(data_dir: Path) -> list[tuple[str, bytes]]:
    with sqlite3.connect(data_dir / "rumor.sqlite3") as db:
        return list(db.execute("SELECT key, record FROM records ORDER BY key"))


@settings(max_examples=30, deadline=None)
@given(jobs=st.lists(items, min_size=1, max_size=6), compact_rows=st.integers(1, 3))
def test_batches_leave_the_disk_as_their_items_one_by_one(
    tmp_path_factory: pytest.TempPathFactory, jobs: list[list[Item]], compact_rows: int
) -> None:
    """Whatever mix of writes, rewrites and purges a batch holds, and wherever compactions
    fall, a restart reads what the items persisted one at a time leave, row for row."""
    import rumordb.live.storage as live_storage

    saved = live_storage.COMPACT_ROWS
    live_storage.COMPACT_ROWS = compact_rows  # compactions between (and inside) the runs
    try:
        batched, single = tmp_path_factory.mktemp("batched"), tmp_path_factory.mktemp("single")
        _apply(batched, jobs)
        one_by_one = [[(k, n)] for job in jobs for k, n in sorted(job, key=lambda i: i[1] is None)]
        _apply(single, one_by_one)
    finally:
        live_storage.COMPACT_ROWS = saved
    expected: dict[str, Record] = {}
    for key, n in (item for job in one_by_one for item in job):
        if n is None:
            expected.pop(key, None)
        else:
            expected[key] = record(b"%d" % n, counter=n)
    assert _rows(batched) == _rows(single)
    for data_dir in (batched, single):
        assert _log_rows(data_dir) == 0  # close folded the whole log
        storage = Storage.open(data_dir, "sync")
        try:
            assert dict(storage.load()) == expected
        finally:
            storage.close_sync()
