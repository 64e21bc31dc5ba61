"""The RumorDB node: one replica's protocol state machine, with no I/O.

A driver (``live.runner``, ``sim.engine``) feeds it client commands (``write``, then
``flush`` once durable; ``read`` and ``plan_list`` say where to answer), peer messages
(``receive``) and time (``tick`` at ``next_deadline()``), carries out each ``Output``
(persist, then send: ``core.output``; a tick's also carries the counter deltas) and reads
state only through ``view``. A client write that could not be made durable is undone
with ``abort`` instead of ``flush`` (``core.pending_writes``).

What comes from outside is bounded before it is applied (``core.admission``,
``core.bounds``): a client's context, and every peer message, whole. This node's own
clock is watched against its peers' heartbeats (``core.clock_watch``): while it runs
ahead, client writes are refused. Members are judged on a monotonic clock, and a pause
of this node is not held against them (``core.local_health``, ``core.probe``).

Replication has two paths. Rumor mongering (``core.mongering``, ``core.rumors``,
``core.broadcast``): a fresh version is pushed at once and then piggybacked on gossip
rounds until sent ``retransmit_mult * ceil(log10(N + 1))`` times. Anti-entropy
(``core.anti_entropy_sessions``, ``core.anti_entropy``): every interval the node walks
its digest tree (folded in slices: ``core.digest_folding``) against one random peer and
both exchange only the keys that differ. Rumors make replication fast; anti-entropy
makes it certain. Sharded, a key lives on its ``replicas`` owners (``core.ring``);
writes to a dead owner go to a stand-in (a hint), keys held but not owned are handed off
(``core.handoff``), and tombstones are purged once every member that must hold them does
(``core.tombstones``), both in the periodic maintenance (``core.maintenance``); leaving
and reaping follow ``core.lifecycle``. This class only coordinates those modules: which
input goes where, and in what order the output is built.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from rumordb.core import batches, lifecycle, maintenance
from rumordb.core.admission import admit, bounds_for, write_refusal
from rumordb.core.anti_entropy import Pacing
from rumordb.core.anti_entropy_sessions import AntiEntropySessions
from rumordb.core.bounds import Bounds
from rumordb.core.broadcast import BroadcastQueue
from rumordb.core.clock_watch import ClockWatch, Skew
from rumordb.core.config import NodeConfig
from rumordb.core.context import Context
from rumordb.core.counters import Counters, Reported
from rumordb.core.digest_folding import DigestFolding
from rumordb.core.errors import DecodeError
from rumordb.core.idling import Idling
from rumordb.core.keys import check_key
from rumordb.core.local_health import member_time
from rumordb.core.membership import MemberEntry, Membership, MemberTable
from rumordb.core.messages import (
    DigestStep,
    Heartbeat,
    LeafEntries,
    Message,
    Push,
    PushAck,
    SyncRecords,
    Update,
    decode,
)
from rumordb.core.mongering import Mongering
from rumordb.core.outbox import Outbox
from rumordb.core.output import Output
from rumordb.core.pending_writes import PendingWrites
from rumordb.core.placement import Placement
from rumordb.core.probe import Prober
from rumordb.core.reads import ListPlan, Reader, ReadPlan
from rumordb.core.record import Record
from rumordb.core.replica import Replica
from rumordb.core.ring import Ring
from rumordb.core.startup import StartupLoad
from rumordb.core.timers import Timers
from rumordb.core.tombstones import Version
from rumordb.core.view import NodeView
from rumordb.core.writes import BatchWrite, WriteCommand, WriteResult, WriteStatus

__all__ = ["Node", "NodeConfig", "Output", "WriteCommand", "WriteResult", "WriteStatus"]


class Node:
    def __init__(
        self,
        node_id: str,
        address: str = "",
        *,
        rng: random.Random,
        now: float,
        config: NodeConfig | None = None,
        incarnation: int = 0,
        membership: MemberTable | None = None,
        records: Iterable[tuple[str, Record]] = (),
        ring: Ring | None = None,
        mono: float | None = None,
        purged: Iterable[tuple[str, Version]] = (),
    ) -> None:
        """``ring``: a fixed ring shared by many nodes (with ``StaticMembership`` only);
        ``purged``: the purged-version memory a previous run persisted; ``mono`` (here and
        in every call that takes it): the monotonic time that judges members and runs the
        timers (``core.local_health``), so ``next_deadline()`` is then a monotonic time."""
        self.node_id, self.rng = node_id, rng
        self.config = c = config or NodeConfig()
        self._sharding = c.sharding  # read on every write
        clock = member_time(now, mono)
        self.membership: MemberTable = membership or Membership(
            node_id, address, clock, incarnation, c.suspicion_mult, c.probe_interval_ms,
            c.dead_timeout_ms,
        )  # fmt: skip
        self.counters, self.queue = Counters(), BroadcastQueue(c.queue_max)
        self._reported = Reported()  # the totals the last tick's deltas brought up to
        self.replica = Replica(node_id, self.counters, self.queue, c.max_key_bytes, now)
        self.store = self.replica.store
        self.outbox = Outbox(node_id, self.counters, self._entries, c.max_batch)
        self.placement = Placement(
            self.membership, sharding=c.sharding, replicas=c.replicas, vnodes=c.vnodes,
            ring=ring, on_new_ring=self.store.forget_scoped,
        )  # fmt: skip
        self._now = now  # the latest time a call brought: reads without one use it
        self._reader = Reader(self.store, self.placement)  # ``core.reads``
        self._add_protocol_parts(c, rng)
        self.replica.load_all(records)
        self.replica.tombstones.restore(purged)
        self.startup = StartupLoad(self.replica)  # the rest of the disk, in slices
        self.timers = Timers(c.probe_interval_ms, c.gossip_interval_ms, c.anti_entropy_interval_ms)
        self.timers.start(clock, rng if c.jitter_timers else None)
        self._idling = Idling(
            self.timers, self.folding, self.anti_entropy, self.queue, self.membership,
            self.replica.expiry,
        )  # fmt: skip
        self.view = NodeView(
            self.store, self.replica.tombstones, self.membership, self.queue, self.counters,
            self.placement, self.clock_watch, c.sharding,
        )  # fmt: skip

    def _add_protocol_parts(self, c: NodeConfig, rng: random.Random) -> None:
        """What runs the protocol over the replica, the member table and the outbox."""
        self.pending = PendingWrites()  # client writes not yet flushed (or aborted)
        self.clock_watch, self.prober = ClockWatch(c.max_clock_skew_ms), Prober()
        members, replica, outbox = self.membership, self.replica, self.outbox
        self.folding = DigestFolding(self.store, self.placement, members, c.digest_fold_batch)
        self.mongering = Mongering(
            c, members, self.placement, self.queue, replica, outbox, self.counters, rng
        )
        self.anti_entropy = AntiEntropySessions(
            self.node_id, members, self.folding, replica, outbox, self.counters, rng,
            max_entries=c.sync_max_entries, max_keys=c.sync_max_keys,
            pacing=Pacing(c.anti_entropy_busy_versions, c.anti_entropy_max_waits),
            slice_items=c.anti_entropy_slice_items,
        )  # fmt: skip

    # Methods, not bound methods kept as attributes: those were ~570 B of a node's ~8 KiB
    # (a million simulated nodes).
    def owners(self, key: str) -> list[str]:
        """The key's preference list (``Placement.owners``)."""
        return self.placement.owners(key)

    def route(self, key: str) -> list[str] | None:
        """None when this node serves ``key``, else its owners (``Placement.route``)."""
        return self.placement.route(key)

    def ring(self) -> Ring:
        return self.placement.ring()

    def read(
        self, key: str, *, forwarded: bool = False, meta: bool = False, now: float | None = None
    ) -> ReadPlan:
        """Where to answer a read of ``key`` (``core.reads``); ``now``: a value expired by
        then reads as absent (default: the latest call's time)."""
        return self._reader.read(key, forwarded, meta, self._now if now is None else now)

    def plan_list(
        self, prefix: str = "", limit: int = 100, after: str = "", *, forwarded: bool = False,
        now: float | None = None,
    ) -> ListPlan:  # fmt: skip
        """This node's page of live keys; sharded, also the peers holding the other ranges."""
        at = self._now if now is None else now
        return self._reader.plan_list(prefix, limit, after, forwarded, at)

    def idle_until(self) -> float:
        """The earliest ``now`` at which a tick may have work to do (``core.idling``)."""
        return self._idling.until()

    def next_deadline(self) -> float:
        return min(self.timers.next_deadline(), self.folding.due_at, self.anti_entropy.due_at)

    # --- client commands -------------------------------------------------------------
    def write(self, command: WriteCommand, now: float) -> WriteResult:
        """Apply a client write; its key was checked by the driver (``check_key``)."""
        key = command.key
        self._now = now
        if self._sharding and not command.coordinate:  # unsharded, this node serves every key
            owners = self.route(key)
            if owners is not None:
                return WriteResult(WriteStatus.NOT_OWNER, None, Output(), tuple(owners))
        verdict = self.clock_watch.verdict
        if command.context is not None or verdict.skew is Skew.AHEAD:  # else none refuses
            refused = write_refusal(command, verdict, now, self._bounds)
            if refused is not None:
                return WriteResult(refused, None, Output())
        prior = self.store.records.get(key)
        if command.version is not None:  # a client-given version, merged by LWW
            out = Output()
            status, record = self.replica.restore_version(out, key, command.version)
            if out.writes and record is not None:
                self.pending.accept(key, record, prior)  # pushed on flush like a write
            return WriteResult(status, record, out)
        status, record = self.replica.write(command, now, prior)
        # identity, not ``in`` a set: an enum's hash is a Python-level call
        if record is None or (status is not WriteStatus.OK and status is not WriteStatus.CREATED):
            return WriteResult(status, record, Output())
        self.pending.accept(key, record, prior)
        return WriteResult(status, record, Output(writes=[(key, record)]))

    def write_batch(self, commands: list[WriteCommand], now: float) -> BatchWrite:
        """``write`` of each command in order, with ONE ``Output`` that every result shares
        (``core.batches``); persist it, then ``flush`` once (or ``abort``)."""
        self._now = now
        bulk = not self.config.sharding and self.clock_watch.verdict.skew is not Skew.AHEAD
        # One command (a lone client's PUT): the single write costs less than the bulk
        # loop's setup, with the same result (``tests/core/test_bulk_paths.py``).
        upsert = self.replica.upsert_many if bulk and len(commands) > 1 else None
        return batches.write_batch(commands, now, self.write, upsert, self.pending.accept)

    def put(
        self, key: str, value: bytes, content_type: str, now: float,
        context: Context | None = None, create: bool = False, coordinate: bool = False,
    ) -> WriteResult:  # fmt: skip
        """``write`` of a value, checking the key first (for tests and the simulator)."""
        check_key(key, self.config.max_key_bytes)
        return self.write(WriteCommand(key, value, content_type, context, create, False, coordinate), now)  # fmt: skip

    def delete(
        self, key: str, now: float, context: Context | None = None, coordinate: bool = False
    ) -> WriteResult:
        """``write`` of a tombstone, checking the key first (for tests and the simulator)."""
        check_key(key, self.config.max_key_bytes)
        return self.write(WriteCommand(key, context=context, delete=True, coordinate=coordinate), now)  # fmt: skip

    def flush(self, now: float) -> Output:
        """Push the writes accepted since the last flush, one message per peer: call it
        after persisting them (one flush per batch of concurrent requests)."""
        out = Output()
        fresh = self.pending.take()
        if fresh:
            self.mongering.push_fresh(out, fresh)
        return out

    def abort(self) -> None:
        """Call it instead of ``flush`` when persisting the writes accepted since the last
        flush failed: they are undone (``core.pending_writes``), as they are not durable."""
        for key, prior in self.pending.take_undo(self.store.records):
            self.replica.restore(key, prior)

    # --- time ------------------------------------------------------------------------
    def tick(self, now: float, mono: float | None = None) -> Output:
        """Heartbeats, rumor rounds, anti-entropy and maintenance that are due by ``now``."""
        out = Output()
        self._now = now
        clock = now if mono is None else mono  # member_time, inlined: every tick passes here
        self.folding.work(clock)
        self.anti_entropy.work(out, clock)  # a slice of a step in progress, if any
        maintenance.expire_due(self.replica, out, now, self.config.maintenance_batch)
        due = self.timers.fire(clock)
        if due.probe and self.membership.detects_failures:
            self._probe(out, now, clock)
        if due.gossip and len(self.queue):
            self.mongering.round(out)
        if due.anti_entropy:
            self.anti_entropy.start(out)
            if maintenance.is_due(self.membership, self.replica):
                maintenance.run(
                    out, self.replica, self.placement, self.outbox, self.config.maintenance_batch
                )
        out.counter_deltas = self._reported.take_deltas(self.counters)
        return self._with_transitions(out)

    def pass_idle(self, now: float) -> dict[str, int]:
        """What ``tick(now)`` does at a ``now`` before ``idle_until()`` (``core.idling``):
        the idle timers move on. Returns its ``counter_deltas`` (the counts inputs made
        since the last tick), so that summed deltas stay what ticks alone report."""
        self._now = now
        self.timers.fire(now)
        return self._reported.take_deltas(self.counters)

    def _probe(self, out: Output, now: float, mono: float) -> None:
        """``mono`` judges members; ``now`` (wall time) is what the clock watch compares."""
        c = self.config
        targets = self.prober.round(self.membership, self.rng, c.fanout, mono, c.reap_dead_after_ms)
        self.outbox.beat(out, targets, now)
        self.clock_watch.judge(int(now * 1000))  # peers gone quiet stop counting

    # --- receiving -------------------------------------------------------------------
    def receive(self, data: bytes, now: float, mono: float | None = None) -> Output:
        """Handle one encoded message. Raises ``DecodeError`` (counted) for bad input."""
        self.counters.messages_received += 1
        self.counters.bytes_received += len(data)
        try:
            message = decode(data, self.config.max_message_bytes)
        except DecodeError:
            self.counters.decode_errors += 1
            raise
        return self.handle(message, now, mono)

    def handle(self, message: Message, now: float, mono: float | None = None) -> Output:
        """Handle one decoded message, checked whole first (``InvalidMessage``, counted)."""
        out, c, sender = Output(), self.config, message.sender
        self._now = now
        admit(message, self._bounds(now), c.max_key_bytes, self.counters)
        if isinstance(message, (Push, Heartbeat, PushAck)):
            seen = member_time(now, mono)
            for entry in message.members:
                self.membership.observe(entry, seen)
        if isinstance(message, Heartbeat) and message.clock_ms > 0:
            self.clock_watch.heard(sender, message.clock_ms, int(now * 1000))
        if isinstance(message, Push):
            self._on_updates(out, sender, message.updates, relay=message.relay)
            if message.ack:
                self._ack(out, sender, message.updates)
        elif isinstance(message, PushAck):
            self.replica.acknowledged(sender, message.held, out)
        elif isinstance(message, (DigestStep, LeafEntries)):
            self.anti_entropy.receive(out, message, member_time(now, mono))
        elif isinstance(message, SyncRecords):
            self._on_updates(out, sender, message.updates, relay=False, sync=True)
            self.anti_entropy.receive(out, message, member_time(now, mono))
        return self._with_transitions(out)

    def join(
        self, member_id: str, address: str, incarnation: int, now: float, mono: float | None = None
    ) -> None:
        """A peer announced itself (discovery or a seed list)."""
        self.membership.join(member_id, address, incarnation, member_time(now, mono))

    # --- leaving and forgetting ------------------------------------------------------
    def leave(self, now: float, mono: float | None = None) -> Output:
        """Announce to every peer that this node leaves; sharded, start handing off
        (``core.lifecycle``: done when ``view.handoff_remaining()`` is 0)."""
        self.membership.leave(member_time(now, mono))
        out = Output()
        self.outbox.beat(out, lifecycle.leave_targets(self.membership), now)
        maintenance.run(
            out, self.replica, self.placement, self.outbox, self.config.maintenance_batch
        )
        return self._with_transitions(out)

    def forget(self, member_id: str, now: float, mono: float | None = None) -> bool:
        """Forget a dead or left member (``Membership.forget``); purge stops waiting for it."""
        return self.membership.forget(member_id, member_time(now, mono))

    def take_purged_versions(self) -> list[tuple[str, Version]]:
        """Versions purged since the last call: a driver persists them (``purged=``)."""
        return self.replica.tombstones.take_unsaved()

    def _on_updates(
        self, out: Output, sender: str, updates: list[Update], relay: bool, sync: bool = False
    ) -> None:
        acks = self.replica.merge(out, sender, updates, relay, sync)
        if acks:
            self._ack(out, sender, acks)

    def _ack(self, out: Output, sender: str, updates: list[Update]) -> None:
        held = self.replica.held(updates, self.membership.ring_members())
        if held:
            self.outbox.send(out, [sender], PushAck(self.node_id, self._entries(), held))

    def _with_transitions(self, out: Output) -> Output:
        made = self.membership.take_transitions()
        if made:
            out.transitions.extend(made)
        return out

    def _bounds(self, now: float) -> Bounds:
        return bounds_for(now, self.config, len(self.membership), self.replica.widest_loaded)

    # --- what to send ----------------------------------------------------------------
    def _entries(self) -> list[MemberEntry]:
        return self.membership.gossip_entries(self.rng, self.config.member_gossip)
