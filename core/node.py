"""The RumorDB node: one replica's protocol state machine, with no I/O.

Theory of operation. A driver (``live.runner`` or ``sim.engine``) feeds the node three
kinds of input and carries out the ``Output`` each returns (``core.output``: persist,
then send):

* client commands: ``write(WriteCommand)``, then ``flush`` once the writes are durable;
  ``read`` and ``plan_list`` say where a read or a listing is answered (``core.reads``);
* ``receive(data, now)``: an encoded message from a peer;
* ``tick(now)``: time passing; call it at ``next_deadline()`` or sooner.

State is read only through ``view`` (``core.view``).

Replication has two paths. Rumor mongering: a fresh version is pushed at once to
``fanout`` peers (client writes, batched by ``flush``) and then piggybacked on gossip
rounds until sent ``retransmit_mult * ceil(log10(N + 1))`` times; when that first push
already reaches every peer (small clusters, or a key's replicas when sharded) it is
direct mail and nobody relays it (``core.rumors``). Anti-entropy: every interval the
node walks its digest tree against one random peer and both exchange only the keys
that differ (``core.anti_entropy``). Rumors make replication fast; anti-entropy makes it
certain.

With ``sharding`` on, a key lives on its ``replicas`` owners from the ring. Commands for
keys this node does not own answer ``NOT_OWNER`` with the owners, for the driver to
forward. Writes to a dead owner go to the next live node on the ring (a hint); a node
holding a key it does not own hands it to the owners (``core.handoff``). Tombstones are
purged once every member that must hold them does (``core.tombstones``).

This class coordinates those modules; each decides one thing and is tested alone.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from rumordb.core import anti_entropy, hlc
from rumordb.core.broadcast import BroadcastQueue, retransmit_limit
from rumordb.core.config import NodeConfig
from rumordb.core.context import Context
from rumordb.core.counters import Counters
from rumordb.core.digest import Digest
from rumordb.core.errors import DecodeError, InvalidKey
from rumordb.core.handoff import Handoff
from rumordb.core.keys import check_key
from rumordb.core.membership import MemberEntry, Membership, MemberTable
from rumordb.core.merge import Outcome, decide
from rumordb.core.messages import (
    DigestStep,
    Heartbeat,
    Held,
    LeafEntries,
    Message,
    Push,
    PushAck,
    SyncRecords,
    Update,
    decode,
    encode,
)
from rumordb.core.output import Output
from rumordb.core.reads import AskOwners, ListPlan, Local, ReadPlan
from rumordb.core.record import Discarded, Record, discarded_from, version_of
from rumordb.core.ring import Ring
from rumordb.core.rumors import by_target, chunks, is_direct_mail, replica_targets
from rumordb.core.store import Store
from rumordb.core.timers import Timers
from rumordb.core.tombstones import Tombstones
from rumordb.core.view import NodeView
from rumordb.core.writes import WriteCommand, WriteResult, WriteStatus, new_version, refusal

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
    ) -> None:
        """``ring``: a fixed ring shared by many nodes (with ``StaticMembership`` only)."""
        self.node_id = node_id
        self.config = c = config or NodeConfig()
        self.rng = rng
        self.membership: MemberTable = membership or Membership(
            node_id,
            address,
            now,
            incarnation=incarnation,
            suspicion_mult=c.suspicion_mult,
            probe_interval_ms=c.probe_interval_ms,
            dead_timeout_ms=c.dead_timeout_ms,
        )
        if ring is not None and (membership is None or membership.detects_failures):
            raise ValueError("a shared ring needs a static membership")
        self.store = Store()
        self.tombstones = Tombstones(node_id)
        self.handoff = Handoff(node_id)
        self.queue = BroadcastQueue(c.queue_max)
        self.counters = Counters()
        self._ring: tuple[int, Ring] | None = (0, ring) if ring is not None else None
        self._hlc = hlc.pack(int(now * 1000))
        self._urgent: dict[str, Record] = {}  # client writes not yet flushed
        self._session = 0
        self._dead_probe = 0
        for key, record in records:
            self._store(key, record)
            self._hlc = max(self._hlc, record.hlc)
        self.timers = Timers(c.probe_interval_ms, c.gossip_interval_ms, c.anti_entropy_interval_ms)
        self.timers.start(now, rng if c.jitter_timers else None)
        self.view = NodeView(
            self.store, self.tombstones, self.membership, self.queue, self.counters,
            self.owners, self.ring,
        )  # fmt: skip

    # --- where keys live -------------------------------------------------------------
    def owners(self, key: str) -> list[str]:
        """The key's preference list (every member when sharding is off)."""
        ring = self.ring()
        return ring.owners(key, self.config.replicas if self.config.sharding else len(ring.members))

    def route(self, key: str) -> list[str] | None:
        """None when this node serves ``key``; otherwise its owners, live ones first."""
        if not self.config.sharding:
            return None
        owners = self.owners(key)
        if self.node_id in owners:
            return None
        alive = self.membership.is_alive
        return sorted(owners, key=lambda m: not alive(m))

    def ring(self) -> Ring:
        epoch = self.membership.epoch
        if self._ring is None or self._ring[0] != epoch:
            self._ring = (epoch, Ring(self.membership.ring_members(), self.config.vnodes))
            self.store.forget_scoped()
        return self._ring[1]

    def next_deadline(self) -> float:
        return self.timers.next_deadline()

    # --- client commands -------------------------------------------------------------
    def read(self, key: str, *, forwarded: bool = False, meta: bool = False) -> ReadPlan:
        """Where to answer a client read of ``key`` (``core.reads``).

        ``meta``: the stored version, tombstones included, with what LWW discarded.
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
        return Local(None if record is None or record.tombstone else record)

    def plan_list(
        self, prefix: str = "", limit: int = 100, after: str = "", *, forwarded: bool = False
    ) -> ListPlan:
        """This node's page of live keys; sharded, also the peers holding the other ranges."""
        keys = self.store.list_live(prefix, limit, after)
        if not self.config.sharding or forwarded:
            return ListPlan(keys)
        return ListPlan(keys, tuple(self.membership.peers()))

    def write(self, command: WriteCommand, now: float) -> WriteResult:
        """Apply a client write; its key was checked by the driver (``check_key``)."""
        key = command.key
        owners = None if command.coordinate else self.route(key)
        if owners is not None:
            return WriteResult(WriteStatus.NOT_OWNER, None, Output(), tuple(owners))
        local = self.store.get(key)
        refused = refusal(command, local)
        if refused is not None:
            return WriteResult(refused, local, Output())
        record = new_version(self.node_id, command, local, self._hlc, int(now * 1000))
        self._hlc = record.hlc
        self._store(key, record)
        self._urgent[key] = record
        created = local is None or local.tombstone
        status = WriteStatus.CREATED if created and not command.delete else WriteStatus.OK
        return WriteResult(status, record, Output(writes=[(key, record)]))

    def put(
        self,
        key: str,
        value: bytes,
        content_type: str,
        now: float,
        context: Context | None = None,
        create: bool = False,
        coordinate: bool = False,
    ) -> WriteResult:
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

        Call it after persisting those writes; one flush per batch of concurrent requests
        turns N writes into one message per peer.
        """
        out = Output()
        if not self._urgent:
            return out
        urgent, self._urgent = self._urgent, {}
        updates = [(key, self._update(key, record)) for key, record in urgent.items()]
        if self.config.sharding:
            self._send_grouped(out, by_target(updates, self._replica_targets), relay=False)
            return out
        targets = self.membership.sample_peers(self.rng, self.config.fanout)
        relay = not is_direct_mail(len(targets), len(self.membership.peers()))
        if relay:
            for key, record in urgent.items():
                self.queue.push(key, record, transmits=len(targets))
        for chunk in chunks([update for _, update in updates], self.config.max_batch):
            self._send(out, targets, Push(self.node_id, self._entries(), chunk, relay=relay))
        return out

    # --- time ------------------------------------------------------------------------
    def tick(self, now: float) -> Output:
        """Heartbeats, rumor rounds, anti-entropy and maintenance that are due by ``now``."""
        out = Output()
        due = self.timers.fire(now)
        if due.probe:
            self._probe(out, now)
        if due.gossip:
            self._gossip_round(out)
        if due.anti_entropy:
            self._start_anti_entropy(out)
            self._maintain(out)
        self._take_transitions(out)
        return out

    def _probe(self, out: Output, now: float) -> None:
        members = self.membership
        if not members.detects_failures:
            return
        members.beat()
        members.expire(now)
        targets = members.sample_peers(self.rng, self.config.fanout)
        dead = members.dead_peers()
        if dead:
            # Keep knocking on one dead member's door, so a healed partition is noticed.
            self._dead_probe += 1
            targets.append(dead[self._dead_probe % len(dead)])
        if targets:
            self._send(out, targets, Heartbeat(self.node_id, self._entries()))

    def _gossip_round(self, out: Output) -> None:
        if not len(self.queue):
            return
        self.counters.rumor_rounds += 1
        limit = retransmit_limit(self.config.retransmit_mult, len(self.membership))
        if self.config.sharding:
            items = self.queue.take(self.config.max_batch, limit)
            updates = [(item.key, self._update(item.key, item.record)) for item in items]
            for target, chunk in by_target(updates, self._replica_targets).items():
                self._send(out, [target], Push(self.node_id, self._entries(), chunk))
            return
        for target in self.membership.sample_peers(self.rng, self.config.fanout):
            taken = self.queue.take(self.config.max_batch, limit)
            if not taken:
                break
            chunk = [self._update(item.key, item.record) for item in taken]
            self._send(out, [target], Push(self.node_id, self._entries(), chunk))

    def _start_anti_entropy(self, out: Output) -> None:
        sample = self.membership.sample_peers(self.rng, 1)
        if not sample:
            return
        self._session += 1
        self.counters.anti_entropy_sessions += 1
        start = anti_entropy.start(self.node_id, self._session, self._digest_for(sample[0]))
        self._send(out, sample, start)

    def _maintain(self, out: Output) -> None:
        """Purge tombstones every required member holds; hand off keys not owned here."""
        c, members = self.config, self.membership
        if not members.detects_failures and not self.tombstones.holders:
            return
        everyone = set(members.ring_members())
        required = (lambda key: set(self.owners(key))) if c.sharding else (lambda _: everyone)
        purges = self.tombstones.plan(c.maintenance_batch, required, members.is_alive)
        for key in purges.purge:
            self.tombstones.remember(key, version_of(self.store.records[key]))
            self._drop(out, key)
            self.counters.tombstones_purged += 1
        self._send_acked(out, purges.confirm)
        if not c.sharding:
            return
        keys = list(self.store.keys())
        handoff = self.handoff.plan(keys, c.maintenance_batch, self.owners, members.is_alive)
        for key in handoff.drop:
            self._drop(out, key)
            self.counters.handoffs_completed += 1
        self._send_acked(out, handoff.send)

    # --- receiving -------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> Output:
        """Handle one encoded message. Raises ``DecodeError`` (counted) for bad input."""
        self.counters.messages_received += 1
        self.counters.bytes_received += len(data)
        try:
            message = decode(data, self.config.max_message_bytes)
        except DecodeError:
            self.counters.decode_errors += 1
            raise
        return self.handle(message, now)

    def handle(self, message: Message, now: float) -> Output:
        out = Output()
        if isinstance(message, Push):
            self._observe(message.members, now)
            self._on_updates(out, message.sender, message.updates, relay=message.relay)
            if message.ack:
                self._ack(out, message.sender, message.updates)
        elif isinstance(message, Heartbeat):
            self._observe(message.members, now)
        elif isinstance(message, PushAck):
            self._observe(message.members, now)
            self._on_ack(message.sender, message.held)
        elif isinstance(message, DigestStep):
            digest = self._digest_for(message.sender)
            c = self.config
            reply = anti_entropy.on_digest(
                self.node_id, message, digest, c.sync_max_entries, self.rng
            )
            if reply is not None:
                self._send(out, [message.sender], reply)
        elif isinstance(message, LeafEntries):
            digest = self._digest_for(message.sender)
            keys, want = anti_entropy.on_leaf_entries(message, digest, self.config.sync_max_keys)
            self._sync(out, message.sender, message.session, keys, want)
        elif isinstance(message, SyncRecords):
            self._on_updates(out, message.sender, message.updates, relay=False, sync=True)
            if message.want:
                digest = self._digest_for(message.sender)
                wanted = anti_entropy.wanted_keys(message.want, digest, self.config.sync_max_keys)
                self._sync(out, message.sender, message.session, wanted, [])
        self._take_transitions(out)
        return out

    def join(self, member_id: str, address: str, incarnation: int, now: float) -> None:
        """A peer announced itself (discovery or a seed list)."""
        self.membership.join(member_id, address, incarnation, now)

    def _observe(self, entries: list[MemberEntry], now: float) -> None:
        for entry in entries:
            self.membership.observe(entry, now)

    def _take_transitions(self, out: Output) -> None:
        made = self.membership.take_transitions()
        if made:
            out.transitions.extend(made)

    def _on_updates(
        self, out: Output, sender: str, updates: list[Update], relay: bool, sync: bool = False
    ) -> None:
        """Merge updates; ``relay``: keep spreading what is new; ``sync``: from anti-entropy."""
        tombstone_acks: list[Update] = []
        records, purged, counters = self.store.records, self.tombstones.purged, self.counters
        for update in updates:
            key, incoming = update.key, update.record
            try:
                check_key(key, self.config.max_key_bytes)
            except InvalidKey:
                counters.decode_errors += 1
                continue
            self._hlc = hlc.observe(self._hlc, incoming.hlc)
            gone = purged.get(key)
            if gone is not None and version_of(incoming) <= gone:
                # We dropped this tombstone because every member held it; anything older
                # than it is stale. Tell the sender, so it can drop its copy too.
                if incoming.tombstone:
                    tombstone_acks.append(update)
                continue
            local = records.get(key)
            outcome = decide(local, incoming)
            if outcome.concurrent:
                self._discarded(out, key, local if outcome is Outcome.LWW_WON else incoming)
            if outcome.applied:
                counters.updates_applied += 1
                self._store(key, incoming)
                out.writes.append((key, incoming))
                if relay:
                    self.queue.push(key, incoming)
            elif outcome is Outcome.STALE:
                counters.updates_stale += 1
            current = records.get(key)
            if (
                current is not None
                and current.tombstone
                and version_of(current) == version_of(incoming)
            ):
                self.tombstones.held_by(key, sender, update.holders)
                if sync:
                    tombstone_acks.append(update)
        if tombstone_acks:
            self._ack(out, sender, tombstone_acks)

    def _discarded(self, out: Output, key: str, loser: Record | None) -> None:
        assert loser is not None, "a concurrent outcome has two versions"
        self.counters.lww_overwrites += 1
        discarded: Discarded = discarded_from(loser)
        self.store.discarded[key] = discarded
        out.discards.append((key, discarded))

    def _ack(self, out: Output, sender: str, updates: list[Update]) -> None:
        held: list[Held] = []
        for update in updates:
            current = self.store.get(update.key)
            if current is None:
                gone = self.tombstones.purged.get(update.key)
                if gone is not None:
                    held.append(Held(update.key, gone[0], gone[1], self.membership.ring_members()))
                continue
            holders = self.tombstones.holders_of(update.key) if current.tombstone else None
            held.append(Held(update.key, current.hlc, current.origin, holders))
        if held:
            self._send(out, [sender], PushAck(self.node_id, self._entries(), held))

    def _on_ack(self, sender: str, held: list[Held]) -> None:
        for item in held:
            current = self.store.get(item.key)
            # A peer holding this version or anything newer can no longer lose it.
            if current is None or (item.hlc, item.origin) < version_of(current):
                continue
            if current.tombstone:
                self.tombstones.held_by(item.key, sender, item.holders)
            self.handoff.acked(item.key, sender)

    def _sync(self, out: Output, peer: str, session: int, keys: list[str], want: list[int]) -> None:
        records = self.store.records
        updates = [self._update(key, records[key]) for key in keys if key in records]
        if updates or want:
            self.counters.anti_entropy_keys_sent += len(updates)
            self._send(out, [peer], SyncRecords(self.node_id, session, updates, want))

    # --- storage of versions ---------------------------------------------------------
    def _store(self, key: str, record: Record) -> None:
        previous = self.store.put(key, record)
        replaced_tombstone = previous is not None and previous.tombstone
        if record.tombstone or replaced_tombstone:
            self.tombstones.stored(key, record.tombstone, replaced_tombstone)
        self.handoff.reset(key)

    def _drop(self, out: Output, key: str) -> None:
        self.store.drop(key)
        self.tombstones.dropped(key)
        self.handoff.reset(key)
        self.queue.discard(key)
        out.purges.append(key)

    def _digest_for(self, peer: str) -> Digest:
        """The whole digest, or (sharded) one over the keys both nodes own."""
        if not self.config.sharding:
            return self.store.digest(self.owners, self.node_id)
        ring, n = self.ring(), self.config.replicas
        return self.store.digest_for(
            peer, self.membership.epoch, lambda key: ring.owners(key, n), self.node_id
        )

    # --- kept for live/kv.py until it reads through the facade -------------------------
    def get(self, key: str) -> Record | None:
        return self.view.get(key)

    def version(self, key: str) -> Record | None:
        return self.view.version(key)

    def list_keys(self, prefix: str = "", limit: int = 100, after: str = "") -> list[str]:
        return self.view.list_keys(prefix, limit, after)

    def check_key(self, key: str) -> None:
        check_key(key, self.config.max_key_bytes)

    @property
    def discarded(self) -> dict[str, Discarded]:
        return self.store.discarded

    # --- sending ---------------------------------------------------------------------
    def _replica_targets(self, key: str) -> list[str]:
        c = self.config
        return replica_targets(self.ring(), key, c.replicas, self.membership.is_alive, self.node_id)

    def _update(self, key: str, record: Record) -> Update:
        if record.tombstone:
            return Update(key, record, self.tombstones.holders_of(key))
        return Update(key, record)

    def _entries(self) -> list[MemberEntry]:
        return self.membership.gossip_entries(self.rng, self.config.member_gossip)

    def _send_acked(self, out: Output, keys_by_target: dict[str, list[str]]) -> None:
        """Send each target its keys' versions, asking it to acknowledge what it holds."""
        records, max_batch = self.store.records, self.config.max_batch
        for target, keys in keys_by_target.items():
            updates = [self._update(key, records[key]) for key in keys]
            for chunk in chunks(updates, max_batch):
                self._send(out, [target], Push(self.node_id, self._entries(), chunk, ack=True))

    def _send_grouped(self, out: Output, grouped: dict[str, list[Update]], relay: bool) -> None:
        for target, updates in grouped.items():
            for chunk in chunks(updates, self.config.max_batch):
                self._send(out, [target], Push(self.node_id, self._entries(), chunk, relay=relay))

    def _send(self, out: Output, targets: list[str], message: Message) -> None:
        if not targets:
            return
        data = encode(message)
        for target in targets:
            out.messages.append((target, data))
        self.counters.messages_sent += len(targets)
        self.counters.bytes_sent += len(data) * len(targets)
