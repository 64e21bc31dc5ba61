"""The RumorDB node: one replica's protocol state machine, with no I/O.

A driver (``live.runner``, ``sim.engine``) feeds it client commands (``write``, then
``flush`` once durable; ``read`` and ``plan_list`` say where to answer), peer messages
(``receive``) and time (``tick`` at ``next_deadline()``), carries out each ``Output``
(persist, then send: ``core.output``) and reads state only through ``view``. A client
write that could not be made durable is undone with ``abort`` instead of ``flush``.

What comes from outside is bounded before it is applied (``core.bounds``): a client's
context, and every peer message, whole. This node's own clock is watched against its
peers' heartbeats (``core.clock_watch``): while it runs ahead, client writes are refused.

Replication has two paths. Rumor mongering (``core.rumors``, ``core.broadcast``): a
fresh version is pushed at once and then piggybacked on gossip rounds until sent
``retransmit_mult * ceil(log10(N + 1))`` times. Anti-entropy (``core.anti_entropy``):
every interval the node walks its digest tree against one random peer and both exchange
only the keys that differ. Rumors make replication fast; anti-entropy makes it certain.
Sharded, a key lives on its ``replicas`` owners (``core.ring``); writes to a dead owner
go to a stand-in (a hint), keys held but not owned are handed off (``core.handoff``),
and tombstones are purged once every member that must hold them does
(``core.tombstones``). This class only coordinates those modules.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

from rumordb.core import anti_entropy, hlc
from rumordb.core.bounds import CLOCK_AHEAD, Bounds, InvalidMessage, bounds_at, check_message
from rumordb.core.broadcast import BroadcastQueue, retransmit_limit
from rumordb.core.clock_watch import ClockWatch, Skew
from rumordb.core.config import NodeConfig
from rumordb.core.context import Context
from rumordb.core.counters import Counters
from rumordb.core.digest import Digest
from rumordb.core.errors import DecodeError
from rumordb.core.keys import check_key
from rumordb.core.member_state import State
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
from rumordb.core.outbox import Outbox
from rumordb.core.output import Output
from rumordb.core.placement import Placement
from rumordb.core.reads import AskOwners, ListPlan, Local, ReadPlan
from rumordb.core.record import Record, is_live
from rumordb.core.replica import Replica
from rumordb.core.ring import Ring
from rumordb.core.rumors import by_target, is_direct_mail, push_width
from rumordb.core.timers import Timers
from rumordb.core.tombstones import Version
from rumordb.core.view import NodeView
from rumordb.core.writes import WriteCommand, WriteResult, WriteStatus, context_refusal

FOLD_SLICE_GAP_S = 0.001  # between digest fold slices: the driver serves in between
_APPLIED = frozenset((WriteStatus.OK, WriteStatus.CREATED))

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
        ``purged``: the purged-version memory a previous run persisted.

        ``mono`` (here and in ``tick``, ``receive``, ``handle``, ``join``, ``leave``): a
        monotonic time for membership timeouts, so a wall-clock step never makes a peer
        look silent; ``now`` (wall time) still stamps writes. Omitted, ``now`` serves both.
        With ``mono``, timers run on it too: ``next_deadline()`` is then a monotonic time.
        """
        self.node_id, self.rng = node_id, rng
        self.config = c = config or NodeConfig()
        self.membership: MemberTable = membership or Membership(
            node_id, address, now if mono is None else mono, incarnation, c.suspicion_mult, c.probe_interval_ms,
            c.dead_timeout_ms,
        )  # fmt: skip
        self.counters, self.queue = Counters(), BroadcastQueue(c.queue_max)
        self.replica = Replica(node_id, self.counters, self.queue, c.max_key_bytes, now)
        self.store = self.replica.store
        self.outbox = Outbox(node_id, self.counters, self._entries, c.max_batch)
        self.placement = Placement(
            self.membership, sharding=c.sharding, replicas=c.replicas, vnodes=c.vnodes,
            ring=ring, on_new_ring=self.store.forget_scoped,
        )  # fmt: skip
        self.owners, self.route, self.ring = (
            self.placement.owners, self.placement.route, self.placement.ring,
        )  # fmt: skip
        self._urgent: dict[str, Record] = {}  # client writes not yet flushed
        self._undo: dict[str, Record | None] = {}  # their keys' versions before them
        self.clock_watch = ClockWatch(c.max_clock_skew_ms)
        self._session = self._dead_probe = 0
        self._now = now  # the latest time a call brought: reads without one use it
        self._fold_at = math.inf  # when the next slice of digest folding is due
        self.replica.load_all(records)
        self.replica.tombstones.restore(purged)
        self.timers = Timers(c.probe_interval_ms, c.gossip_interval_ms, c.anti_entropy_interval_ms)
        self.timers.start(now if mono is None else mono, rng if c.jitter_timers else None)
        self.view = NodeView(
            self.store, self.replica.tombstones, self.membership, self.queue, self.counters,
            self.owners, self.ring, self.clock_watch,
        )  # fmt: skip

    def next_deadline(self) -> float:
        return min(self.timers.next_deadline(), self._fold_at)

    # --- client commands -------------------------------------------------------------
    def read(
        self, key: str, *, forwarded: bool = False, meta: bool = False, now: float | None = None
    ) -> ReadPlan:
        """Where to answer a read of ``key`` (``core.reads``); ``meta``: tombstones too.

        ``now``: a value whose TTL ran out by then reads as absent (default: the time of
        the latest call).
        """
        owners = self.route(key)
        if owners is not None:
            return AskOwners(tuple(owners))
        record = self.store.get(key)
        if meta:
            return Local(record, self.store.discarded.get(key))
        if record is None and self.config.sharding and not forwarded:
            # A new owner may not hold the key yet while ranges move: ask the others.
            others = tuple(m for m in self.owners(key) if m != self.node_id)
            if others:
                return AskOwners(others, fallback=True)
        return Local(record if is_live(record, self._now_hlc(now)) else None)

    def plan_list(
        self,
        prefix: str = "",
        limit: int = 100,
        after: str = "",
        *,
        forwarded: bool = False,
        now: float | None = None,
    ) -> ListPlan:
        """This node's page of live keys; sharded, also the peers holding the other ranges."""
        keys = self.store.list_live(prefix, limit, after, self._now_hlc(now))
        if not self.config.sharding or forwarded:
            return ListPlan(keys)
        return ListPlan(keys, tuple(self.membership.peers()))

    def write(self, command: WriteCommand, now: float) -> WriteResult:
        """Apply a client write; its key was checked by the driver (``check_key``)."""
        key = command.key
        self._now = now
        owners = None if command.coordinate else self.route(key)
        if owners is not None:
            return WriteResult(WriteStatus.NOT_OWNER, None, Output(), tuple(owners))
        refused = self._refuse(command, now)
        if refused is not None:
            return WriteResult(refused, None, Output())
        prior = self.store.records.get(key)
        if command.version is not None:
            return self._restore_version(key, command.version, prior)
        status, record = self.replica.write(command, now)
        if status not in _APPLIED or record is None:
            return WriteResult(status, record, Output())
        self._urgent[key] = record
        if key not in self._undo:
            self._undo[key] = prior
        return WriteResult(status, record, Output(writes=[(key, record)]))

    def _restore_version(self, key: str, version: Record, prior: Record | None) -> WriteResult:
        """A client-given version merged by LWW; pushed on ``flush`` like a write if applied."""
        out = Output()
        status, record = self.replica.restore_version(out, key, version)
        if out.writes and record is not None:
            self._urgent[key] = record
            if key not in self._undo:
                self._undo[key] = prior
        return WriteResult(status, record, out)

    def _refuse(self, command: WriteCommand, now: float) -> WriteStatus | None:
        """Refusals before the stored version is looked at: our clock, the context's."""
        if self.clock_watch.verdict.skew is Skew.AHEAD:
            return WriteStatus.CLOCK_AHEAD
        if command.context is None:
            return None
        return context_refusal(command.context, self._bounds(now))

    def _bounds(self, now: float) -> Bounds:
        known = max(len(self.membership), self.replica.widest_loaded)
        c = self.config
        return bounds_at(int(now * 1000), c.max_clock_skew_ms, known, c.clock_slack)

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
        """Push the client writes accepted since the last flush, batched per peer.

        Call it after persisting those writes: one flush per batch of concurrent
        requests turns N writes into one message per peer.
        """
        out = Output()
        self._undo = {}
        if not self._urgent:
            return out
        urgent, self._urgent = self._urgent, {}
        update_of = self.replica.update_of
        if self.config.sharding:
            pairs = [(key, update_of(key, record)) for key, record in urgent.items()]
            grouped = by_target(pairs, self.placement.replica_targets)
            self.outbox.push_each(out, grouped, relay=False)
            return out
        peers = len(self.membership.peers())
        width = push_width(self.config.fanout, peers, self.config.direct_mail_max)
        targets = self.membership.sample_peers(self.rng, width)
        relay = not is_direct_mail(len(targets), peers)
        if relay:
            for key, record in urgent.items():
                self.queue.push(key, record, transmits=len(targets))
        updates = [update_of(key, record) for key, record in urgent.items()]
        self.outbox.push(out, targets, updates, relay=relay)
        return out

    def abort(self) -> None:
        """Undo the client writes accepted since the last flush: they are not durable.

        Call it instead of ``flush`` when persisting them failed: their clients are told
        so, and nothing of them may stay to be read, gossiped or synced. A key a peer's
        version replaced meanwhile keeps that version.
        """
        undo, self._undo = self._undo, {}
        urgent, self._urgent = self._urgent, {}
        records = self.store.records
        for key, prior in undo.items():
            written = urgent.get(key)
            # equal, not identical: the store hands out decoded copies (core.record_table)
            if written is not None and records.get(key) == written:
                self.replica.restore(key, prior)

    # --- time ------------------------------------------------------------------------
    def tick(self, now: float, mono: float | None = None) -> Output:
        """Heartbeats, rumor rounds, anti-entropy and maintenance that are due by ``now``."""
        out = Output()
        self._now = now
        clock = now if mono is None else mono  # a driver that passes mono always does
        self._fold_digests(clock)
        # Expired values become their tombstones on every tick (a heap peek when none is due).
        self.replica.expire(out, hlc.pack(int(now * 1000)), self.config.maintenance_batch)
        due = self.timers.fire(clock)
        if due.probe and self.membership.detects_failures:
            self._probe(out, now, clock)
        if due.gossip and len(self.queue):
            self._gossip_round(out)
        if due.anti_entropy:
            self._start_anti_entropy(out)
            # A static cluster never moves ranges: only tombstones can need maintenance.
            if self.membership.detects_failures or self.replica.tombstones.holders:
                self._maintain(out)
        return self._with_transitions(out)

    def _fold_digests(self, now: float) -> None:
        """One bounded slice of digest work when much is pending; the next is due soon.

        A little pending work stays for anti-entropy to fold (rewrites of one key
        coalesce); a backlog (a restart, a ring change, heavy writes) is worked off here
        in slices so that no tick, and no anti-entropy step, takes long.
        """
        c = self.config
        if self.store.pending_folds() <= c.digest_fold_batch // 2:
            self._fold_at = math.inf
            return
        owners_of = self.placement.shared_owners() if c.sharding else self.owners
        left = self.store.fold(c.digest_fold_batch, owners_of, self.node_id)
        self._fold_at = now + FOLD_SLICE_GAP_S if left else math.inf

    def _probe(self, out: Output, now: float, mono: float) -> None:
        """``mono`` judges members; ``now`` (wall time) is what the clock watch compares."""
        members = self.membership
        members.beat()
        if not members.was_away(mono):  # away: what waits for us is news, not silence
            members.expire(mono)
        if self.config.reap_dead_after_ms:
            members.reap(mono, self.config.reap_dead_after_ms / 1000)
        targets = members.sample_peers(self.rng, self.config.fanout)
        dead = members.dead_peers()
        if dead:
            # Keep knocking on one dead member's door, so a healed partition is noticed.
            self._dead_probe += 1
            targets.append(dead[self._dead_probe % len(dead)])
        if targets:
            beat = Heartbeat(self.node_id, self._entries(), int(now * 1000))
            self.outbox.send(out, targets, beat)
        self.clock_watch.judge(int(now * 1000))  # peers gone quiet stop counting

    def _gossip_round(self, out: Output) -> None:
        self.counters.rumor_rounds += 1
        c = self.config
        limit = retransmit_limit(c.retransmit_mult, len(self.membership))
        if c.sharding:
            items = self.queue.take(c.max_batch, limit)
            updates = [(item.key, self.replica.update_of(item.key, item.record)) for item in items]
            self.outbox.push_each(out, by_target(updates, self.placement.replica_targets))
            return
        for target in self.membership.sample_peers(self.rng, c.fanout):
            taken = self.queue.take(c.max_batch, limit)
            if not taken:
                break
            self.outbox.push(
                out, [target], [self.replica.update_of(i.key, i.record) for i in taken]
            )

    def _start_anti_entropy(self, out: Output) -> None:
        sample = self.membership.sample_peers(self.rng, 1)
        if sample:
            self._session += 1
            self.counters.anti_entropy_sessions += 1
            digest = self._digest_for(sample[0])
            if digest is None:  # still folding (a restart): the next interval tries again
                return
            self.outbox.send(out, sample, anti_entropy.start(self.node_id, self._session, digest))

    def _maintain(self, out: Output) -> None:
        """Purge tombstones every required member holds; hand off keys not owned here."""
        c, members, replica = self.config, self.membership, self.replica
        if replica.tombstones.holders:
            everyone = set(members.ring_members())
            required = (lambda key: set(self.owners(key))) if c.sharding else (lambda _: everyone)
            confirm = replica.purge_tombstones(out, c.maintenance_batch, required, members.is_alive)
            self._push_for_ack(out, confirm)
        if c.sharding:
            send = replica.hand_off(out, c.maintenance_batch, self.owners, members.is_alive)
            self._push_for_ack(out, send)

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
        try:
            check_message(message, self._bounds(now), c.max_key_bytes)
        except InvalidMessage as exc:
            self.counters.messages_refused += 1
            if exc.reason == CLOCK_AHEAD:
                self.counters.messages_clock_ahead += 1
            raise
        if isinstance(message, (Push, Heartbeat, PushAck)):
            seen = now if mono is None else mono
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
        elif isinstance(message, DigestStep):
            digest = self._digest_for(sender)
            reply = None if digest is None else anti_entropy.on_digest(self.node_id, message, digest, c.sync_max_entries, self.rng)  # fmt: skip
            if reply is not None:
                self.outbox.send(out, [sender], reply)
            else:  # our digests agree (or the step was malformed): nothing left to repair
                self.counters.anti_entropy_completed += 1
        elif isinstance(message, LeafEntries):
            digest = self._digest_for(sender)
            if digest is not None:  # a half-built digest ends the session: not a wrong answer
                keys, want = anti_entropy.on_leaf_entries(message, digest, c.sync_max_keys)
                self._sync(out, sender, message.session, keys, want)
        elif isinstance(message, SyncRecords):
            self.counters.anti_entropy_completed += 1
            self._on_updates(out, sender, message.updates, relay=False, sync=True)
            digest = self._digest_for(sender) if message.want else None
            if digest is not None:
                wanted = anti_entropy.wanted_keys(message.want, digest, c.sync_max_keys)
                self._sync(out, sender, message.session, wanted, [])
        return self._with_transitions(out)

    def join(
        self, member_id: str, address: str, incarnation: int, now: float, mono: float | None = None
    ) -> None:
        """A peer announced itself (discovery or a seed list)."""
        self.membership.join(member_id, address, incarnation, now if mono is None else mono)

    # --- leaving and forgetting ------------------------------------------------------
    def leave(self, now: float, mono: float | None = None) -> Output:
        """Announce to every peer that this node leaves; sharded, start handing off.

        Once ``left``, this node owns nothing: each interval's maintenance sends its keys
        to their owners and drops each one they acknowledge (``handoff_remaining``).
        Peers stop counting it for tombstone purge and handoff as soon as they hear.
        """
        self.membership.leave(now if mono is None else mono)
        out = Output()
        peers = self.membership.peers()
        if peers:
            self.outbox.send(
                out, list(peers), Heartbeat(self.node_id, self._entries(), int(now * 1000))
            )
        self._maintain(out)
        return self._with_transitions(out)

    @property
    def leaving(self) -> bool:
        me = self.membership.member_info(self.node_id)
        return me is not None and me.state is State.LEFT

    def handoff_remaining(self) -> int:
        """Keys held here that still wait for their owners to hold them (sharded)."""
        if not self.config.sharding:
            return 0
        return sum(1 for key in self.store.records if self.node_id not in self.owners(key))

    def forget(self, member_id: str, now: float, mono: float | None = None) -> bool:
        """Forget a dead or left member (``Membership.forget``); purge stops waiting for it."""
        return self.membership.forget(member_id, now if mono is None else mono)

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

    def _sync(self, out: Output, peer: str, session: int, keys: list[str], want: list[int]) -> None:
        records = self.store.records
        updates = [self.replica.update(key) for key in keys if key in records]
        if updates or want:
            self.counters.anti_entropy_keys_sent += len(updates)
            self.outbox.send(out, [peer], SyncRecords(self.node_id, session, updates, want))

    def _with_transitions(self, out: Output) -> Output:
        made = self.membership.take_transitions()
        if made:
            out.transitions.extend(made)
        return out

    def _now_hlc(self, now: float | None) -> int:
        return hlc.pack(int((self._now if now is None else now) * 1000))

    def _digest_for(self, peer: str) -> Digest | None:
        """The whole digest, or (sharded) one over the keys both nodes own; None while
        more than one fold slice of keys is pending (after a restart or a ring change)."""
        c = self.config
        if not c.sharding:
            return self.store.ready_digest(self.owners, self.node_id, c.digest_fold_batch)
        owners_of = self.placement.shared_owners()
        epoch = self.membership.epoch
        return self.store.ready_digest_for(peer, epoch, owners_of, self.node_id, c.digest_fold_batch)  # fmt: skip

    # --- what to send ----------------------------------------------------------------
    def _entries(self) -> list[MemberEntry]:
        return self.membership.gossip_entries(self.rng, self.config.member_gossip)

    def _push_for_ack(self, out: Output, keys_by_target: dict[str, list[str]]) -> None:
        """Send each target its keys' versions, asking it to acknowledge what it holds."""
        update = self.replica.update
        grouped = {t: [update(k) for k in keys] for t, keys in keys_by_target.items()}
        self.outbox.push_each(out, grouped, ack=True)
