"""Durable records in SQLite, written by one group-commit thread.

The node keeps its working set in memory (``core.Node``); this module only makes versions
survive a crash. Callers ``await persist(writes, purges)`` (the ``Output`` of a node step)
before they send or acknowledge anything, as the core's contract demands.

Group commit. Every ``persist`` appends a job to one queue and wakes the writer thread.
The writer takes *everything* queued, applies it in one transaction (one fsync), then
resolves all those callers' futures with ``loop.call_soon_threadsafe``. While it commits,
new callers queue up for the next transaction, so under load the number of fsyncs stays
near the disk's rate while throughput grows with concurrency. Jobs commit in the order
they were queued; within one transaction the last version of a key wins.

Log, then compact. A group commit appends ONE row to the ``log`` table: the batch's
``(key, record or None for a purge)`` pairs as one MessagePack blob. Upserting every
record into the keyed ``records`` table instead rewrote a B-tree page per key (4 KiB of
WAL for a 200-byte record) and cost ~10 µs per record inside a busy node, a quarter of a
replicated write's CPU. The writer folds the log into ``records`` later, in large
batches where a key written many times is written once: when the log holds
``COMPACT_KEYS`` keys or ``COMPACT_ROWS`` batches, when it has been idle for
``COMPACT_AFTER_S``, and at close. A compaction writes its keys in key order: random
keys then touch each B-tree page once per compaction instead of once per key (measured
on 100k random keys: 21 us per key unsorted in batches of 4 096, 5.4 sorted in batches
of 16 384; sequential keys 2.2 either way), so the batches are large too: into a table of
200k keys, 5.3 us of CPU per random key in batches of 16 384, 2.9 in batches of 65 536
(a batch rewrites most pages either way, so the cost per key falls with its size; a
larger one holds the group commits up longer, ~0.2 s of CPU at 65 536). A compaction
upserts and deletes the keys and deletes the log rows it covered in one transaction, so
a crash at any point leaves ``records`` plus the remaining log equal to what was
acknowledged; ``load`` reads ``records`` and replays the log over it, in order.

Durability modes (``--durability``):

* ``sync``: ``synchronous=FULL``; ``persist`` returns after the transaction is on disk. In
  WAL mode ``NORMAL`` only syncs at checkpoints, which survives a process crash but not
  power loss, so it is not enough for an acknowledgement that promises durability.
  Versions that arrive from peers are persisted with ``durable=False``: committed (a
  process crash cannot lose them) but not synced on their own, because no client waits
  on them and their origin holds them durably; a batch that carries any client write
  is synced. This halves the fsyncs of a replicating cluster.
* ``batch``: ``synchronous=NORMAL``; ``persist`` returns at once and the writer commits
  within a few ms. A crash can lose the last moments of acknowledged writes.
* ``memory``: no file at all; ``persist`` is a no-op and ``load`` returns nothing.

The queue is bounded (``queue_max`` writes + purges): when it is full, ``persist`` waits
for the writer (backpressure) instead of growing memory, and waiting callers keep their
order.

Failures stay with the batch that caused them. A job whose records cannot be encoded
(e.g. an integer MessagePack cannot hold) fails alone with ``StorageError``; a
transaction that fails (disk full, I/O error) fails every job of that group commit. In
both cases nothing of theirs was acknowledged, and the writer goes on with the next
batch: no single input, and no passing disk error, stops a node's writes (nor a log
line that cannot be written: the writer's logging never raises). While the last
transaction failed the node is degraded (``problems()``, shown on ``/health``); failures
are counted in ``StorageStats`` (``/metrics``). Any other exception in the writer thread
is logged and fails the batch at hand, never the thread.

At start a stored record or log row that does not decode is skipped, counted
(``corrupt_skipped``) and logged instead of keeping the node down; a corrupt log row is
moved to the ``quarantine`` table first, so compaction never deletes the evidence.

Disk space. Purged keys and compacted log rows free pages inside the file; SQLite reuses
them for later writes, so under a steady load the file stops growing. A database created
by this version also gives the excess back (``auto_vacuum=INCREMENTAL``): after a
compaction, when free pages exceed ``RECLAIM_FREE_SHARE`` of the file (and
``RECLAIM_MIN_PAGES``), the writer runs ``incremental_vacuum`` for at most
``RECLAIM_STEP_PAGES`` and a passive checkpoint, once the writer is idle (a busy writer
reuses the pages at once: giving them back between group commits only made the file
shrink and grow again), so the file shrinks after a mass purge
(e.g. the tombstones a forgotten member held back) instead of staying at its high-water
mark. Deleted content is zeroed on b-tree pages but not on freed pages
(``secure_delete=FAST``; SQLite's own default zeroes nothing, some builds zero every
freed page, which made a compaction rewrite all the log pages it freed): a purged
version may linger in a free page until the page is reused or given back.
A database made before keeps ``auto_vacuum=NONE`` (switching needs a full
``VACUUM``): it reuses its free pages but never shrinks. ``journal_size_limit`` truncates
a WAL that one large transaction grew. ``usage()`` reports the file sizes, free bytes and
rows (``/metrics``, ``/cluster``); rows are recounted by the writer, in at most
``RECOUNT_COST_SHARE`` of its time, since a count walks the whole table.

A lock file keeps two processes from using one data directory. Records are stored as
msgspec MessagePack of ``core.Record``; ``meta`` holds small strings (node id,
incarnation).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import functools
import itertools
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import structlog

from rumordb.core.record import Record

log = structlog.get_logger("rumor.storage")

DB_FILE = "rumor.sqlite3"
LOCK_FILE = "LOCK"
DEFAULT_QUEUE_MAX = 50_000  # writes + purges waiting for the writer before persist waits
DURABILITIES = ("sync", "batch", "memory")

LOAD_CHUNK_ROWS = 10_000  # rows read per step of the start-up load (``stream``)
COMPACT_KEYS = 65_536  # distinct keys in the log that trigger one (~16 MB of records held)
COMPACT_ROWS = 512  # log rows (group commits) that trigger a compaction
COMPACT_AFTER_S = 1.0  # an idle writer compacts a non-empty log after this long

RECLAIM_FREE_SHARE = 0.25  # free pages beyond this share of the file are given back...
RECLAIM_MIN_PAGES = 256  # ...and beyond this many: a little slack stays for reuse
RECLAIM_STEP_PAGES = 2048  # pages given back per writer step (8 MiB): keeps a step short
RECOUNT_COST_SHARE = 0.01  # rows are recounted in at most this share of the writer's time
RECOUNT_MIN_INTERVAL_S = 1.0
WAL_LIMIT_BYTES = 8 * 1024 * 1024  # a checkpointed WAL is truncated back to this size

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, batch BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS quarantine (id INTEGER PRIMARY KEY, batch BLOB NOT NULL)",
    # The purged-version memory (core.tombstones): oldest first by seq, bounded on write.
    "CREATE TABLE IF NOT EXISTS purged (seq INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,"
    " hlc INTEGER NOT NULL, origin TEXT NOT NULL)",
)
_LOG_APPEND = "INSERT INTO log (batch) VALUES (?)"
LogBatch = list[tuple[str, bytes | None]]  # (key, encoded record, or None: purged)
# Rows go in as multi-row statements of these sizes (largest first), not one statement
# per row: sqlite3 releases the GIL around every statement step, and under load each
# re-acquisition waits for the event loop to give the GIL up (a forced switch, up to
# 5 ms). A 31-row commit took ~35 such handoffs; now a handful (31 = 16+8+4+2+1).
# Power-of-two sizes keep the number of distinct statements (prepared-statement cache
# entries) small.
_CHUNKS = (256, 128, 64, 32, 16, 8, 4, 2, 1)


@functools.cache
def _upsert_sql(rows: int) -> str:
    # An upsert updates a row in place; INSERT OR REPLACE deletes and re-inserts it (two
    # B-tree operations): measured 2.5 against 6.8 µs per row (SQLite >= 3.24).
    values = ", ".join(["(?, ?)"] * rows)
    return (
        f"INSERT INTO records (key, record) VALUES {values} "
        "ON CONFLICT (key) DO UPDATE SET record = excluded.record"
    )


@functools.cache
def _delete_sql(rows: int) -> str:
    return f"DELETE FROM records WHERE key IN ({', '.join(['?'] * rows)})"


def _pieces(count: int) -> Iterator[tuple[int, int]]:
    """``(start, size)`` pieces of the ``_CHUNKS`` sizes covering ``range(count)``."""
    start = 0
    for size in _CHUNKS:
        while count - start >= size:
            yield start, size
            start += size


class StorageError(Exception):
    """The data directory cannot be used, or a commit failed."""


@dataclass(slots=True)
class _Job:
    writes: list[tuple[str, Record]]
    purges: list[str]
    done: asyncio.Future[None] | None  # None: nobody waits (batch mode)
    loop: asyncio.AbstractEventLoop
    durable: bool = True  # must reach the disk before ``done`` (client writes, sync mode)
    error: StorageError | None = None  # set by the writer when this job failed


@dataclass(slots=True)
class StorageStats:
    commits: int = 0  # group commits (log appends)
    jobs: int = 0  # persist calls committed
    records_written: int = 0
    records_purged: int = 0
    largest_commit_jobs: int = 0
    compactions: int = 0  # log -> records folds
    records_compacted: int = 0  # keys upserted or deleted by them
    commit_failures: int = 0  # group commits whose transaction failed
    encode_failures: int = 0  # jobs refused because a record could not be encoded
    failing_commits: int = 0  # consecutive failed transactions, 0 after a good one
    corrupt_skipped: int = 0  # stored records or log rows that did not decode at start
    pages_reclaimed: int = 0  # free pages given back to the file system (incremental vacuum)


@dataclass(frozen=True, slots=True)
class StorageUsage:
    """What the database occupies now (``Storage.usage``)."""

    db_bytes: int  # the SQLite file on disk
    wal_bytes: int  # its write-ahead log
    free_bytes: int  # pages inside the file that hold nothing (reused, or given back)
    rows: int  # rows of the keyed records table (live keys and tombstones), last count
    log_rows: int  # group commits not yet folded into records
    reclaims: bool  # auto_vacuum=INCREMENTAL: free pages beyond the slack are given back


class Storage:
    def __init__(
        self,
        durability: str,
        connection: sqlite3.Connection | None,
        lock_fd: int | None,
        queue_max: int = DEFAULT_QUEUE_MAX,
        path: Path | None = None,
    ) -> None:
        self.durability = durability
        self.path = path
        self.stats = StorageStats()
        self._db = connection
        self._synchronous_full = durability == "sync"  # as the connection was opened
        self._lock_fd = lock_fd
        self._queue_max = queue_max
        self._memory_meta: dict[str, str] = {}
        self._db_lock = threading.Lock()  # the connection is shared by two threads
        self._queue_lock = threading.Lock()
        self._wake = threading.Condition(self._queue_lock)
        self._jobs: list[_Job] = []
        self._queued = 0  # writes + purges in self._jobs
        self._stopping = False
        self._closed = False
        self.last_commit_error: str | None = None  # of the last failed transaction
        self.compaction_error: str | None = None  # the last failed compaction (retried)
        self._loop: asyncio.AbstractEventLoop | None = None
        # Jobs waiting for room in a full queue, in call order (loop side).
        self._waiting: collections.deque[tuple[_Job, asyncio.Future[None]]] = collections.deque()
        self._encoder = msgspec.msgpack.Encoder()
        # The log's content not yet folded into ``records`` (latest per key), and the id
        # of the last log row it covers. Touched under ``_db_lock``.
        self._unmerged: dict[str, bytes | None] = {}
        self._log_rows = 0
        self._last_log_id = 0
        self._thread: threading.Thread | None = None
        # Written by the writer thread (``_measure``), read by ``usage``.
        self._rows = 0
        self._rows_stale = connection is not None  # counted once the writer starts
        self._recount_due = 0.0  # time.monotonic() from which a recount may run
        self._free_pages = 0
        self._reclaim_pending = False  # more free pages to give back at the next idle step
        self._page_bytes = 4096
        self._reclaims = False
        if connection is not None:
            self._reclaims = _pragma(connection, "auto_vacuum") == 2  # INCREMENTAL
            self._page_bytes = _pragma(connection, "page_size")
            self._replay_log(connection)
            self._thread = threading.Thread(target=self._run, name="rumor-storage", daemon=True)
            self._thread.start()

    # --- opening ---------------------------------------------------------------------
    @classmethod
    def open(
        cls, data_dir: Path, durability: str, *, queue_max: int = DEFAULT_QUEUE_MAX
    ) -> Storage:
        if durability not in DURABILITIES:
            raise StorageError(f"durability must be one of {DURABILITIES}, not {durability!r}")
        if queue_max < 1:
            raise StorageError("queue_max must be >= 1")
        if durability == "memory":
            return cls(durability, None, None, queue_max)
        data_dir = Path(data_dir)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create data dir {data_dir}: {error}") from None
        lock_fd = _lock_data_dir(data_dir)
        try:
            connection = _connect(data_dir / DB_FILE, durability)
        except (sqlite3.Error, OSError) as error:
            os.close(lock_fd)
            raise StorageError(f"cannot open {data_dir / DB_FILE}: {error}") from None
        try:
            return cls(durability, connection, lock_fd, queue_max, data_dir / DB_FILE)
        except BaseException:  # a corrupt log: release the file and the lock
            connection.close()
            os.close(lock_fd)
            raise

    # --- reading (at start) ----------------------------------------------------------
    def load(self) -> list[tuple[str, Record]]:
        return list(self.stream())

    def stream(
        self, *, within: str = "", without: str = "", chunk_rows: int = LOAD_CHUNK_ROWS
    ) -> Iterator[tuple[str, Record]]:
        """At start: every stored (key, record), the log replayed over the records table, read in
        chunks: a restart never holds every row, nor every decoded record, at once (the
        store packs each as it arrives; measured, the whole list was ~600 B per key).

        ``within``: only the keys that start with it; ``without``: only those that do not
        (the runner loads the reserved keyspace first, then the rest: ``live.runner``).
        Each key comes once; the log's versions (newer) come first.
        """
        if self._db is None:
            return
        decoder = msgspec.msgpack.Decoder(Record)
        with self._db_lock:
            unmerged = dict(self._unmerged)  # the log: newer than the records table
        for key, blob in unmerged.items():
            if blob is not None and _selected(key, within, without):
                yield from self._decoded(decoder, key, blob)
        for where, bounds in _key_ranges(within, without):
            with self._db_lock:
                cursor = self._db.execute(f"SELECT key, record FROM records{where}", bounds)
            while True:
                with self._db_lock:
                    rows = cursor.fetchmany(chunk_rows)
                if not rows:
                    break
                for key, blob in rows:
                    if key not in unmerged:
                        yield from self._decoded(decoder, key, blob)

    async def read(self, key: str) -> Record | None:
        """``key``'s stored version, read from the disk in a thread (while the start-up
        load has not reached it yet: ``live.runner``); None if absent or purged."""
        if self._db is None:
            return None
        blob = await asyncio.to_thread(self._read_blob, key)
        if blob is None:
            return None
        for _, record in self._decoded(msgspec.msgpack.Decoder(Record), key, blob):
            return record
        return None

    def _read_blob(self, key: str) -> bytes | None:
        assert self._db is not None
        with self._db_lock:  # the log and the table, as one compaction leaves them
            if key in self._unmerged:
                return self._unmerged[key]
            row = self._db.execute("SELECT record FROM records WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def _decoded(
        self, decoder: msgspec.msgpack.Decoder[Record], key: str, blob: bytes
    ) -> Iterator[tuple[str, Record]]:
        try:
            yield key, decoder.decode(blob)
        except (msgspec.DecodeError, ValueError, TypeError, OverflowError) as error:
            # One bad version must not keep the node down: peers hold the key too,
            # and anti-entropy brings it back.
            self.stats.corrupt_skipped += 1
            log.error("stored_record_skipped", key=key[:200], error=str(error))

    def _replay_log(self, connection: sqlite3.Connection) -> None:
        """Read the log rows a previous run did not compact (at open, before the writer)."""
        decoder = msgspec.msgpack.Decoder(LogBatch)
        corrupt: list[int] = []
        for log_id, blob in connection.execute("SELECT id, batch FROM log ORDER BY id"):
            try:
                batch = decoder.decode(blob)
            except (msgspec.DecodeError, ValueError, TypeError, OverflowError) as error:
                corrupt.append(log_id)
                log.error("log_row_quarantined", log_id=log_id, error=str(error))
                continue
            self._unmerged.update(batch)
            self._log_rows += 1
            self._last_log_id = log_id
        if corrupt:
            self.stats.corrupt_skipped += len(corrupt)
            self._quarantine(connection, corrupt)

    @staticmethod
    def _quarantine(connection: sqlite3.Connection, log_ids: list[int]) -> None:
        """Move undecodable log rows aside, so a compaction never deletes them."""
        marks = ", ".join("?" * len(log_ids))
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(
                f"INSERT OR REPLACE INTO quarantine SELECT id, batch FROM log WHERE id IN ({marks})",
                log_ids,
            )
            connection.execute(f"DELETE FROM log WHERE id IN ({marks})", log_ids)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def problems(self) -> list[str]:
        """Why this node cannot persist right now (empty when it can)."""
        failing = self.stats.failing_commits
        if not failing:
            return []
        return [f"storage: the last {failing} commit(s) failed: {self.last_commit_error}"]

    def usage(self) -> StorageUsage | None:
        """File sizes now; free pages and rows as the writer last measured them."""
        if self._db is None or self.path is None:
            return None
        return StorageUsage(
            db_bytes=_file_bytes(self.path),
            wal_bytes=_file_bytes(self.path.with_name(self.path.name + "-wal")),
            free_bytes=self._free_pages * self._page_bytes,
            rows=self._rows,
            log_rows=self._log_rows,
            reclaims=self._reclaims,
        )

    def get_meta(self, name: str) -> str | None:
        if self._db is None:
            return self._memory_meta.get(name)
        with self._db_lock:
            row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        """Stored at once (its own transaction): used for node id and incarnation."""
        if self._db is None:
            self._memory_meta[name] = value
            return
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value)
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def load_purged(self) -> list[tuple[str, tuple[int, str]]]:
        """The purged-version memory, oldest first (``core.Node(purged=...)``)."""
        if self._db is None:
            return []
        with self._db_lock:
            rows = self._db.execute("SELECT key, hlc, origin FROM purged ORDER BY seq").fetchall()
        return [(str(key), (int(hlc), str(origin))) for key, hlc, origin in rows]

    def remember_purged(self, versions: Sequence[tuple[str, tuple[int, str]]], keep: int) -> None:
        """Store purged versions at once (their own transaction), keeping the newest ``keep``."""
        if self._db is None or not versions:
            return
        rows = [(key, hlc, origin) for key, (hlc, origin) in versions]
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # REPLACE drops a key's older row: its new row takes the next seq (newest).
                self._db.executemany(
                    "INSERT OR REPLACE INTO purged (key, hlc, origin) VALUES (?, ?, ?)", rows
                )
                self._db.execute(
                    "DELETE FROM purged WHERE seq <= (SELECT MAX(seq) FROM purged) - ?", (keep,)
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # --- writing ---------------------------------------------------------------------
    def persist(
        self,
        writes: Sequence[tuple[str, Record]],
        purges: Sequence[str],
        durable: bool = True,
    ) -> Awaitable[None]:
        """Queue the job now, in call order; await it: durable (sync) or queued (batch).

        The place in the queue is taken by the call itself, not when the caller first
        awaits: a caller that awaits later (``Runner._persist_behind`` makes a task of
        it) must not be overtaken by a later call. When it was a coroutine, a purge
        persisted by the tick could overtake the write of the same tombstone received
        just before, leaving the tombstone on disk for good (~50 of 1 000 keys in the
        bounded-growth test). A no-op in memory mode.

        ``durable=False`` (sync mode): committed when it returns, synced with the next
        durable batch or checkpoint; for versions a peer already holds durably.
        """
        loop = asyncio.get_running_loop()
        if self._closed or self._stopping:
            return _settled(loop, StorageError("storage is closed"))
        if self._db is None or not (writes or purges):
            return _settled(loop)
        if self._loop is not loop:  # futures belong to one loop
            self._loop, self._waiting = loop, collections.deque()
        waiter = loop.create_future() if self.durability == "sync" else None
        job = _Job(list(writes), list(purges), waiter, loop, durable)
        if not self._waiting and self._enqueue(job):
            return waiter if waiter is not None else _settled(loop)
        admitted = loop.create_future()  # the queue is full: wait in line (backpressure)
        self._waiting.append((job, admitted))
        return self._admitted_then(admitted, waiter)

    @staticmethod
    async def _admitted_then(
        admitted: asyncio.Future[None], waiter: asyncio.Future[None] | None
    ) -> None:
        await admitted
        if waiter is not None:
            await waiter

    def _admit_waiting(self) -> None:
        """On the loop, once the writer took the queue: admit waiting jobs, in order."""
        waiting = self._waiting
        while waiting:
            job, admitted = waiting[0]
            try:
                if not self._enqueue(job):
                    return  # still full: the writer calls again when it takes the queue
            except StorageError as error:  # stopping: nobody will commit them
                job.error = error
            waiting.popleft()
            if not admitted.done():  # a cancelled caller: its job is queued all the same
                if job.error is None:
                    admitted.set_result(None)
                else:
                    admitted.set_exception(job.error)

    def _enqueue(self, job: _Job) -> bool:
        size = len(job.writes) + len(job.purges)
        with self._queue_lock:
            if self._stopping:
                raise StorageError("storage is closed")
            if self._queued and self._queued + size > self._queue_max:
                return False
            self._jobs.append(job)
            self._queued += size
            self._wake.notify()
            return True

    async def close(self) -> None:
        """Commit everything queued, stop the writer, release the data directory."""
        if self._closed:
            return
        self._stop_writer()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        self._release()

    def close_sync(self) -> None:
        """``close`` for code that has no running event loop (tests, tools)."""
        if self._closed:
            return
        self._stop_writer()
        if self._thread is not None:
            self._thread.join()
        self._release()

    def _stop_writer(self) -> None:
        with self._queue_lock:
            self._stopping = True
            self._wake.notify()

    def _release(self) -> None:
        self._closed = True
        if self._db is not None:
            with self._db_lock:
                self._db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    # --- the writer thread -----------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._queue_lock:
                while not self._jobs and not self._stopping:
                    if not (self._log_rows or self._rows_stale or self._reclaim_pending):
                        self._wake.wait()
                    elif not self._wake.wait(COMPACT_AFTER_S):
                        break  # idle for a while: fold the log now
                jobs, self._jobs, self._queued = self._jobs, [], 0
            if not jobs:
                self._guarded(self._compact)  # idle, or stopping: leave a short log behind
                self._guarded(self._measure)
                if self._stopping:
                    return  # stopping, and everything queued is committed
                continue
            for loop in {job.loop for job in jobs}:
                _call_soon(loop, self._admit_waiting)  # room again: queue waiting jobs
            try:
                self._commit(jobs)
            except Exception as error:  # a bug: fail this batch, keep the writer
                for job in jobs:
                    job.error = job.error or StorageError(f"commit failed: {error!r}")
                _say(log.exception, "storage_commit_crashed", error=repr(error))
            finally:  # whatever happened, every caller gets an answer
                for loop in {job.loop for job in jobs}:
                    _call_soon(loop, _resolve, [job for job in jobs if job.loop is loop])
            if len(self._unmerged) >= COMPACT_KEYS or self._log_rows >= COMPACT_ROWS:
                self._guarded(self._compact)
                self._guarded(self._measure_busy)

    def _measure_busy(self) -> None:
        self._measure(reclaim=False)

    def _guarded(self, step: Callable[[], None]) -> None:
        """An unexpected exception in a writer step is logged; it never ends the thread."""
        try:
            step()
        except Exception as error:
            _say(log.exception, "storage_writer_step_failed", step=step.__name__, error=repr(error))

    def _commit(self, jobs: list[_Job]) -> None:
        """Append the jobs as one log row, in one transaction; failed jobs get ``error``."""
        latest = self._encode(jobs)
        committing = [job for job in jobs if job.error is None]
        if not committing:
            return
        try:
            batch = self._encoder.encode(list(latest.items()))
            self._append(batch, latest, any(job.durable for job in committing))
        except Exception as error:  # disk full, I/O error, a bug: this batch only
            self._commit_failed(committing, error)
            return
        self.stats.failing_commits = 0
        purged = sum(1 for blob in latest.values() if blob is None)
        self._count(committing, len(latest) - purged, purged)

    def _encode(self, jobs: list[_Job]) -> dict[str, bytes | None]:
        """The latest encoded version per key; a job that does not encode fails alone."""
        latest: dict[str, bytes | None] = {}
        encode = self._encoder.encode
        for job in jobs:
            try:
                encoded = [(key, encode(record)) for key, record in job.writes]
            except Exception as error:  # OverflowError, TypeError: this job's input only
                job.error = StorageError(f"a record cannot be stored: {error!r}")
                self.stats.encode_failures += 1
                _say(log.error, "record_not_encodable", error=str(error), writes=len(job.writes))
                continue
            latest.update(encoded)
            for key in job.purges:
                latest[key] = None
        return latest

    def _append(self, batch: bytes, latest: dict[str, bytes | None], durable: bool) -> None:
        assert self._db is not None
        with self._db_lock:
            if self.durability == "sync":
                self._set_synchronous(durable)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(_LOG_APPEND, (batch,))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._unmerged.update(latest)
            self._log_rows += 1
            self._last_log_id = cursor.lastrowid or self._last_log_id

    def _commit_failed(self, jobs: list[_Job], error: Exception) -> None:
        stats = self.stats
        stats.commit_failures += 1
        stats.failing_commits += 1
        self.last_commit_error = repr(error)
        for job in jobs:
            job.error = StorageError(f"commit failed: {error!r}")
        _say(log.error, "commit_failed", error=repr(error), jobs=len(jobs),
             in_a_row=stats.failing_commits)  # fmt: skip

    def _compact(self) -> None:
        """Fold the log into ``records`` and drop the log rows it covered (one transaction)."""
        if self._db is None or not self._log_rows:
            return
        with self._db_lock:
            unmerged, last_id = self._unmerged, self._last_log_id
            # B-tree order: each page is written once. Built by C-level passes (sort by
            # key, filter, flatten): no Python statement per key.
            pairs = sorted(unmerged.items(), key=operator.itemgetter(0))
            deletes = [key for key, blob in pairs if blob is None]
            upserts: list[str | bytes | None] = list(
                itertools.chain.from_iterable(pair for pair in pairs if pair[1] is not None)
            )  # key, record, key, record, ...
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for start, size in _pieces(len(upserts) // 2):
                        rows = upserts[2 * start : 2 * (start + size)]
                        self._db.execute(_upsert_sql(size), rows)
                    for start, size in _pieces(len(deletes)):
                        self._db.execute(_delete_sql(size), deletes[start : start + size])
                    self._db.execute("DELETE FROM log WHERE id <= ?", (last_id,))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as error:
                # The log still holds everything: a later compaction (or the next start)
                # retries. Only a failing log append fails the node's writes.
                self.compaction_error = repr(error)
                return
            self._unmerged, self._log_rows = {}, 0
            self._rows_stale = True
            self.stats.compactions += 1
            self.stats.records_compacted += len(unmerged)

    def _measure(self, reclaim: bool = True) -> None:
        """Count free pages and (``reclaim``: the writer is idle) give the excess back;
        recount rows when due.

        A busy writer does not give pages back: a compaction frees the pages of the log
        rows it folded and the next group commits take them again, so a vacuum step and
        a checkpoint between them only made the file shrink and grow again (~0.5 us of
        writer CPU per record of an ingest). It notes the excess for the idle writer."""
        db = self._db
        if db is None or self._closed:
            return
        with self._db_lock:
            free, pages = _pragma(db, "freelist_count"), _pragma(db, "page_count")
            excess = self._reclaims and free > _reclaim_threshold(pages)
            self._reclaim_pending = excess
            if excess and reclaim:
                # execute() steps this pragma once, which frees one page (fetchall does
                # not step it again); executescript runs it to the end.
                db.executescript(f"PRAGMA incremental_vacuum({RECLAIM_STEP_PAGES});")
                # The file is truncated when the checkpoint copies the shorter database.
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                left = _pragma(db, "freelist_count")
                self.stats.pages_reclaimed += free - left
                self._reclaim_pending = left > _reclaim_threshold(_pragma(db, "page_count"))
                free = left
            self._free_pages = free
            self._recount(db)

    def _recount(self, db: sqlite3.Connection) -> None:
        started = time.monotonic()
        if not self._rows_stale or started < self._recount_due:
            return
        self._rows = int(db.execute("SELECT count(*) FROM records").fetchone()[0])
        self._rows_stale = False
        cost_s = time.monotonic() - started
        self._recount_due = started + max(RECOUNT_MIN_INTERVAL_S, cost_s / RECOUNT_COST_SHARE)

    def _set_synchronous(self, full: bool) -> None:
        if full != self._synchronous_full:
            assert self._db is not None
            self._db.execute(f"PRAGMA synchronous={'FULL' if full else 'NORMAL'}")
            self._synchronous_full = full

    def _count(self, jobs: list[_Job], written: int, purged: int) -> None:
        stats = self.stats
        stats.commits += 1
        stats.jobs += len(jobs)
        stats.records_written += written
        stats.records_purged += purged
        stats.largest_commit_jobs = max(stats.largest_commit_jobs, len(jobs))


def _say(method: Callable[..., object], event: str, **fields: object) -> None:
    """Log from the writer thread: a log that cannot be written (a closed stdout pipe)
    must not end the thread, which would leave every later write waiting forever."""
    with contextlib.suppress(Exception):
        method(event, **fields)


def _settled(
    loop: asyncio.AbstractEventLoop, error: StorageError | None = None
) -> asyncio.Future[None]:
    """A future that is already done (an error is raised when it is awaited)."""
    future: asyncio.Future[None] = loop.create_future()
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
    return future


def _resolve(jobs: list[_Job]) -> None:
    for job in jobs:
        waiter = job.done
        if waiter is None or waiter.done():  # batch mode, or the caller was cancelled
            continue
        if job.error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(job.error)


def _call_soon(
    loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: object
) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop has nobody left to wake
        loop.call_soon_threadsafe(callback, *args)


def _prefix_end(prefix: str) -> str:
    """The smallest string above every string that starts with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _selected(key: str, within: str, without: str) -> bool:
    return key.startswith(within) and not (without and key.startswith(without))


def _key_ranges(within: str, without: str) -> list[tuple[str, tuple[str, ...]]]:
    """``WHERE`` clauses (and their values) that select the keys ``stream`` reads, each a
    range of the primary key, so every one is a scan of the B-tree in key order."""
    if within:
        return [(" WHERE key >= ? AND key < ?", (within, _prefix_end(within)))]
    if without:
        return [(" WHERE key < ?", (without,)), (" WHERE key >= ?", (_prefix_end(without),))]
    return [("", ())]


def _reclaim_threshold(pages: int) -> float:
    return max(RECLAIM_MIN_PAGES, pages * RECLAIM_FREE_SHARE)


def _pragma(connection: sqlite3.Connection, name: str) -> int:
    return int(connection.execute(f"PRAGMA {name}").fetchone()[0])


def _file_bytes(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _lock_data_dir(data_dir: Path) -> int:
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StorageError(
            f"data dir {data_dir} is in use by another process (one node per data dir)"
        ) from None
    return fd


def _connect(path: Path, durability: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        # Only a new, empty database takes this (before its first table); see "Disk space".
        connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"WAL mode unavailable (got {mode})")
        synchronous = "FULL" if durability == "sync" else "NORMAL"
        connection.execute(f"PRAGMA synchronous={synchronous}")
        connection.execute("PRAGMA busy_timeout=5000")
        # Deleted content is zeroed where that costs no I/O (b-tree pages), not on freed
        # pages: this build's default (secure_delete=1) rewrote every overflow page of
        # every compacted log row, ~0.5 us of writer CPU per record (see "Disk space").
        connection.execute("PRAGMA secure_delete=FAST")
        connection.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        for statement in _SCHEMA:
            connection.execute(statement)
    except BaseException:
        connection.close()
        raise
    return connection
