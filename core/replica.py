"""The versions one node holds, and what it knows of who else holds them.

A ``Replica`` applies versions (a client's, through ``write``; a peer's, through
``merge``) by the LWW rule of ``core.merge``, keeps the node's hybrid logical clock above
every version it has seen, and answers acknowledgements both ways: the ``Held`` records
it sends, and those it receives (tombstone holders, handoff owners). It decides nothing
about whom to talk to: that is ``Node``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from rumordb.core import hlc
from rumordb.core.broadcast import BroadcastQueue
from rumordb.core.counters import Counters
from rumordb.core.expiry import Expiry
from rumordb.core.handoff import Handoff
from rumordb.core.merge import Outcome, decide
from rumordb.core.messages import Held, Update
from rumordb.core.output import Output
from rumordb.core.record import (
    Record,
    discarded_from,
    expired_tombstone,
    is_expired,
    version_of,
)
from rumordb.core.store import Store
from rumordb.core.tombstones import Tombstones
from rumordb.core.writes import WriteCommand, WriteStatus, expiry, new_version, refusal


class Replica:
    def __init__(
        self,
        node_id: str,
        counters: Counters,
        queue: BroadcastQueue,
        max_key_bytes: int,
        now: float,
    ) -> None:
        self.node_id = node_id
        self.store = Store()
        self.tombstones = Tombstones(node_id)
        self.handoff = Handoff(node_id)
        self.expiry = Expiry()
        self.queue = queue  # rumors: fresh versions still to be gossiped
        self.counters = counters
        self.max_key_bytes = max_key_bytes
        self.hlc = hlc.pack(int(now * 1000))
        self.widest_loaded = 0  # entries of the widest clock read from disk (core.bounds)
        self.versions_written = 0  # client versions written here (anti-entropy pacing)

    def load_all(self, records: Iterable[tuple[str, Record]]) -> None:
        """The versions read back from disk at start, in bulk (``Store.load``), each one
        looked at as it streams by: the store keeps them packed, never all decoded."""
        self.store.load(self._loading(records))

    def _loading(self, records: Iterable[tuple[str, Record]]) -> Iterator[tuple[str, Record]]:
        for key, record in records:
            if record.tombstone:
                self.tombstones.stored(key, True, False)
            elif record.expires:  # its tombstone is derived on time after a restart too
                self.expiry.track(key, record.expires)
            self.widest_loaded = max(self.widest_loaded, len(record.clock))
            self.hlc = max(self.hlc, record.hlc)
            yield key, record

    def write(
        self, command: WriteCommand, now: float, *held: Record | None
    ) -> tuple[WriteStatus, Record | None]:
        """A client write here: (status, the new version or the one that refused it).

        ``held``: the key's stored version when the caller read it already (each read
        decodes a packed record, so the write path reads it once)."""
        local = held[0] if held else self.store.records.get(command.key)
        prior = local
        now_ms = int(now * 1000)
        # (only a value with an expiry needs the clock: ``is_expired`` is false without)
        if local is not None and local.expires and is_expired(local, hlc.pack(now_ms)):
            # Decide over what every node derives at expiry; the tick stores that later.
            local = expired_tombstone(local)
        # A plain upsert (no create, delete or If-Match) is never refused: skip the call.
        if command.create or command.delete or command.context is not None or command.if_changed:
            refused = refusal(command, local)
            if refused is not None:
                return refused, local
        record = new_version(self.node_id, command, local, self.hlc, now_ms)
        self.hlc = record.hlc
        self.versions_written += 1
        self.put(command.key, record, prior)
        if local is None or local.tombstone:
            return (WriteStatus.OK if command.delete else WriteStatus.CREATED), record
        return WriteStatus.OK, record

    def upsert_many(
        self, commands: list[WriteCommand], now: float
    ) -> list[tuple[WriteStatus, Record, Record | None]]:
        """Plain upserts (``core.writes.is_plain``) in order, in one loop; ``write`` of each.

        (status, the new version, the version it replaced) per command. Keys not held
        yet are stored in bulk (``Store.put_new``) at the end; a key written twice in
        one batch sees its first version, as with one ``write`` after the other.
        """
        now_ms = int(now * 1000)
        now_hlc = hlc.pack(now_ms)
        records, node_id, stamp = self.store.records, self.node_id, self.hlc
        stored = records.keys()  # a view: membership tests in C
        fresh: dict[str, Record] = {}  # versions of keys the store does not hold yet
        done: list[tuple[WriteStatus, Record, Record | None]] = []
        new_key, ok = WriteStatus.CREATED, WriteStatus.OK
        for command in commands:
            key = command.key
            if key not in fresh and key not in stored:
                # A key nobody wrote here (most of an ingest): ``new_version`` over
                # nothing, inlined: the HLC's next tick, a clock of this node alone.
                stamp = now_hlc if now_hlc > stamp else stamp + 1
                expires = expiry(stamp, command) if command.ttl_ms or command.expires else 0
                record = Record(command.value, command.content_type, {node_id: stamp}, stamp,
                                node_id, False, expires)  # fmt: skip
                fresh[key] = record
                done.append((new_key, record, None))
                continue
            held = key not in fresh  # then the store holds it (tested above)
            local = prior = records.get(key) if held else fresh[key]
            if local is not None and local.expires and is_expired(local, now_hlc):
                local = expired_tombstone(local)
            record = new_version(node_id, command, local, stamp, now_ms)
            stamp = record.hlc
            if held:
                self.put(key, record, prior)
            else:
                fresh[key] = record
            created = local is None or local.tombstone
            done.append((new_key if created else ok, record, prior))
        self.hlc = stamp
        self.versions_written += len(done)
        if fresh:
            self._put_fresh(fresh)
        return done

    def _put_fresh(self, fresh: dict[str, Record]) -> None:
        """``put`` of versions of keys not held (values, not tombstones), in bulk."""
        self.store.put_new(fresh)
        for key, record in fresh.items():
            if record.expires:
                self.expiry.track(key, record.expires)
        if self.handoff.acks:
            for key in fresh:
                self.handoff.reset(key)

    def restore_version(
        self, out: Output, key: str, version: Record
    ) -> tuple[WriteStatus, Record | None]:
        """Merge a client-given version (a bulk import) by LWW, as a peer's update.

        (status, the version now stored): ``OK``/``CREATED`` when it was applied,
        ``UNCHANGED`` when this very version is stored, ``STALE`` when a newer one is.
        """
        local, written = self.store.records.get(key), len(out.writes)
        self.merge(out, self.node_id, [Update(key, version)], relay=False, sync=False)
        current = self.store.records.get(key)
        if len(out.writes) > written:
            created = (local is None or local.tombstone) and not version.tombstone
            return WriteStatus.CREATED if created else WriteStatus.OK, version  # as applied
        if current is not None and version_of(current) == version_of(version):
            return WriteStatus.UNCHANGED, current
        return WriteStatus.STALE, current

    def merge(
        self, out: Output, sender: str, updates: list[Update], relay: bool, sync: bool
    ) -> list[Update]:
        """Apply peer versions (checked by ``core.bounds`` first); returns the acks wanted.

        ``relay``: queue what is new as a rumor; ``sync``: from anti-entropy, whose
        tombstones are acknowledged so that the sender learns we hold them. One loop
        with its lookups hoisted: this is the hottest path of a replica.
        """
        acks: list[Update] = []
        records, purged, counters = self.store.records, self.tombstones.purged, self.counters
        writes, queue, stored = out.writes, self.queue, records.keys()
        # New values of keys not held (an ingest's push: nearly all of it) are stored in
        # bulk at the end (``Store.put_new``): what ``put`` would do for each, at once.
        fresh: dict[str, Record] = {}
        top = self.hlc
        for update in updates:
            key, incoming = update.key, update.record
            if incoming.hlc > top:
                top = incoming.hlc
            gone = purged.get(key) if purged else None
            if gone is not None and version_of(incoming) <= gone:
                # Purged because every member held it: anything older is stale. Acknowledge
                # it (as purged), so the sender drops its copy too: a member that was away
                # (left, or forgotten) during the purge comes back with such copies.
                acks.append(update)
                continue
            if key in fresh:  # the same key twice in one message: store the first now
                self._put_fresh(fresh)
                fresh = {}
            # A membership test of the keys' view (in C) first: decoding a record to
            # learn that it is absent would cost a call per key of an ingest.
            local = records.get(key) if key in stored else None
            if local is None and not incoming.tombstone and not incoming.expires:
                counters.updates_applied += 1
                fresh[key] = incoming
                writes.append((key, incoming))
                if relay:
                    queue.push(key, incoming)
                continue
            outcome = decide(local, incoming)
            if outcome is Outcome.DESCENDANT:  # a newer write of a key held: most updates
                counters.updates_applied += 1
                self.put(key, incoming, local)  # the version it replaces: not decoded again
                writes.append((key, incoming))
                if relay:
                    queue.push(key, incoming)
                if (
                    incoming.tombstone
                    and self._holds(key, incoming, sender, update.holders)
                    and sync
                ):
                    acks.append(update)  # (the holders are noted by _holds either way)
                continue
            if outcome.concurrent:
                self._discard(out, key, local if outcome is Outcome.LWW_WON else incoming)
            if outcome.applied:
                counters.updates_applied += 1
                self.put(key, incoming, local)
                out.writes.append((key, incoming))
                if relay:
                    self.queue.push(key, incoming)
            elif outcome is Outcome.STALE:
                counters.updates_stale += 1
            if incoming.tombstone and self._holds(key, incoming, sender, update.holders) and sync:
                acks.append(update)
        self.hlc = top
        if fresh:
            self._put_fresh(fresh)
        return acks

    def _discard(self, out: Output, key: str, loser: Record | None) -> None:
        """LWW decided between concurrent versions: remember and report the loser."""
        assert loser is not None, "a concurrent outcome has two versions"
        self.counters.lww_overwrites += 1
        discarded = discarded_from(loser)
        self.store.discarded[key] = discarded
        out.discards.append((key, discarded))

    def _holds(self, key: str, tombstone: Record, sender: str, holders: list[str] | None) -> bool:
        """Whether ``tombstone`` is our version of ``key``; if so, note who else holds it."""
        current = self.store.records.get(key)
        if current is None or not current.tombstone or version_of(current) != version_of(tombstone):
            return False
        self.tombstones.held_by(key, sender, holders)
        return True

    def held(self, updates: list[Update], ring_members: list[str]) -> list[Held]:
        """What we hold of ``updates``' keys now (a purged tombstone: every member does)."""
        held: list[Held] = []
        for update in updates:
            current = self.store.get(update.key)
            if current is not None:
                holders = self.tombstones.holders_of(update.key) if current.tombstone else None
                held.append(Held(update.key, current.hlc, current.origin, holders))
            elif (gone := self.tombstones.purged.get(update.key)) is not None:
                held.append(Held(update.key, gone[0], gone[1], ring_members, purged=True))
        return held

    def acknowledged(self, sender: str, held: list[Held], out: Output | None = None) -> None:
        for item in held:
            current = self.store.get(item.key)
            # A peer holding this version or anything newer can no longer lose it.
            if current is None or (item.hlc, item.origin) < version_of(current):
                continue
            if item.purged and (item.hlc, item.origin) > version_of(current) and out is not None:
                self.tombstones.remember(item.key, (item.hlc, item.origin))
                self.drop(out, item.key)  # older than a purged delete: stale everywhere
                continue
            if current.tombstone:
                self.tombstones.held_by(item.key, sender, item.holders)
            self.handoff.acked(item.key, sender)

    def purge_tombstones(
        self,
        out: Output,
        budget: int,
        required: Callable[[str], set[str]],
        is_alive: Callable[[str], bool],
    ) -> dict[str, list[str]]:
        """Drop the next window's tombstones that every required member holds.

        Returns the live members to ask about the others (key lists, by member).
        """
        plan = self.tombstones.plan(budget, required, is_alive)
        for key in plan.purge:
            self.tombstones.remember(key, version_of(self.store.records[key]))
            self.drop(out, key)
            self.counters.tombstones_purged += 1
        return plan.confirm

    def hand_off(
        self,
        out: Output,
        budget: int,
        owners_of: Callable[[str], list[str]],
        is_alive: Callable[[str], bool],
    ) -> dict[str, list[str]]:
        """Drop the next window's not-owned keys every owner holds; returns what to send."""
        plan = self.handoff.plan(list(self.store.keys()), budget, owners_of, is_alive)
        for key in plan.drop:
            self.drop(out, key)
            self.counters.handoffs_completed += 1
        return plan.send

    def expire(self, out: Output, now_hlc: int, budget: int) -> None:
        """Replace values whose expiry has come by their derived tombstones.

        Every node derives the same tombstone (``core.record.expired_tombstone``), so it
        is not gossiped: it is stored, persisted and purged like a delete's.
        """
        records = self.store.records
        for key in self.expiry.take_due(now_hlc, budget):
            record = records.get(key)
            if record is not None and is_expired(record, now_hlc):
                tombstone = expired_tombstone(record)
                self.put(key, tombstone)
                out.writes.append((key, tombstone))
                self.counters.keys_expired += 1

    def update(self, key: str) -> Update:
        """The stored version of ``key`` as sent (a tombstone with its known holders)."""
        record = self.store.records[key]
        return self.update_of(key, record)

    def update_of(self, key: str, record: Record) -> Update:
        if record.tombstone:
            return Update(key, record, self.tombstones.holders_of(key))
        return Update(key, record)

    def put(self, key: str, record: Record, *known: Record | None) -> None:
        """Store ``record`` as ``key``'s version; ``known``: the version it replaces, when
        the caller holds it (saves decoding it again)."""
        if known:
            previous = known[0]
            self.store.put_over(key, record, previous is None)
            if (
                previous is not None
                and not self.handoff.acks
                and not (
                    record.tombstone or record.expires or previous.tombstone or previous.expires
                )
            ):
                return  # a value over a value, no TTL either side (most writes): nothing else
        else:
            previous = self.store.put(key, record)
        replaced_tombstone = previous is not None and previous.tombstone
        if record.tombstone or replaced_tombstone:
            self.tombstones.stored(key, record.tombstone, replaced_tombstone)
        if record.expires or (previous is not None and previous.expires):
            self.expiry.track(key, 0 if record.tombstone else record.expires)
        if self.handoff.acks:  # checked first: the dict is empty unless ranges moved
            self.handoff.reset(key)

    def restore(self, key: str, prior: Record | None) -> None:
        """Undo a client write that was not made durable: ``prior`` is the key's version again.

        Nothing reached the disk or a peer, so nothing is output: the store goes back.
        """
        if prior is not None:
            self.put(key, prior)
            return
        self.store.drop(key)
        self.tombstones.dropped(key)
        self.handoff.reset(key)
        self.expiry.track(key, 0)

    def drop(self, out: Output, key: str) -> None:
        self.store.drop(key)
        self.tombstones.dropped(key)
        self.handoff.reset(key)
        self.expiry.track(key, 0)
        self.queue.discard(key)
        out.purges.append(key)
