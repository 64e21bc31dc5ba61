"""The RumorDB node: one replica's protocol state machine, with no I/O.

Theory of operation. A driver (``live.runner`` or ``sim.engine``) feeds the node three
kinds of input and carries out what it returns:

* client commands: ``put``, ``delete`` (returning a ``WriteResult``), ``get``, ``list_keys``;
* ``receive(data, now)``: an encoded message from a peer;
* ``tick(now)``: time passing; call it at ``next_deadline()`` or sooner.

Every call that changes state returns an ``Output``. Its contract, as in etcd's raft
``Ready``: **persist ``writes`` and ``purges`` first, then send ``messages``, then
acknowledge clients.** A write that was sent before it was durable could be lost by a
crash after peers saw it, and a restarted node might reuse its vector clock counter.

Replication has two paths. Rumor mongering: a fresh version is pushed at once to
``fanout`` peers (client writes, batched by ``flush``) and then piggybacked on gossip
rounds until sent ``retransmit_mult * ceil(log10(N + 1))`` times; when that first push
already reaches every peer (small clusters, or a key's replicas when sharded) it is
direct mail and nobody relays it. Anti-entropy: every interval the node walks its digest
tree against one random peer and both exchange only the keys that differ. Rumors make
replication fast; anti-entropy makes it certain.

With ``sharding`` on, a key lives on its ``replicas`` owners from the ring. Commands for
keys this node does not own answer ``NOT_OWNER`` with the owners, for the driver to
forward. Writes to a dead owner go to the next live node on the ring (a hint); a node
holding a key it does not own hands it to the owners and drops it only once every owner
has acknowledged that version.
"""

from __future__ import annotations

import dataclasses
import enum
import random
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rumordb.core import anti_entropy, hlc
from rumordb.core.broadcast import BroadcastQueue, retransmit_limit
from rumordb.core.context import Context
from rumordb.core.digest import Digest, fingerprint
from rumordb.core.errors import DecodeError, InvalidKey
from rumordb.core.hashing import key_hash
from rumordb.core.keys import DEFAULT_MAX_KEY_BYTES, check_key
from rumordb.core.membership import (
    MemberEntry,
    MemberInfo,
    Membership,
    MemberTable,
    Transition,
)
from rumordb.core.merge import Outcome, decide
from rumordb.core.messages import (
    DEFAULT_MAX_MESSAGE_BYTES,
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
from rumordb.core.reads import AskOwners, ListPlan, Local, ReadPlan
from rumordb.core.record import Discarded, Record, discarded_from, version_of
from rumordb.core.ring import DEFAULT_VNODES, Ring
from rumordb.core.vclock import advance, descends
from rumordb.core.vclock import merge as merge_clocks

TOMBSTONE_CONTENT_TYPE = "application/x-rumor-tombstone"
PURGED_MEMORY = 100_000  # purged tombstone versions remembered, to answer stale re-sends


@dataclass(frozen=True, slots=True)
class NodeConfig:
    fanout: int = 3
    gossip_interval_ms: int = 200
    anti_entropy_interval_ms: int = 1000
    probe_interval_ms: int = 1000
    suspicion_mult: int = 3
    dead_timeout_ms: int | None = None  # after suspicion; None = one more suspicion timeout
    retransmit_mult: int = 4
    max_batch: int = 512  # updates per gossip message
    queue_max: int = 10_000  # rumor queue bound
    sharding: bool = False
    replicas: int = 3
    vnodes: int = DEFAULT_VNODES
    sync_max_keys: int = 2_000  # records per anti-entropy step
    sync_max_entries: int = 20_000  # leaf entries per anti-entropy step
    member_gossip: int = 6  # member entries piggybacked per message (besides our own)
    max_key_bytes: int = DEFAULT_MAX_KEY_BYTES
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    maintenance_batch: int = 512  # tombstones / handed-off keys examined per interval
    jitter_timers: bool = True  # random first deadlines, so nodes do not act in lockstep

    def __post_init__(self) -> None:
        for name in (
            "fanout",
            "gossip_interval_ms",
            "anti_entropy_interval_ms",
            "probe_interval_ms",
            "suspicion_mult",
            "retransmit_mult",
            "max_batch",
            "queue_max",
            "replicas",
            "vnodes",
            "sync_max_keys",
            "sync_max_entries",
            "max_key_bytes",
            "maintenance_batch",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


class WriteStatus(enum.Enum):
    OK = "ok"
    CREATED = "created"
    EXISTS = "exists"  # create on a live key: 409
    PRECONDITION_FAILED = "precondition_failed"  # If-Match mismatch: 412
    NOT_FOUND = "not_found"  # delete of an absent key: 404
    NOT_OWNER = "not_owner"  # sharded and not an owner: forward to ``owners``


@dataclass(slots=True)
class Output:
    """What the driver must do, in this order: persist, then send; and what happened.

    ``writes`` and ``purges`` go to disk first, then ``messages`` to peers. The events
    (``transitions``: member state changes; ``discards``: concurrent versions LWW threw
    away) are for logs and metrics; nothing else tells a driver of them.
    """

    messages: list[tuple[str, bytes]] = field(default_factory=list)  # (node id, payload)
    writes: list[tuple[str, Record]] = field(default_factory=list)
    purges: list[str] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    discards: list[tuple[str, Discarded]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.messages or self.writes or self.purges or self.transitions or self.discards
        )

    def extend(self, other: Output) -> None:
        self.messages.extend(other.messages)
        self.writes.extend(other.writes)
        self.purges.extend(other.purges)
        self.transitions.extend(other.transitions)
        self.discards.extend(other.discards)


@dataclass(frozen=True, slots=True)
class WriteCommand:
    """A client write. ``key`` must have passed ``core.keys.check_key`` (the driver's job).

    ``delete``: write a tombstone (``value`` and ``content_type`` are ignored); ``create``:
    refuse if a live value exists; ``context``: the version the client read (If-Match);
    ``coordinate``: write even if this node does not own the key (a write forwarded by a
    node whose ring view differs); the version is handed to the owners later.
    """

    key: str
    value: bytes = b""
    content_type: str = "application/octet-stream"
    context: Context | None = None
    create: bool = False
    delete: bool = False
    coordinate: bool = False


@dataclass(frozen=True, slots=True)
class WriteResult:
    status: WriteStatus
    record: Record | None  # the new version, or the current one when refused
    output: Output
    owners: tuple[str, ...] = ()  # NOT_OWNER: forward to these, in order


@dataclass(slots=True)
class Counters:
    messages_sent: int = 0
    bytes_sent: int = 0
    messages_received: int = 0
    bytes_received: int = 0
    decode_errors: int = 0
    updates_applied: int = 0
    updates_stale: int = 0
    lww_overwrites: int = 0  # concurrent versions decided by LWW
    rumor_rounds: int = 0
    anti_entropy_sessions: int = 0
    anti_entropy_keys_sent: int = 0
    tombstones_purged: int = 0
    handoffs_completed: int = 0


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
        self.config = config or NodeConfig()
        self.rng = rng
        self.membership: MemberTable = membership or Membership(
            node_id,
            address,
            now,
            incarnation=incarnation,
            suspicion_mult=self.config.suspicion_mult,
            probe_interval_ms=self.config.probe_interval_ms,
            dead_timeout_ms=self.config.dead_timeout_ms,
        )
        self.records: dict[str, Record] = {}
        self.discarded: dict[str, Discarded] = {}
        self._digest = Digest()
        self._digest_stale: set[str] = set()  # keys whose digest entries may be out of date
        self.queue = BroadcastQueue(self.config.queue_max)
        self.counters = Counters()
        self._hlc = hlc.pack(int(now * 1000))
        self._urgent: dict[str, Record] = {}
        self._holders: dict[str, set[str]] = {}  # tombstone key -> members known to hold it
        self._purged: dict[str, tuple[int, str]] = {}  # key -> purged tombstone version
        self._handoff: dict[str, set[str]] = {}  # not-owned key -> owners holding its version
        self._sorted_keys: list[str] | None = None
        self._session = 0
        self._tombstone_cursor = 0
        self._handoff_cursor = 0
        if ring is not None and (membership is None or membership.detects_failures):
            raise ValueError("a shared ring needs a static membership")
        self._ring: tuple[int, Ring] | None = (0, ring) if ring is not None else None
        self._scoped: dict[str, tuple[int, Digest]] = {}
        self._dead_probe = 0
        for key, record in records:
            self._load(key, record)
        c = self.config
        jitter = self.rng.random if c.jitter_timers else (lambda: 0.0)
        self._next_gossip = now + jitter() * c.gossip_interval_ms / 1000
        self._next_probe = now + jitter() * c.probe_interval_ms / 1000
        self._next_ae = now + jitter() * c.anti_entropy_interval_ms / 1000

    # --- reading ---------------------------------------------------------------------
    @property
    def view(self) -> NodeView:
        """The read-only face drivers read state through."""
        return NodeView(self)

    def read(self, key: str, *, forwarded: bool = False, meta: bool = False) -> ReadPlan:
        """Where to answer a client read of ``key`` (see ``core.reads``).

        ``meta``: the stored version, tombstones included, with what LWW discarded.
        """
        owners = self.route(key)
        if owners is not None:
            return AskOwners(tuple(owners))
        record = self.records.get(key)
        if meta:
            return Local(record, self.discarded.get(key))
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
        keys = self.list_keys(prefix, limit, after)
        if not self.config.sharding or forwarded:
            return ListPlan(keys)
        return ListPlan(keys, tuple(self.membership.peers()))

    def get(self, key: str) -> Record | None:
        """The live version of ``key`` here, or None if absent or deleted."""
        record = self.records.get(key)
        return None if record is None or record.tombstone else record

    def version(self, key: str) -> Record | None:
        """The stored version, tombstones included."""
        return self.records.get(key)

    def list_keys(self, prefix: str = "", limit: int = 100, after: str = "") -> list[str]:
        """Live keys in order, starting with ``prefix``, strictly after ``after``."""
        if self._sorted_keys is None:
            self._sorted_keys = sorted(self.records)
        keys = self._sorted_keys
        start = bisect_right(keys, after) if after else 0
        start = max(start, bisect_left(keys, prefix))
        found: list[str] = []
        for key in keys[start:]:
            if not key.startswith(prefix) or len(found) >= limit:
                break
            if not self.records[key].tombstone:
                found.append(key)
        return found

    def key_count(self) -> tuple[int, int]:
        """(live keys, tombstones)."""
        tombstones = len(self._holders)
        return len(self.records) - tombstones, tombstones

    def owners(self, key: str) -> list[str]:
        """The key's preference list (every member when sharding is off)."""
        ring = self.ring()
        n = self.config.replicas if self.config.sharding else len(ring.members)
        return ring.owners(key, n)

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
            self._scoped.clear()
        return self._ring[1]

    def next_deadline(self) -> float:
        return min(self._next_gossip, self._next_probe, self._next_ae)

    def address_of(self, member_id: str) -> str | None:
        return self.membership.address(member_id)

    # --- client commands -------------------------------------------------------------
    def write(self, command: WriteCommand, now: float) -> WriteResult:
        """Apply a client write; its key was checked by the driver (``check_key``)."""
        key = command.key
        owners = None if command.coordinate else self.route(key)
        if owners is not None:
            return WriteResult(WriteStatus.NOT_OWNER, None, Output(), tuple(owners))
        local = self.records.get(key)
        context = command.context
        if command.delete:
            if local is None or local.tombstone:
                return WriteResult(WriteStatus.NOT_FOUND, local, Output())
        elif command.create and local is not None and not local.tombstone:
            return WriteResult(WriteStatus.EXISTS, local, Output())
        if context is not None and local is not None and not descends(context.clock, local.clock):
            return WriteResult(WriteStatus.PRECONDITION_FAILED, local, Output())
        if command.delete:
            record = self._new_version(key, local, b"", TOMBSTONE_CONTENT_TYPE, True, now, context)
            return WriteResult(WriteStatus.OK, record, self._write_local(key, record))
        record = self._new_version(
            key, local, command.value, command.content_type, False, now, context
        )
        status = WriteStatus.CREATED if local is None or local.tombstone else WriteStatus.OK
        return WriteResult(status, record, self._write_local(key, record))

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
        """Write a new version of ``key`` (checks the key; see ``write``)."""
        self.check_key(key)
        command = WriteCommand(key, value, content_type, context, create, coordinate=coordinate)
        return self.write(command, now)

    def delete(
        self, key: str, now: float, context: Context | None = None, coordinate: bool = False
    ) -> WriteResult:
        """Write a tombstone for ``key`` (checks the key; see ``write``)."""
        self.check_key(key)
        return self.write(
            WriteCommand(key, context=context, delete=True, coordinate=coordinate), now
        )

    def check_key(self, key: str) -> None:
        check_key(key, self.config.max_key_bytes)

    def _new_version(
        self,
        key: str,
        local: Record | None,
        value: bytes,
        content_type: str,
        tombstone: bool,
        now: float,
        context: Context | None,
    ) -> Record:
        clock = local.clock if local is not None else {}
        floor = local.hlc if local is not None else 0
        if context is not None:
            clock = merge_clocks(clock, context.clock)
            floor = max(floor, context.hlc)
        # The new HLC exceeds everything this version descends from (see core.merge).
        self._hlc = hlc.send(max(self._hlc, floor), int(now * 1000))
        # Our clock entry becomes the write's HLC rather than a +1 counter: HLCs never
        # repeat, so a key re-created after its tombstone was purged, or written by a node
        # that lost its memory, can never reuse an entry that an older version carries.
        clock = advance(clock, self.node_id, self._hlc)
        return Record(value, content_type, clock, self._hlc, self.node_id, tombstone)

    def _write_local(self, key: str, record: Record) -> Output:
        self._store(key, record)
        self._urgent[key] = record
        return Output(writes=[(key, record)])

    # --- time ------------------------------------------------------------------------
    def flush(self, now: float) -> Output:
        """Push the client writes accepted since the last flush, batched per peer.

        Call it after persisting those writes; one flush per batch of concurrent requests
        turns N writes into one message per peer.
        """
        out = Output()
        if not self._urgent:
            return out
        urgent, self._urgent = self._urgent, {}
        if self.config.sharding:
            # Direct mail to the key's replicas: they are all the nodes that need it.
            by_target: dict[str, list[Update]] = {}
            for key, record in urgent.items():
                for target in self._replica_targets(key):
                    by_target.setdefault(target, []).append(self._update(key, record))
            for target, updates in by_target.items():
                for chunk in _chunks(updates, self.config.max_batch):
                    self._send(
                        out, [target], Push(self.node_id, self._entries(), chunk, relay=False)
                    )
            return out
        targets = self.membership.sample_peers(self.rng, self.config.fanout)
        # When the push reaches every peer (fanout >= N - 1), it is direct mail (Demers et
        # al.): nobody needs to spread it further, anti-entropy covers a lost message.
        # Otherwise it is a rumor: queued here, and relayed by whoever receives it.
        relay = len(targets) < len(self.membership.peers())
        updates = [self._update(key, record) for key, record in urgent.items()]
        if relay:
            for key, record in urgent.items():
                self.queue.push(key, record, transmits=len(targets))
        for chunk in _chunks(updates, self.config.max_batch):
            self._send(out, targets, Push(self.node_id, self._entries(), chunk, relay=relay))
        return out

    def tick(self, now: float) -> Output:
        """Heartbeats, rumor rounds, anti-entropy and maintenance that are due by ``now``.

        Client writes are not pushed here but by ``flush``, which the driver calls once the
        writes are durable (persist, then send).
        """
        out = Output()
        c = self.config
        if now >= self._next_probe:
            self._next_probe = now + c.probe_interval_ms / 1000
            self._probe(out, now)
        if now >= self._next_gossip:
            self._next_gossip = now + c.gossip_interval_ms / 1000
            self._gossip_round(out)
        if now >= self._next_ae:
            self._next_ae = now + c.anti_entropy_interval_ms / 1000
            self._start_anti_entropy(out)
            self._maintain(out)
        self._take_transitions(out)
        return out

    def _probe(self, out: Output, now: float) -> None:
        if not self.membership.detects_failures:
            return
        self.membership.beat()
        self.membership.expire(now)
        targets = self.membership.sample_peers(self.rng, self.config.fanout)
        dead = self.membership.dead_peers()
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
            by_target: dict[str, list[Update]] = {}
            for item in self.queue.take(self.config.max_batch, limit):
                for target in self._replica_targets(item.key):
                    by_target.setdefault(target, []).append(self._update(item.key, item.record))
            for target, updates in by_target.items():
                self._send(out, [target], Push(self.node_id, self._entries(), updates))
            return
        for target in self.membership.sample_peers(self.rng, self.config.fanout):
            items = self.queue.take(self.config.max_batch, limit)
            if not items:
                break
            updates = [self._update(item.key, item.record) for item in items]
            self._send(out, [target], Push(self.node_id, self._entries(), updates))

    def _start_anti_entropy(self, out: Output) -> None:
        sample = self.membership.sample_peers(self.rng, 1)
        if not sample:
            return
        peer = sample[0]
        self._session += 1
        self.counters.anti_entropy_sessions += 1
        self._send(
            out, [peer], anti_entropy.start(self.node_id, self._session, self._digest_for(peer))
        )

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
            self._on_ack(out, message.sender, message.held)
        elif isinstance(message, DigestStep):
            reply = anti_entropy.on_digest(
                self.node_id,
                message,
                self._digest_for(message.sender),
                self.config.sync_max_entries,
                self.rng,
            )
            if reply is not None:
                self._send(out, [message.sender], reply)
        elif isinstance(message, LeafEntries):
            self._on_leaf_entries(out, message)
        elif isinstance(message, SyncRecords):
            self._on_updates(out, message.sender, message.updates, relay=False, sync=True)
            if message.want:
                self._send_wanted(out, message)
        self._take_transitions(out)
        return out

    def _take_transitions(self, out: Output) -> None:
        made = self.membership.take_transitions()
        if made:
            out.transitions.extend(made)

    def join(self, member_id: str, address: str, incarnation: int, now: float) -> None:
        """A peer announced itself (discovery or a seed list)."""
        self.membership.join(member_id, address, incarnation, now)

    def _observe(self, entries: list[MemberEntry], now: float) -> None:
        for entry in entries:
            self.membership.observe(entry, now)

    def _on_updates(
        self, out: Output, sender: str, updates: list[Update], relay: bool, sync: bool = False
    ) -> None:
        """Merge updates; ``relay``: keep spreading what is new; ``sync``: from anti-entropy."""
        tombstone_acks: list[Update] = []
        for update in updates:
            key, incoming = update.key, update.record
            try:
                check_key(key, self.config.max_key_bytes)
            except InvalidKey:
                self.counters.decode_errors += 1
                continue
            self._hlc = hlc.observe(self._hlc, incoming.hlc)
            purged = self._purged.get(key)
            if purged is not None and version_of(incoming) <= purged:
                # We dropped this tombstone because every member held it; anything older
                # than it is stale. Tell the sender, so it can drop its copy too.
                if incoming.tombstone:
                    tombstone_acks.append(update)
                continue
            local = self.records.get(key)
            outcome = decide(local, incoming)
            if outcome.concurrent:
                self.counters.lww_overwrites += 1
                loser = local if outcome is Outcome.LWW_WON else incoming
                discarded = discarded_from(loser)  # type: ignore[arg-type]
                self.discarded[key] = discarded
                out.discards.append((key, discarded))
            if outcome.applied:
                self.counters.updates_applied += 1
                self._store(key, incoming)
                out.writes.append((key, incoming))
                if relay:
                    self.queue.push(key, incoming)
            elif outcome is Outcome.STALE:
                self.counters.updates_stale += 1
            current = self.records.get(key)
            if (
                current is not None
                and current.tombstone
                and version_of(current) == version_of(incoming)
            ):
                holders = self._holders.setdefault(key, {self.node_id})
                holders.add(sender)
                holders.update(update.holders or ())
                if sync:
                    tombstone_acks.append(update)
        if tombstone_acks:
            self._ack(out, sender, tombstone_acks)

    def _ack(self, out: Output, sender: str, updates: list[Update]) -> None:
        held: list[Held] = []
        for update in updates:
            current = self.records.get(update.key)
            if current is None:
                purged = self._purged.get(update.key)
                if purged is not None:
                    members = self.membership.ring_members()
                    held.append(Held(update.key, purged[0], purged[1], members))
                continue
            holders = sorted(self._holders[update.key]) if current.tombstone else None
            held.append(Held(update.key, current.hlc, current.origin, holders))
        if held:
            self._send(out, [sender], PushAck(self.node_id, self._entries(), held))

    def _on_ack(self, out: Output, sender: str, held: list[Held]) -> None:
        for item in held:
            current = self.records.get(item.key)
            if current is None:
                continue
            # A peer holding the tombstone or anything newer can no longer resurrect the key.
            if current.tombstone and (item.hlc, item.origin) >= version_of(current):
                holders = self._holders.setdefault(item.key, {self.node_id})
                holders.add(sender)
                holders.update(item.holders or ())
            acks = self._handoff.get(item.key)
            if acks is not None and (item.hlc, item.origin) >= version_of(current):
                acks.add(sender)

    def _on_leaf_entries(self, out: Output, message: LeafEntries) -> None:
        digest = self._digest_for(message.sender)
        keys, want = anti_entropy.on_leaf_entries(message, digest, self.config.sync_max_keys)
        updates = [self._update(key, self.records[key]) for key in keys if key in self.records]
        if updates or want:
            self.counters.anti_entropy_keys_sent += len(updates)
            self._send(
                out, [message.sender], SyncRecords(self.node_id, message.session, updates, want)
            )

    def _send_wanted(self, out: Output, message: SyncRecords) -> None:
        digest = self._digest_for(message.sender)
        updates: list[Update] = []
        for khash in message.want[: self.config.sync_max_keys]:
            key = digest.key_of(khash)
            if key is not None and key in self.records:
                updates.append(self._update(key, self.records[key]))
        if updates:
            self.counters.anti_entropy_keys_sent += len(updates)
            self._send(
                out, [message.sender], SyncRecords(self.node_id, message.session, updates, [])
            )

    # --- maintenance: tombstone purge and handoff ------------------------------------
    def _maintain(self, out: Output) -> None:
        if not self.membership.detects_failures and not self._holders:
            return
        budget = self.config.maintenance_batch
        members = set(self.membership.ring_members())
        confirm: dict[str, list[Update]] = {}
        for key in self._window(list(self._holders), budget, "_tombstone_cursor"):
            required = set(self.owners(key)) if self.config.sharding else members
            holders = self._holders[key]
            if required <= holders:
                self._purged[key] = version_of(self.records[key])
                if len(self._purged) > PURGED_MEMORY:
                    del self._purged[next(iter(self._purged))]
                self._drop(out, key)
                self.counters.tombstones_purged += 1
                continue
            # Ask the live members not yet known to hold it; their acks fill ``holders``.
            for member in sorted(required - holders):
                if self.membership.is_alive(member):
                    confirm.setdefault(member, []).append(self._update(key, self.records[key]))
        for target, updates in confirm.items():
            for chunk in _chunks(updates, self.config.max_batch):
                self._send(out, [target], Push(self.node_id, self._entries(), chunk, ack=True))
        if self.config.sharding:
            self._hand_off(out, budget)

    def _hand_off(self, out: Output, budget: int) -> None:
        """Send keys this node does not own to their owners; drop them once all hold them."""
        batch = self._window(list(self.records), budget, "_handoff_cursor")
        by_target: dict[str, list[Update]] = {}
        for key in batch:
            owners = self.owners(key)
            if self.node_id in owners:
                self._handoff.pop(key, None)
                continue
            acks = self._handoff.setdefault(key, set())
            if set(owners) <= acks:
                self._drop(out, key)
                self.counters.handoffs_completed += 1
                continue
            for owner in owners:
                if owner not in acks and self.membership.is_alive(owner):
                    by_target.setdefault(owner, []).append(self._update(key, self.records[key]))
        for target, updates in by_target.items():
            for chunk in _chunks(updates, self.config.max_batch):
                self._send(out, [target], Push(self.node_id, self._entries(), chunk, ack=True))

    def _window(self, keys: list[str], budget: int, cursor: str) -> list[str]:
        """The next ``budget`` keys after the saved cursor, wrapping: a bounded round robin."""
        if not keys:
            return []
        start = getattr(self, cursor) % len(keys)
        batch = keys[start : start + budget]
        setattr(self, cursor, start + len(batch))
        return batch

    # --- storage of versions ---------------------------------------------------------
    def _load(self, key: str, record: Record) -> None:
        self._store(key, record)
        self._hlc = max(self._hlc, record.hlc)

    def _store(self, key: str, record: Record) -> None:
        previous = self.records.get(key)
        if previous is None and self._sorted_keys is not None:
            insort(self._sorted_keys, key)
        self.records[key] = record
        self._digest_stale.add(key)
        if record.tombstone:
            self._holders[key] = {self.node_id}
        elif previous is not None and previous.tombstone:
            self._holders.pop(key, None)
        self._handoff.pop(key, None)

    def _drop(self, out: Output, key: str) -> None:
        self.records.pop(key, None)
        self._holders.pop(key, None)
        self._handoff.pop(key, None)
        self.queue.discard(key)
        if self._sorted_keys is not None:
            index = bisect_left(self._sorted_keys, key)
            if index < len(self._sorted_keys) and self._sorted_keys[index] == key:
                del self._sorted_keys[index]
        self._digest_stale.add(key)
        out.purges.append(key)

    # --- digests -----------------------------------------------------------------------
    @property
    def digest(self) -> Digest:
        """The digest tree over every key this node holds, brought up to date."""
        self._refresh_digests()
        return self._digest

    def _refresh_digests(self) -> None:
        """Fold the keys stored or dropped since the last read into the digest trees.

        Lazily, because a digest is read once per anti-entropy step while keys change on
        every write: a key written many times between two reads is hashed once, and the
        write path pays a set insertion instead of a tree update (measured: a third of a
        replica's CPU per replicated write went to digest updates).
        """
        stale = self._digest_stale
        if not stale:
            return
        self._digest_stale = set()
        digest, records, scoped = self._digest, self.records, self._scoped
        for key in stale:
            khash = key_hash(key)
            record = records.get(key)
            if record is None:
                digest.remove(key, khash)
                for _, peer_digest in scoped.values():
                    peer_digest.remove(key, khash)
                continue
            fp = fingerprint(record.hlc, record.origin, record.tombstone)
            digest.set(key, fp, khash)
            if scoped:
                owners = self.owners(key)
                if self.node_id in owners:
                    for peer, (_, peer_digest) in scoped.items():
                        if peer in owners:
                            peer_digest.set(key, fp, khash)

    def _digest_for(self, peer: str) -> Digest:
        """The whole digest, or (sharded) one over the keys both nodes own."""
        self._refresh_digests()
        if not self.config.sharding:
            return self._digest
        ring = self.ring()
        epoch = self.membership.epoch
        cached = self._scoped.get(peer)
        if cached is not None and cached[0] == epoch:
            return cached[1]
        digest = Digest()
        n = self.config.replicas
        for key, record in self.records.items():
            owners = ring.owners(key, n)
            if self.node_id in owners and peer in owners:
                digest.set(key, fingerprint(record.hlc, record.origin, record.tombstone))
        self._scoped[peer] = (epoch, digest)
        return digest

    # --- sending ---------------------------------------------------------------------
    def _replica_targets(self, key: str) -> list[str]:
        """The other members of the key's effective preference list.

        That is the live owners, plus, for each dead owner, the next live node on the ring
        (a stand-in holding a hint). Every node computes the same list, so a stand-in does
        not recruit yet another stand-in.
        """
        ring = self.ring()
        alive = self.membership.is_alive
        owners = ring.owners(key, self.config.replicas)
        chosen = [owner for owner in owners if alive(owner)]
        missing = len(owners) - len(chosen)
        if missing:
            for member in ring.walk(key):
                if member not in owners and alive(member):
                    chosen.append(member)
                    missing -= 1
                    if not missing:
                        break
        return [member for member in chosen if member != self.node_id]

    def _update(self, key: str, record: Record) -> Update:
        if record.tombstone:
            return Update(key, record, sorted(self._holders.get(key, {self.node_id})))
        return Update(key, record)

    def _entries(self) -> list[MemberEntry]:
        return self.membership.gossip_entries(self.rng, self.config.member_gossip)

    def _send(self, out: Output, targets: list[str], message: Message) -> None:
        if not targets:
            return
        data = encode(message)
        for target in targets:
            out.messages.append((target, data))
        self.counters.messages_sent += len(targets)
        self.counters.bytes_sent += len(data) * len(targets)


class NodeView:
    """A read-only view of one node's state: the only way drivers read it."""

    __slots__ = ("_node",)

    def __init__(self, node: Node) -> None:
        self._node = node

    @property
    def node_id(self) -> str:
        return self._node.node_id

    @property
    def incarnation(self) -> int:
        """This node's own incarnation (a refutation raises it: persist it)."""
        return self._node.membership.incarnation

    def version(self, key: str) -> Record | None:
        """The stored version, tombstones included."""
        return self._node.records.get(key)

    def discarded(self, key: str) -> Discarded | None:
        return self._node.discarded.get(key)

    def key_count(self) -> tuple[int, int]:
        """(live keys, tombstones)."""
        return self._node.key_count()

    def items(self) -> Iterable[tuple[str, Record]]:
        """Every stored (key, version), tombstones included."""
        return self._node.records.items()

    def records(self) -> Mapping[str, Record]:
        """The stored versions, read-only by type (no copy: whole-cluster checks)."""
        return self._node.records

    def members(self) -> list[MemberInfo]:
        return self._node.membership.members()

    def me(self) -> MemberInfo:
        """This node's own member entry (incarnation, heartbeat)."""
        me = self._node.membership.member_info(self._node.node_id)
        assert me is not None, "a member table always holds its own node"
        return me

    def peers(self) -> list[str]:
        """Peers worth talking to: alive or suspect."""
        return list(self._node.membership.peers())

    def is_alive(self, member_id: str) -> bool:
        return self._node.membership.is_alive(member_id)

    def address(self, member_id: str) -> str | None:
        return self._node.membership.address(member_id)

    def owners(self, key: str) -> list[str]:
        return self._node.owners(key)

    def ownership(self) -> dict[str, float]:
        """Each ring member's share of the key space."""
        return self._node.ring().ownership()

    def queue_length(self) -> int:
        """Rumors still queued for retransmission."""
        return len(self._node.queue)

    def counters(self) -> Counters:
        """A snapshot of the node's counters (totals since it started)."""
        return dataclasses.replace(self._node.counters)

    def next_deadline(self) -> float:
        return self._node.next_deadline()


def _chunks(items: list[Update], size: int) -> list[list[Update]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
