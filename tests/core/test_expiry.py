"""TTL: the expiry index, the tombstone every node derives, and a cluster that expires."""

import msgspec

from rumordb.core import hlc
from rumordb.core.expiry import REBUILD_SLACK, Expiry
from rumordb.core.merge import Outcome, decide, merge
from rumordb.core.record import (
    MAX_TTL_S,
    Record,
    expired_tombstone,
    expires_at,
    is_expired,
    valid_expiry,
    version_of,
)
from rumordb.core.writes import WriteCommand, WriteStatus
from tests.core.harness import Cluster

T0 = hlc.pack(1_000)


def ttl_record(ttl_ms: int, value: bytes = b"v", origin: str = "a") -> Record:
    return Record(value, "text/plain", {origin: T0}, T0, origin, False, expires_at(T0, ttl_ms))


def test_expiry_takes_only_due_keys_and_skips_overwritten_entries() -> None:
    expiry = Expiry()
    expiry.track("a", hlc.pack(10))
    expiry.track("b", hlc.pack(20))
    expiry.track("a", hlc.pack(30))  # overwritten: its first instant is stale
    assert expiry.take_due(hlc.pack(25), 10) == ["b"]
    assert expiry.take_due(hlc.pack(30), 10) == ["a"]
    assert len(expiry) == 0


def test_expiry_heap_stays_bounded_when_one_key_is_rewritten_often() -> None:
    expiry = Expiry()
    for i in range(10 * REBUILD_SLACK):
        expiry.track("k", hlc.pack(i + 1))
    assert len(expiry._heap) <= 2 * len(expiry) + REBUILD_SLACK + 1
    assert expiry.take_due(hlc.pack(10 * REBUILD_SLACK), 5) == ["k"]


def test_an_expired_value_becomes_the_same_tombstone_wherever_it_is_derived() -> None:
    record = ttl_record(1_000)
    assert not is_expired(record, record.expires - 1) and is_expired(record, record.expires)
    one, other = expired_tombstone(record), expired_tombstone(record)
    assert one == other and one.tombstone and one.value == b""
    assert version_of(one) == version_of(record)
    assert decide(record, one) is Outcome.DESCENDANT, "the tombstone follows, no conflict"
    assert decide(one, record) is Outcome.STALE
    assert merge(record, one) == one == merge(one, record)


def test_a_write_that_follows_the_value_beats_its_expiry_tombstone() -> None:
    record = ttl_record(60_000)
    later = Record(b"w", "text/plain", {"a": T0, "b": T0 + 5}, T0 + 5, "b")
    assert decide(expired_tombstone(record), later) is Outcome.DESCENDANT


def test_an_expiry_must_follow_the_write_and_stay_within_the_bound() -> None:
    assert valid_expiry(ttl_record(1))
    assert valid_expiry(ttl_record(MAX_TTL_S * 1000))
    assert not valid_expiry(ttl_record(MAX_TTL_S * 1000 + 1))
    assert not valid_expiry(Record(b"", "x", {}, T0, "a", False, T0))


class _OldRecord(msgspec.Struct, frozen=True, array_like=True):
    """The record as the previous version of the protocol encoded it."""

    value: bytes
    content_type: str
    clock: dict[str, int]
    hlc: int
    origin: str
    tombstone: bool = False


def test_records_stay_decodable_both_ways_across_the_new_field() -> None:
    old_bytes = msgspec.msgpack.encode(_OldRecord(b"v", "t", {"a": 1}, 5, "a"))
    assert msgspec.msgpack.decode(old_bytes, type=Record).expires == 0
    new = msgspec.msgpack.encode(ttl_record(1_000))
    assert msgspec.msgpack.decode(new, type=_OldRecord).value == b"v"


def _put_ttl(cluster: Cluster, nid: str, key: str, ttl_ms: int) -> Record:
    node = cluster.nodes[nid]
    result = node.write(WriteCommand(key, b"soon gone", "text/plain", ttl_ms=ttl_ms), cluster.now)
    assert result.status is WriteStatus.CREATED and result.record is not None
    cluster.send(nid, result.output)
    cluster.send(nid, node.flush(cluster.now))
    return result.record


def test_a_ttl_key_reads_absent_everywhere_and_its_tombstone_is_purged() -> None:
    cluster = Cluster(3, seed=7)
    record = _put_ttl(cluster, "n1", "k", 1_000)
    cluster.run(0.5)
    assert all(n.read("k").record == record for n in cluster.nodes.values())  # type: ignore[union-attr]
    assert all(n.plan_list("").keys == ["k"] for n in cluster.nodes.values())
    cluster.run(0.6)  # past the expiry instant
    for node in cluster.nodes.values():
        assert node.read("k").record is None  # type: ignore[union-attr]
        assert node.plan_list("").keys == []
        assert node.view.counters().keys_expired == 1
    cluster.run(10.0)
    assert all(n.view.version("k") is None for n in cluster.nodes.values()), "purged like a delete"
    assert all(n.view.counters().tombstones_purged == 1 for n in cluster.nodes.values())


def test_an_overwrite_before_expiry_survives_a_node_that_expired_the_old_value() -> None:
    cluster = Cluster(3, seed=3)
    _put_ttl(cluster, "n1", "k", 1_000)
    cluster.run(0.5)
    cluster.partition(["n1", "n2"], ["n3"])
    cluster.put("n1", "k", b"kept")  # no TTL: n3 does not see it and expires the old one
    cluster.run(1.0)
    assert cluster.nodes["n3"].read("k").record is None  # type: ignore[union-attr]
    cluster.heal()
    cluster.run(10.0)
    for node in cluster.nodes.values():
        assert node.read("k").record.value == b"kept"  # type: ignore[union-attr]


def test_a_write_over_an_expired_value_creates_the_key_again() -> None:
    cluster = Cluster(1, seed=1)
    _put_ttl(cluster, "n1", "k", 100)
    cluster.now += 0.2  # expired, and not yet ticked
    node = cluster.nodes["n1"]
    assert node.write(WriteCommand("k", delete=True), cluster.now).status is WriteStatus.NOT_FOUND
    created = node.write(WriteCommand("k", b"again", create=True), cluster.now)
    assert created.status is WriteStatus.CREATED
