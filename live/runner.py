"""The node runtime: drives one ``core.Node`` with real time, disk and network.

Theory of operation. Everything the node does goes through one of three paths, and each
keeps the core's contract (persist writes/purges, THEN send messages, THEN ack clients):

* write path: client writes are queued (``submit``) and applied by one writer task in
  batches: every write accepted in the same event-loop turn (and all that arrive while
  the previous batch commits) is applied to the node, persisted in ONE group commit, then
  ONE ``node.flush`` turns the whole batch into one push per peer, then every client in
  the batch is acknowledged. N concurrent PUTs cost one commit and one push per peer;
* receive path: the envelope of a ``POST /gossip`` goes through ``node.receive``; applied
  versions are persisted before any reply or onward message leaves. When nothing leaves
  (direct mail: the usual case), the peer gets its answer at once and the commit
  follows in the background, in order with every later persist;
* tick path: a loop sleeps until ``node.next_deadline()`` (bounded) and ticks the node.

A client batch is applied to the node before it is durable, so while it commits, its
versions are visible in memory. Nothing may *send* them before the commit: a tick that
falls due during a commit is deferred to the writer (which runs it right after), and a
receive whose output was computed during a commit waits for that commit before sending.

Incarnation: persisted in storage meta and bumped at every start, so a restarted node's
heartbeats override whatever the cluster remembers of its previous life.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import structlog

from rumordb.core import Context, Node, Output, Record, WriteResult
from rumordb.core.errors import DecodeError, RumorError
from rumordb.core.hlc import physical_ms
from rumordb.live.faults import Faults
from rumordb.live.gossip_client import GossipClient
from rumordb.live.metrics import Metrics
from rumordb.live.settings import load_or_create_node_id
from rumordb.live.storage import Storage
from rumordb.live.wire import Signer

if TYPE_CHECKING:
    from rumordb.live.discovery import Announcement, Discovery
    from rumordb.live.settings import Settings

log = structlog.get_logger("rumor.node")

MAX_TICK_SLEEP_S = 0.2  # bounded sleep: config changes and shutdown are noticed quickly
MIN_TICK_SLEEP_S = 0.001
SEED_RETRY_S = 2.0
MAX_WRITE_BATCH = 4096  # client writes applied per group commit
MAX_PENDING_WRITES = 50_000  # client writes waiting for a batch; beyond: 503, try later


class Overloaded(Exception):
    """Too many client writes are waiting for the disk: the client should retry later."""


@dataclass(slots=True)
class WriteOp:
    """One client write waiting for its batch."""

    key: str
    value: bytes
    content_type: str
    context: Context | None
    create: bool = False
    delete: bool = False
    coordinate: bool = False  # forwarded here: write even if our ring view disagrees
    result: WriteResult | None = None
    error: BaseException | None = None
    done: asyncio.Future[None] | None = field(default=None, repr=False)


def resolve_node_id(settings: Settings) -> str:
    """The configured id, else the stable one kept in the data dir (created the first time)."""
    if settings.node_id:
        return settings.node_id
    return load_or_create_node_id(Path(settings.data_dir))


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
        self.url = settings.advertised_url()
        self.metrics = metrics or Metrics(
            lambda: self._node,
            lambda: self.discovery_rejected,
            lambda: self._storage.stats if self._storage is not None else None,
        )
        self.faults = Faults()
        self.signer = Signer(settings.require_cluster_secret())
        self._transport = transport
        self._discovery_enabled = discovery
        self._node: Node | None = None
        self._storage: Storage | None = None
        self._gossip: GossipClient | None = None
        self._discovery: Discovery | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._behind: set[asyncio.Task[None]] = set()  # replica persists nobody awaits
        self._pending: list[WriteOp] = []
        self._write_wakeup = asyncio.Event()
        self._committing: asyncio.Future[None] | None = None  # the client batch being persisted
        self._tick_due = False
        self._running = False
        self.node_id = ""
        self.incarnation = 0
        self.started_once = False

    # --- properties ----------------------------------------------------------------
    @property
    def node(self) -> Node:
        if self._node is None:
            raise RuntimeError("the node is not started")
        return self._node

    @property
    def gossip(self) -> GossipClient:
        if self._gossip is None:
            raise RuntimeError("the node is not started")
        return self._gossip

    @property
    def running(self) -> bool:
        return self._running

    def now(self) -> float:
        return time.time() + self.settings.clock_offset_ms / 1000

    # --- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        storage = Storage.open(Path(s.data_dir), s.durability)
        self._storage = storage
        self.node_id = resolve_node_id(s)
        storage.set_meta("node_id", self.node_id)
        self.incarnation = int(storage.get_meta("incarnation") or "0") + 1
        storage.set_meta("incarnation", str(self.incarnation))
        records = storage.load()
        self._node = Node(
            self.node_id,
            self.url,
            rng=random.Random(int.from_bytes(os.urandom(8), "big")),
            now=self.now(),
            config=s.node_config(),
            incarnation=self.incarnation,
            records=records,
        )
        self._gossip = GossipClient(
            self.node_id,
            self.signer,
            self.node.address_of,
            self.on_reply,
            self.metrics,
            self.faults,
            transport=self._transport,
        )
        self._running = True
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._tick_loop()), loop.create_task(self._writer())]
        if s.seeds:
            self._tasks.append(loop.create_task(self._seed_loop()))
        if self._discovery_enabled:
            await self._start_discovery()
        self.started_once = True
        log.debug(
            "node_started",
            node_id=self.node_id,
            url=self.url,
            incarnation=self.incarnation,
            keys=len(records),
            durability=s.durability,
            sharding=s.sharding,
        )

    async def _start_discovery(self) -> None:
        from rumordb.live.discovery import Discovery, resolve_broadcast

        s = self.settings
        broadcast = resolve_broadcast(s.host, s.broadcast)
        if broadcast is None:
            return
        self._discovery = Discovery(
            node_id=self.node_id,
            url_fn=lambda: self.url,
            incarnation_fn=lambda: (
                self.node.membership.me.incarnation
                if hasattr(self.node.membership, "me")
                else self.incarnation
            ),
            signer=Signer(s.require_cluster_secret()),
            bind_host=s.host,
            port=s.discovery_port,
            broadcast_addr=broadcast,
            interval_ms=s.discovery_interval_ms,
            on_peer=self.on_peer,
        )
        await self._discovery.start()

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        if self._discovery is not None:
            self._discovery.close()
            await self._discovery.wait_closed()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._fail_pending(RuntimeError("the node is shutting down"))
        if self._gossip is not None:
            await self._gossip.close()
        if self._behind:  # queue their jobs, so that close commits them
            await asyncio.gather(*self._behind, return_exceptions=True)
        if self._storage is not None:
            await self._storage.close()
        log.info("node_stopped", node_id=self.node_id)

    @property
    def discovery_rejected(self) -> int:
        return getattr(self._discovery, "rejected", 0) if self._discovery else 0

    # --- peers ---------------------------------------------------------------------
    def on_peer(self, announcement: Announcement) -> None:
        """Discovery heard a peer: join it (no-op for members we know at that address)."""
        if not self._running or announcement.node_id == self.node_id:
            return
        self.node.join(announcement.node_id, announcement.url, announcement.incarnation, self.now())

    async def _seed_loop(self) -> None:
        """Contact seeds until each is a live member; re-contact one that dies."""
        from rumordb.live.discovery import expand_seeds, seed_peers

        seeds = seed_peers(self.settings.seeds, self.url)
        while self._running:
            for seed in await expand_seeds(seeds):  # a DNS seed: each of its addresses
                await self._contact_seed(seed)
            await asyncio.sleep(SEED_RETRY_S)

    async def _contact_seed(self, url: str) -> None:
        from rumordb.live.discovery import announcement_from_heartbeat

        try:
            response = await self.gossip.client.get(url + "/heartbeat", timeout=1.0)
            announcement = announcement_from_heartbeat(url, response.json())
        except (httpx.HTTPError, ValueError):
            return
        if not self.node.membership.is_alive(announcement.node_id):
            self.on_peer(announcement)

    # --- write path ----------------------------------------------------------------
    def submit(self, op: WriteOp) -> asyncio.Future[None]:
        """Queue a client write; await the returned future, then read ``op.result``."""
        if not self._running:
            raise RuntimeError("the node is not running")
        if len(self._pending) >= MAX_PENDING_WRITES:
            raise Overloaded(f"{len(self._pending)} writes are already waiting")
        op.done = asyncio.get_running_loop().create_future()
        self._pending.append(op)
        self._write_wakeup.set()
        return op.done

    async def _writer(self) -> None:
        while self._running:
            await self._write_wakeup.wait()
            self._write_wakeup.clear()
            while self._pending:
                ops = self._pending[:MAX_WRITE_BATCH]
                del self._pending[:MAX_WRITE_BATCH]
                try:
                    await self._commit_batch(ops)
                except Exception as exc:  # a bug: its clients got an error; keep serving
                    log.exception("write_batch_failed", error=repr(exc))
                if self._tick_due:  # between batches, so sustained load never starves it
                    self._tick_due = False
                    await self._safe_tick()
            if self._tick_due:
                self._tick_due = False
                await self._safe_tick()

    async def _commit_batch(self, ops: list[WriteOp]) -> None:
        node = self.node
        now = self.now()
        writes: list[tuple[str, Record]] = []
        self._committing = asyncio.get_running_loop().create_future()
        try:
            for op in ops:
                try:
                    if op.delete:
                        op.result = node.delete(op.key, now, op.context, op.coordinate)
                    else:
                        op.result = node.put(
                            op.key,
                            op.value,
                            op.content_type,
                            now,
                            op.context,
                            op.create,
                            op.coordinate,
                        )
                    writes.extend(op.result.output.writes)
                except RumorError as exc:
                    op.error = exc
            durable = True
            if writes:
                try:
                    await self.storage.persist(writes, [])
                except Exception as exc:  # disk full, I/O error: nothing is acknowledged
                    log.error("persist_failed", error=repr(exc), writes=len(writes))
                    durable = False
                    for op in ops:
                        op.error = op.error or exc
            pushes = node.flush(self.now())
            if durable:  # never send a version that is not on disk
                self._send(pushes.messages)
        finally:
            committing, self._committing = self._committing, None
            committing.set_result(None)
            for op in ops:
                if op.done is not None and not op.done.done():
                    op.done.set_result(None)

    def _fail_pending(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, []
        for op in pending:
            op.error = exc
            if op.done is not None and not op.done.done():
                op.done.set_result(None)

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            raise RuntimeError("the node is not started")
        return self._storage

    # --- receive path --------------------------------------------------------------
    async def receive(self, sender: str, payloads: Iterable[bytes]) -> list[bytes]:
        """Apply messages from ``sender``; returns the replies addressed to it."""
        node = self.node
        now = self.now()
        out = Output()
        for payload in payloads:
            try:
                out.extend(node.receive(payload, now))
            except DecodeError as exc:
                log.warning("gossip_decode_error", sender=sender, error=str(exc))
        committing = self._committing  # records of that batch may be in ``out``
        self._drain_transitions()
        if out.writes:
            self._observe_lag(out.writes, now)
        if out.writes or out.purges:
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
        if committing is not None and out.messages:
            await asyncio.shield(committing)
        replies: list[bytes] = []
        onward: list[tuple[str, bytes]] = []
        for target, data in out.messages:
            if target == sender:
                replies.append(data)
            else:
                onward.append((target, data))
        self._send(onward)
        return replies

    def _persist_behind(self, persisting: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(persisting)
        self._behind.add(task)
        task.add_done_callback(self._persisted_behind)

    def _persisted_behind(self, task: asyncio.Task[None]) -> None:
        self._behind.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The storage is failed from now on: client writes get 503, nothing is lost
            # that the versions' origin does not hold.
            log.error("persist_failed", error=repr(task.exception()), path="receive")

    async def on_reply(self, sender: str, payloads: list[bytes]) -> None:
        replies = await self.receive(sender, payloads)
        self._send((sender, data) for data in replies)

    def _observe_lag(self, writes: list[tuple[str, Record]], now: float) -> None:
        now_ms = now * 1000
        self.metrics.replication_lag.observe_many(
            max(0.0, now_ms - physical_ms(record.hlc)) / 1000 for _, record in writes
        )

    # --- tick path -----------------------------------------------------------------
    async def _tick_loop(self) -> None:
        while self._running:
            delay = self.node.next_deadline() - self.now()
            await asyncio.sleep(min(MAX_TICK_SLEEP_S, max(MIN_TICK_SLEEP_S, delay)))
            if self._committing is not None or self._pending:
                self._tick_due = True  # the writer ticks right after its commit
                self._write_wakeup.set()
                continue
            await self._safe_tick()

    async def _safe_tick(self) -> None:
        try:
            await self._tick()
        except Exception as exc:  # a disk error or a bug must not stop heartbeats
            log.exception("tick_failed", error=repr(exc))

    async def _tick(self) -> None:
        out = self.node.tick(self.now())
        self._drain_transitions()
        self._keep_incarnation()
        if out.writes or out.purges:
            await self.storage.persist(out.writes, out.purges, durable=False)
        self._send(out.messages)

    def _keep_incarnation(self) -> None:
        """Persist an incarnation raised by a refutation, so a restart starts above it."""
        me = getattr(self.node.membership, "me", None)
        if me is not None and me.incarnation > self.incarnation:
            self.incarnation = me.incarnation
            self.storage.set_meta("incarnation", str(self.incarnation))

    def _drain_transitions(self) -> None:
        membership = self.node.membership
        if not membership.transitions:
            return
        for change in membership.transitions:
            log.info(
                "member_state", member=change.member, old=change.old.value, new=change.new.value
            )
        membership.transitions.clear()

    def _send(self, messages: Iterable[tuple[str, bytes]]) -> None:
        gossip = self.gossip
        for target, data in messages:
            gossip.send(target, data)

    # --- views ---------------------------------------------------------------------
    def cluster_view(self) -> dict[str, Any]:
        node = self.node
        now = self.now()
        members = []
        for member in node.membership.members() if hasattr(node.membership, "members") else []:
            members.append(
                {
                    "id": member.id,
                    "url": member.address,
                    "state": member.state.value,
                    "incarnation": member.incarnation,
                    "heartbeat": member.heartbeat,
                    "last_heartbeat_age_s": 0.0
                    if member.id == self.node_id
                    else round(max(0.0, now - member.last_progress), 3),
                }
            )
        members.sort(key=lambda m: m["id"])
        live, tombstones = node.key_count()
        sharding = self.settings.sharding
        return {
            "node_id": self.node_id,
            "url": self.url,
            "sharding": sharding,
            "replicas": self.settings.replicas,
            "keys": live,
            "tombstones": tombstones,
            "members": members,
            "ownership": node.ring().ownership() if sharding else None,
        }
