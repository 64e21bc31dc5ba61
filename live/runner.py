"""The node runtime: drives one ``core.Node`` with real time, disk and network.

The runner is the only caller of the node. The HTTP edge hands it client requests
(``write``, ``read``, ``list_keys``) and gets back values to answer with; where the core
says another node must answer, the runner forwards the request (it owns the forwarder).

Theory of operation. Everything the node does goes through one of three paths, and each
keeps the core's contract (persist writes/purges, THEN send messages, THEN ack clients):

* write path: client writes are queued (``write``) and applied by one writer task in
  batches: every write accepted in the same event-loop turn (and all that arrive while
  the previous batch commits) is applied to the node, persisted in ONE group commit, then
  ONE ``node.flush`` turns the whole batch into one push per peer, then every client in
  the batch is acknowledged. N concurrent PUTs cost one commit and one push per peer.
  A client batch (``write_batch``: ``POST /kv``) is queued as one span that a group
  commit never cuts in two, so it too is one commit and one push per peer;
* receive path: the envelope of a ``POST /gossip`` goes through ``node.receive``; applied
  versions are persisted before any reply or onward message leaves. When nothing leaves
  (direct mail: the usual case), the peer gets its answer at once and the commit
  follows in the background, in order with every later persist;
* tick path: a loop sleeps until ``node.next_deadline()`` (bounded) and ticks the node.

A client batch is applied to the node before it is durable, so while it commits, its
versions are visible in memory. Nothing may *send* them before the commit: a tick that
falls due during a commit is deferred to the writer (which runs it right after), and a
receive whose output was computed during a commit waits for that commit before sending.
A commit that fails is undone (``node.abort``): its clients get 503 and nothing of the
batch stays to be read or spread; a receive that waited for it sends nothing (gossip is
retried anyway, and what it computed may hold the undone versions).

Start-up load: the reserved keyspace (the keyring: the gate needs it) and the log are
loaded before the node serves anything; the rest streams from SQLite in slices on the
event loop (``live.startup``), with the node already listening. While it loads, only
single-key reads are served (a key not loaded yet is read from the disk:
``Storage.read``; nothing else changes the store meanwhile, so memory and disk agree on
every key); writes, listings, peers' gossip and ticks wait for ``running``, which
``/health`` and ``/ready`` report only then.

Incarnation: persisted in storage meta and bumped at every start (``live.startup``), so
a restarted node's heartbeats override whatever the cluster remembers of its previous life.

Time: the core gets wall time (``now``: HLCs of writes) and monotonic time (``mono``:
membership timeouts and timers), so a clock step never makes a peer look silent. After a
loop stall (the process was paused, or starved), the tick loop first lets the input that
waited be read, and the core credits members the time it was away (``core.membership``).

Leaving (``leave``: SIGTERM, ``POST /admin/leave``): announce ``left`` to every peer,
then (sharded) wait, bounded by ``leave_timeout_s``, until the new owners hold every key
handed off. ``readiness`` is what ``GET /ready`` answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx
import structlog

from rumordb.core import (
    Local,
    Node,
    NodeView,
    Output,
    Record,
    WriteCommand,
    WriteResult,
    WriteStatus,
    merge_pages,
    read_stored,
)
from rumordb.core.errors import DecodeError
from rumordb.core.hlc import LOGICAL_BITS
from rumordb.core.tombstones import PURGED_MEMORY
from rumordb.live.clock_report import ClockLog, clock_problem
from rumordb.live.cluster import cluster_view
from rumordb.live.faults import Faults
from rumordb.live.forward import Forwarded, Forwarder, Relay, Unforwarded
from rumordb.live.gossip_client import GossipClient
from rumordb.live.leaving import LEAVE_FLUSH_S, leave_report, wait_for_handoff
from rumordb.live.metrics import Metrics
from rumordb.live.peers import Peers
from rumordb.live.readiness import Progress, readiness
from rumordb.live.refusals import RefusalLog
from rumordb.live.startup import StartupLoader, open_node
from rumordb.live.storage import Storage
from rumordb.live.tick_loop import TickLoop
from rumordb.live.watch import WatchHub
from rumordb.live.wire import signer_for

if TYPE_CHECKING:
    from rumordb.live.discovery import Announcement
    from rumordb.live.settings import Settings

log = structlog.get_logger("rumor.node")

MAX_WRITE_BATCH = 4096  # client writes applied per group commit
MAX_PENDING_WRITES = 50_000  # client writes waiting for a batch; beyond: 503, try later
RECEIVE_SLICE_S = 0.01  # applying a post's messages: the loop serves others this often


@dataclass(frozen=True, slots=True)
class NotStored:
    """A client write that was not applied (``overloaded``) or not made durable."""

    error: str  # "overloaded" (retry later) or "unavailable"
    detail: str


WriteAnswer = WriteResult | Forwarded | Unforwarded | NotStored
ReadAnswer = Local | Forwarded | Unforwarded


class _Waiting(NamedTuple):
    """A client write, or a client batch, waiting for its group commit.

    ``done`` resolves to one result per command (or one ``NotStored`` for them all). A
    batch is one entry, so a group commit never cuts it in two, and its thousand items
    cost one future. A named tuple: the cheapest object to build per request, built by
    ``tuple.__new__`` (its generated ``__new__`` is a Python-level call per write).
    """

    commands: list[WriteCommand]
    done: asyncio.Future[list[WriteResult] | NotStored]


class ForwardedItem(NamedTuple):
    """A batch item this node does not own: item ``position`` of the sub-batch an owner answered."""

    answer: Forwarded | Unforwarded
    position: int


BatchAnswer = WriteResult | NotStored | ForwardedItem


def _wake(nap: asyncio.Future[None]) -> None:
    if not nap.done():
        nap.set_result(None)


def _no_version(key: str) -> object | None:
    """``Runner.version_token`` before a node is built: nothing is stored."""
    return None


class Runner:
    """Owns the node, its storage, the gossip client and discovery."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        discovery: bool = True,
    ) -> None:
        self.settings = settings
        self._clock_offset_s = settings.clock_offset_ms / 1000  # now() runs on every request
        self.url = settings.advertised_url()
        self.metrics = metrics or Metrics(
            lambda: self._node,
            lambda: self.discovery_rejected,
            lambda: self._storage.stats if self._storage is not None else None,
            lambda: self._storage.usage() if self._storage is not None else None,
        )
        self.faults = Faults()
        self.signer = signer_for(settings)
        self._transport = transport
        self._discovery_enabled = discovery
        self._node: Node | None = None
        # The current node's ``NodeView.version_token`` (``live.read_cache``), bound when
        # the node is built: the warm-read check is then one call, not three look-ups.
        self.version_token: Callable[[str], object | None] = _no_version
        self._storage: Storage | None = None
        self._gossip: GossipClient | None = None
        self._peers: Peers | None = None  # discovery and seeds, once running
        self._tasks: list[asyncio.Task[None]] = []
        self._behind: set[asyncio.Future[None]] = set()  # replica persists nobody awaits
        self._forwarder: Forwarder | None = None
        self._pending: list[_Waiting] = []
        self._pending_writes = 0  # commands in ``_pending``
        self._write_wakeup = asyncio.Event()
        # The client batch being persisted; resolves to whether it was made durable.
        self._committing: asyncio.Future[bool] | None = None
        self._clock_log = ClockLog()
        self._refusals = RefusalLog()
        self._tick_due = False
        self._caught_up = False  # an anti-entropy exchange completed (a tick's counter deltas)
        self._watch: WatchHub | None = None
        self._running = False
        self.node_id = ""
        self.incarnation = 0
        self.started_once = False
        self._started_mono = 0.0
        self._leaving: asyncio.Task[dict[str, Any]] | None = None
        self._loader: asyncio.Task[None] | None = None  # the start-up load, while it runs
        self._ticks: TickLoop | None = None  # once running
        self._napping: asyncio.Future[None] | None = None  # the tick loop's sleep

    # --- properties ----------------------------------------------------------------
    @property
    def node(self) -> Node:
        if self._node is None:
            raise RuntimeError("the node is not started")
        return self._node

    @property
    def view(self) -> NodeView:
        """The node's state, read only (what the HTTP edge may look at)."""
        return self.node.view

    @property
    def forwarder(self) -> Forwarder:
        if self._forwarder is None:
            raise RuntimeError("the node is not started")
        return self._forwarder

    @property
    def gossip(self) -> GossipClient:
        if self._gossip is None:
            raise RuntimeError("the node is not started")
        return self._gossip

    @property
    def watch(self) -> WatchHub:
        """Where every change this node applies is published to watchers (``live.watch``)."""
        if self._watch is None:
            raise RuntimeError("the node is not started")
        return self._watch

    @property
    def running(self) -> bool:
        return self._running

    @property
    def loading(self) -> bool:
        """Records are still streaming from disk: only single-key reads are served."""
        return self._loader is not None

    @property
    def stalls(self) -> int:
        """Tick-loop stalls noticed (a pause, CPU starvation: ``live.tick_loop``)."""
        return self._ticks.stalls if self._ticks is not None else 0

    def now(self) -> float:
        return time.time() + self._clock_offset_s

    @staticmethod
    def mono() -> float:
        """Monotonic time for membership timeouts and timers (never steps)."""
        return time.monotonic()

    # --- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        self._open_node()
        self._watch = WatchHub(
            self.incarnation,
            ring_events=s.watch_ring_events,
            ring_bytes=s.watch_ring_bytes,
            max_lag_events=s.watch_max_lag_events,
            max_watchers=s.watch_max_watchers,
            clock=self.now,
        )
        address = self.node.view.address
        self._gossip = GossipClient(
            self.node_id,
            self.signer,
            address,
            self.on_reply,
            self.metrics,
            self.faults,
            transport=self._transport,
        )
        self._forwarder = Forwarder(self.node_id, address, self.metrics, transport=self._transport)
        loader = StartupLoader(self.node.startup, self.storage)
        if loader.load_slice():  # more than one slice: load the rest while serving
            self._loader = asyncio.get_running_loop().create_task(self._load_rest(loader))
        else:
            await self._begin()

    async def _load_rest(self, loader: StartupLoader) -> None:
        try:
            await loader.load_rest()
        except Exception as exc:  # the node cannot serve what it cannot read: stop it
            log.exception("load_failed", error=repr(exc))
            self._loader = None
            os.kill(os.getpid(), signal.SIGTERM)  # the server stops; the process exits 1
            return
        self._loader = None  # with ``_running`` set below in the same turn: no gap
        await self._begin()

    async def _begin(self) -> None:
        """Every record is loaded: run the tick loop and the writer, meet the peers."""
        s = self.settings
        self._started_mono = self.mono()
        self._running = True
        loop = asyncio.get_running_loop()
        self._ticks = TickLoop(
            s.probe_interval_ms, next_deadline=self.node.next_deadline, tick=self._safe_tick,
            defer=self._defer_tick, running=lambda: self._running, mono=self.mono,
            sleep=self._nap,  # woken early by a step left in slices (``_wake_ticks``)
        )  # fmt: skip
        self._tasks = [loop.create_task(self._ticks.run()), loop.create_task(self._writer())]
        self._peers = Peers(
            s, self.node, self.url, client=self.gossip.client, running=lambda: self._running,
            now=self.now, metrics=self.metrics,
        )  # fmt: skip
        await self._peers.start(discovery=self._discovery_enabled)
        self.started_once = True
        log.debug(
            "node_started",
            node_id=self.node_id,
            url=self.url,
            incarnation=self.incarnation,
            keys=len(self.node.store),
            durability=s.durability,
            sharding=s.sharding,
        )

    def _open_node(self) -> None:
        """Open the storage and build the node from it (``live.startup``): the rest of the
        stored records follow in slices."""
        self._started_mono = self.mono()
        self._caught_up = False  # this incarnation has synced nothing yet
        self._storage, self._node = open_node(
            self.settings, self.url, self.now(), self._started_mono
        )
        self._node.view.follow_version_token(self._bind_version_token)
        self.node_id, self.incarnation = self._node.view.node_id, self._node.view.incarnation

    def _bind_version_token(self, version_token: Callable[[str], object | None]) -> None:
        self.version_token = version_token

    async def stop(self) -> None:
        loader, self._loader = self._loader, None
        if loader is not None:  # stopped while loading: nothing was applied or sent yet
            loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loader
            if not self._running:
                await self._close()
                return
        if not self._running:
            return
        if self.settings.leave_on_stop:
            try:
                await self.leave()
            except Exception as exc:  # leaving is a courtesy: stopping must go on
                log.exception("leave_failed", error=repr(exc))
        self._running = False
        if self._peers is not None:
            await self._peers.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._fail_pending("the node is shutting down")
        await self._close()

    async def _close(self) -> None:
        """Close the clients and the storage (after every task that uses them ended)."""
        if self._forwarder is not None:
            await self._forwarder.close()
        if self._gossip is not None:
            await self._gossip.close()
        if self._behind:  # queue their jobs, so that close commits them
            await asyncio.gather(*self._behind, return_exceptions=True)
        if self._storage is not None:
            try:
                self._remember_purged()  # purged by a message handled since the last tick
            except Exception as exc:  # a disk error must not keep the node from stopping
                log.exception("remember_purged_failed", error=repr(exc))
            await self._storage.close()
        log.info("node_stopped", node_id=self.node_id)

    @property
    def discovery_rejected(self) -> int:
        return self._peers.rejected if self._peers is not None else 0

    # --- peers ---------------------------------------------------------------------
    def on_peer(self, announcement: Announcement) -> None:
        """Discovery (or a seed) heard a peer: join it while running (``live.peers``)."""
        if self._peers is not None:
            self._peers.on_peer(announcement)

    # --- client requests -----------------------------------------------------------
    async def write(self, command: WriteCommand, relay: Relay) -> WriteAnswer:
        """Apply a client write in the next group commit; an owner's answer if not ours."""
        if not self._running:
            return NotStored("unavailable", "the node is starting or stopping")
        if self._pending_writes >= MAX_PENDING_WRITES:
            return NotStored("overloaded", f"{self._pending_writes} writes are already waiting")
        # ``_queue_writes([command])``, inlined: every client write passes here.
        done: asyncio.Future[list[WriteResult] | NotStored]
        done = asyncio.get_running_loop().create_future()
        self._pending.append(tuple.__new__(_Waiting, ([command], done)))
        self._pending_writes += 1
        self._write_wakeup.set()
        results = await done
        if isinstance(results, NotStored):
            return results
        result = results[0]
        if result.status is WriteStatus.NOT_OWNER:
            return await self.forwarder.forward(result.owners, relay)
        return result

    async def write_batch(
        self, commands: list[WriteCommand], relay_of: Callable[[list[int]], Relay]
    ) -> list[BatchAnswer]:
        """Apply ``commands`` in ONE group commit (one push per peer); answers in order.

        Sharded, the items this node does not own go to their owners, one sub-batch per
        owner list (``relay_of(indices)`` builds it), all at once; each such item's answer
        is its place in that owner's answer.
        """
        if not self._running:
            return [NotStored("unavailable", "the node is starting or stopping")] * len(commands)
        if self._pending_writes + len(commands) > MAX_PENDING_WRITES:
            detail = f"{self._pending_writes} writes are already waiting"
            return [NotStored("overloaded", detail)] * len(commands)
        if not commands:
            return []
        results = await self._queue_writes(commands)
        if isinstance(results, NotStored):
            return [results] * len(commands)
        answers: list[BatchAnswer] = list(results)
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, answer in enumerate(answers):
            if isinstance(answer, WriteResult) and answer.status is WriteStatus.NOT_OWNER:
                groups.setdefault(answer.owners, []).append(i)
        if groups:
            forwarded = await asyncio.gather(
                *(self.forwarder.forward(owners, relay_of(ix)) for owners, ix in groups.items())
            )
            for indices, owner_answer in zip(groups.values(), forwarded, strict=True):
                for position, i in enumerate(indices):
                    answers[i] = ForwardedItem(owner_answer, position)
        return answers

    def _queue_writes(
        self, commands: list[WriteCommand]
    ) -> asyncio.Future[list[WriteResult] | NotStored]:
        done: asyncio.Future[list[WriteResult] | NotStored]
        done = asyncio.get_running_loop().create_future()
        self._pending.append(tuple.__new__(_Waiting, (commands, done)))
        self._pending_writes += len(commands)
        self._write_wakeup.set()
        return done

    async def read(self, key: str, relay: Relay, *, meta: bool = False) -> ReadAnswer:
        """Where the core says to answer a read: here, or an owner's answer."""
        if self._loader is not None and self.view.version(key) is None:
            stored = await self.storage.read(key)  # not loaded yet (or not stored at all)
            if self._loader is not None:  # still loading: the store has not changed since
                return read_stored(stored, self.now(), meta=meta)
        plan = self.node.read(key, forwarded=relay.forwarded, meta=meta, now=self.now())
        if isinstance(plan, Local):
            return plan
        answer = await self.forwarder.forward(plan.owners, relay)
        if plan.fallback and not (isinstance(answer, Forwarded) and answer.status == 200):
            return Local(None)  # no co-owner has it either: not found, answered here
        return answer

    async def list_keys(self, prefix: str, limit: int, after: str, relay: Relay) -> list[str]:
        """One page of live keys; sharded, merged with the pages of the peers the core names."""
        plan = self.node.plan_list(prefix, limit, after, forwarded=relay.forwarded, now=self.now())
        if not plan.gather:
            return plan.keys
        pages = await self.forwarder.gather_keys(plan.gather, relay)
        return merge_pages(plan.keys, pages, limit)

    # --- write path ----------------------------------------------------------------
    async def _writer(self) -> None:
        while self._running:
            await self._write_wakeup.wait()
            self._write_wakeup.clear()
            while self._pending:
                batch = self._take()
                try:
                    await self._commit_batch(batch)
                except Exception as exc:  # a bug: its clients got an error; keep serving
                    log.exception("write_batch_failed", error=repr(exc))
                if self._tick_due:  # between batches, so sustained load never starves it
                    self._tick_due = False
                    await self._safe_tick()
                if self._pending:
                    # A persist in batch mode is settled at once, so awaiting it does not
                    # yield: without a turn here a backlog of group commits ran in one
                    # loop turn (180 ms at 1M keys), with every read waiting behind it.
                    await asyncio.sleep(0)
            if self._tick_due:
                self._tick_due = False
                await self._safe_tick()

    def _take(self) -> list[_Waiting]:
        """The next group commit: up to ``MAX_WRITE_BATCH`` writes (at least one entry),
        never half a client batch."""
        pending = self._pending
        if self._pending_writes <= MAX_WRITE_BATCH:  # all of it (the usual case): no walk
            self._pending, self._pending_writes = [], 0
            return pending
        end = taken = 0
        while end < len(pending) and (
            not end or taken + len(pending[end].commands) <= MAX_WRITE_BATCH
        ):
            taken += len(pending[end].commands)
            end += 1
        batch = pending[:end]
        del pending[:end]
        self._pending_writes -= taken
        return batch

    async def _commit_batch(self, batch: list[_Waiting]) -> None:
        node = self.node
        now = self.now()
        results: list[WriteResult] = []
        writes: list[tuple[str, Record]] = []
        durable = False  # until the batch is persisted (an exception in between: undone)
        failed = NotStored("unavailable", "the write was not stored (an error, logged)")
        applied_s = now
        self._committing = asyncio.get_running_loop().create_future()
        try:
            commands = list(chain.from_iterable([waiting.commands for waiting in batch]))
            written = node.write_batch(commands, now)
            applied_s = self.now()  # readers here see the batch from now on (watch)
            results, writes = written.results, written.output.writes
            if writes:
                try:
                    await self.storage.persist(writes, [])
                except Exception as exc:  # disk full, I/O error: nothing is acknowledged
                    log.error("persist_failed", error=repr(exc), writes=len(writes))
                    failed = NotStored("unavailable", f"the write was not stored: {exc}")
                    return  # undone, and answered, by ``finally``
            durable = True
        finally:
            if durable:  # never send a version that is not on disk
                self._send(node.flush(self.now()).messages)
                self.watch.publish(writes, replicated=False, applied_s=applied_s)
            else:  # nothing stays applied of a refused request
                node.abort()
                results = []
            committing, self._committing = self._committing, None
            committing.set_result(durable)
            self._answer(batch, results, failed)

    @staticmethod
    def _answer(batch: list[_Waiting], results: list[WriteResult], failed: NotStored) -> None:
        """Each entry its slice of ``results`` (``failed`` for all if they are missing)."""
        start, count = 0, len(results)
        for commands, done in batch:
            end = start + len(commands)
            if not done.done():
                done.set_result(results[start:end] if end <= count else failed)
            start = end

    def _fail_pending(self, detail: str) -> None:
        pending, self._pending = self._pending, []
        self._pending_writes = 0
        for waiting in pending:
            if not waiting.done.done():
                waiting.done.set_result(
                    NotStored("unavailable", f"the write was not stored: {detail}")
                )

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            raise RuntimeError("the node is not started")
        return self._storage

    # --- receive path --------------------------------------------------------------
    async def receive(self, sender: str, payloads: Iterable[bytes]) -> list[bytes]:
        """Apply messages from ``sender``; returns the replies addressed to it.

        A post may carry up to ``MAX_POST_BYTES`` of messages (tens of thousands of
        records while a peer ingests), so they are applied in slices of about
        ``RECEIVE_SLICE_S`` each, every slice persisted (queued in order) and sent on as
        one step was, with a loop turn between slices: a large post no longer holds the
        loop for hundreds of ms (measured at 1M keys: 450-620 ms turns on the replicas
        of a loading node), and requests that wait are served in between.
        """
        messages = payloads if isinstance(payloads, list) else list(payloads)
        replies: list[bytes] = []
        start = 0
        while True:
            start, out, now, applied_s = self._apply_slice(sender, messages, start)
            replies.extend(await self._settle(sender, out, now, applied_s))
            if start >= len(messages):
                return replies
            await asyncio.sleep(0)  # a loop turn: what waits runs before the next slice

    def _apply_slice(
        self, sender: str, messages: list[bytes], start: int
    ) -> tuple[int, Output, float, float]:
        """Apply ``messages[start:]`` for about ``RECEIVE_SLICE_S`` (one message at least):
        (where the next slice starts, the output, when they arrived, when they applied)."""
        node = self.node
        now, mono = self.now(), self.mono()
        out = Output()
        deadline = time.perf_counter() + RECEIVE_SLICE_S
        end = len(messages)
        while start < end:
            try:  # each message is checked whole by the core before any of it is applied
                out.extend(node.receive(messages[start], now, mono))
            except DecodeError as exc:
                self._refused(sender, exc)
            start += 1
            if time.perf_counter() >= deadline:
                break
        return start, out, now, self.now()

    async def _settle(self, sender: str, out: Output, now: float, applied_s: float) -> list[bytes]:
        """Persist a slice's writes, publish them, send its messages; its replies."""
        committing = self._committing  # records of that batch may be in ``out``
        self._wake_ticks()  # a step left in slices: the tick loop carries it on
        self._log_transitions(out)
        if out.writes:
            self._observe_lag(out.writes, now)
            self.watch.publish(out.writes, replicated=True, applied_s=applied_s)
        if out.writes or out.purges:
            if out.purges:  # remembered before the purge can reach the disk (as ``_tick``)
                self._remember_purged()
            # Versions from peers: their origin holds them durably, so no fsync of our own.
            persisting = self.storage.persist(out.writes, out.purges, durable=False)
            if out.messages:
                await persisting  # persist, then send
            else:
                # Nothing leaves this node because of them: answer the peer now rather
                # than after our commit (or a log compaction), so its next post is not
                # held up. Jobs commit in order: anything this node sends later is
                # persisted after them.
                self._persist_behind(persisting)
        if committing is not None and out.messages and not await asyncio.shield(committing):
            return []  # that batch was undone: what we computed may carry its versions
        replies: list[bytes] = []
        onward: list[tuple[str, bytes]] = []
        for target, data in out.messages:
            if target == sender:
                replies.append(data)
            else:
                onward.append((target, data))
        self._send(onward)
        return replies

    def _refused(self, sender: str, exc: DecodeError) -> None:
        """A peer message dropped whole (counted by the core): logged, rate-limited."""
        self._refusals.refused(sender, exc)

    def _persist_behind(self, persisting: Awaitable[None]) -> None:
        task = asyncio.ensure_future(persisting)
        self._behind.add(task)
        task.add_done_callback(self._persisted_behind)

    def _persisted_behind(self, task: asyncio.Future[None]) -> None:
        self._behind.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # That batch was not stored (the writer goes on): nothing is lost that the
            # versions' origin does not hold (after a restart, anti-entropy repairs it).
            log.error("persist_failed", error=repr(task.exception()), path="receive")

    async def on_reply(self, sender: str, payloads: list[bytes]) -> None:
        replies = await self.receive(sender, payloads)
        self._send((sender, data) for data in replies)

    def _observe_lag(self, writes: list[tuple[str, Record]], now: float) -> None:
        # Seconds from each version's write to now: (HLC physical part) in one pass.
        now_ms, bits = now * 1000, LOGICAL_BITS
        self.metrics.replication_lag.observe_many(
            [max(0.0, now_ms - (record.hlc >> bits)) / 1000 for _, record in writes]
        )

    # --- tick path -----------------------------------------------------------------
    def _defer_tick(self) -> bool:
        """A tick due while client writes commit: the writer runs it right after the commit."""
        if self._committing is None and not self._pending:
            return False
        self._tick_due = True
        self._write_wakeup.set()
        return True

    async def _nap(self, seconds: float) -> None:
        """Sleep until the next tick, or until a receive brings work due sooner (an
        anti-entropy step handled in slices on ticks: ``_wake_ticks``)."""
        loop = asyncio.get_running_loop()
        self._napping = nap = loop.create_future()
        timer = loop.call_later(seconds, _wake, nap)
        try:
            await nap
        finally:
            timer.cancel()
            self._napping = None

    def _wake_ticks(self) -> None:
        nap = self._napping
        if nap is not None and self.node.next_deadline() <= self.mono():
            _wake(nap)

    async def _safe_tick(self) -> None:
        try:
            await self._tick()
        except Exception as exc:  # a disk error or a bug must not stop heartbeats
            log.exception("tick_failed", error=repr(exc))

    async def _tick(self) -> None:
        out = self.node.tick(self.now(), mono=self.mono())
        applied_s = self.now()
        self.metrics.count_node(out.counter_deltas)
        if out.counter_deltas.get("anti_entropy_completed"):
            self._caught_up = True
        self._log_transitions(out)
        self._clock_log.observe(self.node.view.clock())
        self._keep_incarnation()
        # Remember purged versions before the purge itself reaches the disk, and before
        # any await: a stop (or crash) in between must not leave a purged tombstone that
        # a stale re-send could bring back after a restart.
        self._remember_purged()
        if out.writes or out.purges:
            await self.storage.persist(out.writes, out.purges, durable=False)
            # values whose TTL ran out
            self.watch.publish(out.writes, replicated=False, applied_s=applied_s)
        self._send(out.messages)

    def _remember_purged(self) -> None:
        purged = self.node.take_purged_versions()
        if purged:  # the memory that refuses stale re-sends must outlive this process
            self.storage.remember_purged(purged, PURGED_MEMORY)

    def problems(self) -> list[str]:
        """Why this node is degraded (``/health``): its storage, its clock."""
        clock = clock_problem(self.node.view.clock())
        return self.storage.problems() + ([clock] if clock is not None else [])

    def _keep_incarnation(self) -> None:
        """Persist an incarnation raised by a refutation, so a restart starts above it."""
        incarnation = self.node.view.incarnation
        if incarnation > self.incarnation:
            self.incarnation = incarnation
            self.storage.set_meta("incarnation", str(self.incarnation))

    # --- leaving, forgetting, readiness ----------------------------------------------
    async def leave(self) -> dict[str, Any]:
        """Announce ``left``; sharded, wait (bounded) until the new owners hold our keys."""
        if self._leaving is None:
            self._leaving = asyncio.get_running_loop().create_task(self._leave())
        return await asyncio.shield(self._leaving)

    async def _leave(self) -> dict[str, Any]:
        node, started = self.node, self.mono()
        out = node.leave(self.now(), mono=started)
        held = node.view.handoff_remaining()
        self._log_transitions(out)
        self._keep_incarnation()
        self._remember_purged()  # before the purge reaches the disk (as ``_tick``)
        if out.writes or out.purges:
            await self.storage.persist(out.writes, out.purges, durable=False)
        self._send(out.messages)
        deadline = started + self.settings.leave_timeout_s
        remaining = await wait_for_handoff(node.view, deadline, lambda: self._running, mono=self.mono)  # fmt: skip
        await self.gossip.flush(LEAVE_FLUSH_S)  # the announcement reaches the peers
        report = leave_report(self.node_id, held, remaining, self.mono() - started)
        log.info("node_left", **report)
        return report

    @property
    def leaving(self) -> bool:
        return self._leaving is not None

    def forget(self, member_id: str) -> bool:
        """Forget a dead or left member; False if unknown (``ForgetRefused`` if alive)."""
        forgotten = self.node.forget(member_id, self.now(), mono=self.mono())
        if forgotten:
            log.info("member_forgotten", member=member_id)
        return forgotten

    def readiness(self) -> tuple[bool, str]:
        """Loaded, joined (a peer, or alone for ``ready_alone_after_s``) and caught up."""
        node = self._node
        progress = Progress(
            loaded_keys=len(node.store) if self._loader is not None and node is not None else None,
            running=self._running,
            leaving=self._leaving is not None,
            peers=len(node.view.peers()) if node is not None else 0,
            caught_up=self._caught_up,
            alone_s=self.mono() - self._started_mono,
        )
        return readiness(progress, self.settings.ready_alone_after_s)

    def _log_transitions(self, out: Output) -> None:
        for change in out.transitions:
            log.info(
                "member_state", member=change.member, old=change.old.value, new=change.new.value
            )

    def _send(self, messages: Iterable[tuple[str, bytes]]) -> None:
        gossip = self.gossip
        for target, data in messages:
            gossip.send(target, data)

    # --- views ---------------------------------------------------------------------
    def cluster_view(self) -> dict[str, Any]:
        """What ``GET /cluster`` answers (``live.cluster``)."""
        s, usage = self.settings, self._storage.usage() if self._storage is not None else None
        return cluster_view(
            self.node.view, self.url, sharding=s.sharding, replicas=s.replicas, usage=usage,
            now_mono=self.mono(),  # members' last progress is monotonic time
        )  # fmt: skip
