"""The bulk paths equal the one-at-a-time ones: ``Node.write_batch`` and a many-record merge.

A batch of client writes and a push of many records take loops that store keys not held
yet in bulk (``Store.put_new``); whatever the mix of new keys, overwrites, tombstones,
TTLs and repeated keys, the state they leave (records, key index, digest, tombstone and
expiry bookkeeping, the HLC) and what they output must be what the per-item paths give.
"""

from __future__ import annotations

import random
from functools import reduce

from hypothesis import given, settings
from hypothesis import strategies as st

from rumordb.core import Node, Record, WriteCommand, WriteStatus
from rumordb.core.broadcast import BroadcastQueue
from rumordb.core.context import Context
from rumordb.core.counters import Counters
from rumordb.core.digest import Digest, fingerprint
from rumordb.core.hlc import pack
from rumordb.core.merge import merge
from rumordb.core.messages import Update, decode
from rumordb.core.output import Output
from rumordb.core.record import expires_at
from rumordb.core.replica import Replica

KEYS = ("a", "b", "c", "d", "e")
ORIGINS = ("p", "q", "r")


@st.composite
def versions(draw: st.DrawFn) -> Update:
    """A peer's version of one of a few keys: values, tombstones, TTLs, merged clocks."""
    key = draw(st.sampled_from(KEYS))
    origin = draw(st.sampled_from(ORIGINS))
    stamp = pack(draw(st.integers(1_000, 1_020)), draw(st.integers(0, 2)))
    clock = {origin: stamp}
    for other in draw(st.lists(st.sampled_from(ORIGINS), max_size=2)):
        clock.setdefault(other, pack(draw(st.integers(1_000, 1_020))))
    tombstone = draw(st.booleans())
    expires = 0 if tombstone or not draw(st.booleans()) else expires_at(stamp, 5_000)
    value = b"" if tombstone else draw(st.sampled_from((b"x", b"y")))
    return Update(key, Record(value, "t", clock, stamp, origin, tombstone, expires))


def replica(preload: list[Update]) -> Replica:
    r = Replica("me", Counters(), BroadcastQueue(1000), max_key_bytes=64, now=1.0)
    for update in preload:
        r.merge(Output(), "p", [update], relay=False, sync=False)
    return r


def state(r: Replica) -> tuple[object, ...]:
    s = r.store
    expiring = sorted(r.expiry.take_due(2**62, 1000))
    digest = s.digest(lambda _: ["me"], "me")
    return (dict(s.records), s.list_live("", 100, "", reserved=True), digest.root, r.hlc,
            dict(r.tombstones.holders), expiring, len(r.queue))  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    st.lists(versions(), max_size=6),
    st.lists(versions(), min_size=1, max_size=12),
    st.booleans(),
)
def test_one_message_of_many_records_equals_merging_them_one_by_one(
    preload: list[Update], message: list[Update], sync: bool
) -> None:
    bulk, single = replica(preload), replica(preload)
    bulk_out, single_out = Output(), Output()
    bulk_acks = bulk.merge(bulk_out, "q", message, relay=True, sync=sync)
    single_acks = []
    for update in message:
        single_acks += single.merge(single_out, "q", [update], relay=True, sync=sync)
    assert state(bulk) == state(single)
    assert bulk_out.writes == single_out.writes and bulk_out.discards == single_out.discards
    assert bulk_acks == single_acks
    # ... and both are the LWW fold of every version of each key (core.merge).
    for key in KEYS:
        seen = [u.record for u in (*preload, *message) if u.key == key]
        if seen:
            assert bulk.store.get(key) == reduce(merge, seen[1:], seen[0])


def test_the_bulk_merge_keeps_the_digest_equal_to_a_fresh_build() -> None:
    updates = [
        Update(f"k{i}", Record(b"v", "t", {"p": pack(1000 + i)}, pack(1000 + i), "p"))
        for i in range(500)
    ]
    r = replica([])
    r.merge(Output(), "p", updates, relay=False, sync=False)
    fresh = Digest.of(
        (key, fingerprint(rec.hlc, rec.origin, rec.tombstone)) for key, rec in r.store.items()
    )
    assert r.store.digest(lambda _: ["me"], "me").root == fresh.root
    assert r.store.list_live("", 1000, "") == sorted(u.key for u in updates)


@st.composite
def commands(draw: st.DrawFn) -> WriteCommand:
    key = draw(st.sampled_from(KEYS))
    kind = draw(st.sampled_from(("put", "put", "put", "ttl", "delete", "create", "if_changed")))
    value = draw(st.sampled_from((b"x", b"y")))
    if kind == "delete":
        return WriteCommand(key, delete=True)
    return WriteCommand(key, value, "t", create=kind == "create", if_changed=kind == "if_changed",
                        ttl_ms=2_000 if kind == "ttl" else 0)  # fmt: skip


def cluster_node() -> Node:
    n = Node("me", "mem://me", rng=random.Random(7), now=100.0)
    n.join("peer", "mem://peer", 0, 100.0)
    return n


@settings(max_examples=150, deadline=None)
@given(st.lists(commands(), max_size=5), st.lists(commands(), min_size=1, max_size=12))
def test_a_write_batch_equals_the_same_writes_one_after_the_other(
    before: list[WriteCommand], batch: list[WriteCommand]
) -> None:
    one, many = cluster_node(), cluster_node()
    for n in (one, many):
        n.write_batch(before, 100.0)
        n.flush(100.0)
    singles = [one.write(command, 101.0) for command in batch]
    written = many.write_batch(batch, 101.0)
    assert [(r.status, r.record) for r in singles] == [
        (r.status, r.record) for r in written.results
    ]
    assert [w for r in singles for w in r.output.writes] == written.output.writes
    assert all(r.output is written.output for r in written.results)
    assert state(one.replica) == state(many.replica)
    assert one.flush(101.0).messages == many.flush(101.0).messages


@given(st.lists(commands(), max_size=5), st.lists(commands(), min_size=1, max_size=12))
@settings(max_examples=100, deadline=None)
def test_an_aborted_write_batch_leaves_the_store_as_it_was(
    before: list[WriteCommand], batch: list[WriteCommand]
) -> None:
    n = cluster_node()
    n.write_batch(before, 100.0)
    n.flush(100.0)
    kept = dict(n.store.records)
    n.write_batch(batch, 101.0)
    n.abort()
    assert dict(n.store.records) == kept
    assert n.store.list_live("", 100, "") == sorted(k for k, r in kept.items() if not r.tombstone)
    assert not n.flush(101.0).messages


def test_a_batch_is_pushed_to_each_peer_as_one_message_with_every_item() -> None:
    n = cluster_node()
    batch = [WriteCommand(f"k{i:03d}", b"v", "t") for i in range(300)]
    written = n.write_batch(batch, 101.0)
    assert {r.status for r in written.results} == {WriteStatus.CREATED}
    messages = n.flush(101.0).messages
    assert [target for target, _ in messages] == ["peer"]
    push = decode(messages[0][1])
    assert [u.key for u in push.updates] == [c.key for c in batch]  # type: ignore[union-attr]


def test_conditional_items_in_a_batch_are_refused_like_single_writes() -> None:
    n = cluster_node()
    first = n.write_batch([WriteCommand("k", b"1", "t")], 101.0).results[0]
    assert first.record is not None
    stale = Context([("other", 5)], first.record.hlc)
    written = n.write_batch(
        [
            WriteCommand("k", b"2", "t", create=True),
            WriteCommand("k", b"3", "t", context=stale),
            WriteCommand("gone", delete=True),
            WriteCommand("k", b"4", "t"),
        ],
        101.1,
    )
    assert [r.status for r in written.results] == [
        WriteStatus.EXISTS,
        WriteStatus.PRECONDITION_FAILED,
        WriteStatus.NOT_FOUND,
        WriteStatus.OK,
    ]
    assert [key for key, _ in written.output.writes] == ["k"]
