"""The replica: client writes, LWW merges of peer versions, and acknowledgements."""

from rumordb.core.broadcast import BroadcastQueue
from rumordb.core.counters import Counters
from rumordb.core.hlc import pack
from rumordb.core.messages import Held, Update
from rumordb.core.output import Output
from rumordb.core.record import Record
from rumordb.core.replica import Replica
from rumordb.core.writes import WriteCommand, WriteStatus


def replica() -> Replica:
    return Replica("me", Counters(), BroadcastQueue(100), max_key_bytes=16, now=1.0)


def peer_version(ms: int, origin: str = "b", tombstone: bool = False) -> Record:
    return Record(b"" if tombstone else b"p", "t", {origin: pack(ms)}, pack(ms), origin, tombstone)


def test_a_client_write_gets_an_hlc_above_everything_seen() -> None:
    r = replica()
    r.merge(Output(), "b", [Update("k", peer_version(50_000))], relay=False, sync=False)
    status, record = r.write(WriteCommand("k", b"mine"), now=1.0)
    assert status is WriteStatus.OK and record is not None and record.hlc > pack(50_000)


def test_merge_applies_new_versions_relays_them_and_reports_lww_discards() -> None:
    r = replica()
    r.write(WriteCommand("k", b"mine"), now=1.0)
    out = Output()
    r.merge(out, "b", [Update("k", peer_version(9_000))], relay=True, sync=False)
    assert [k for k, _ in out.writes] == ["k"] and [k for k, _ in out.discards] == ["k"]
    assert len(r.queue) == 1 and r.counters.lww_overwrites == 1


def test_restore_undoes_a_write_to_the_version_before_it() -> None:
    r = replica()
    before = r.write(WriteCommand("k", b"old"), now=1.0)[1]
    r.write(WriteCommand("k", b"new"), now=1.1)
    r.restore("k", before)
    assert r.store.get("k") == before
    r.write(WriteCommand("gone", delete=False), now=1.2)
    r.write(WriteCommand("t", b"x"), now=1.2)
    r.write(WriteCommand("t", delete=True), now=1.3)
    assert len(r.tombstones) == 1
    r.restore("gone", None)
    r.restore("t", None)
    assert r.store.get("gone") is None and r.store.get("t") is None
    assert len(r.tombstones) == 0, "a restored-away tombstone is no longer counted"


def test_tombstones_from_anti_entropy_are_acknowledged_with_their_holders() -> None:
    r = replica()
    tombstone = Update("k", peer_version(5, tombstone=True), ["b", "c"])
    acks = r.merge(Output(), "b", [tombstone], relay=False, sync=True)
    assert acks == [tombstone]
    assert r.held(acks, ["me", "b", "c"]) == [
        Held("k", tombstone.record.hlc, "b", ["b", "c", "me"])
    ]


def test_a_purged_tombstone_refuses_older_versions_and_answers_for_every_member() -> None:
    r, out = replica(), Output()
    r.merge(out, "b", [Update("k", peer_version(5, tombstone=True))], False, False)
    r.purge_tombstones(out, 10, lambda _: {"me", "b"}, lambda _: True)
    assert out.purges == ["k"] and r.store.get("k") is None
    stale = Update("k", peer_version(5, tombstone=True))
    assert r.merge(Output(), "c", [stale], False, False) == [stale], "acknowledged, not stored"
    assert r.store.get("k") is None
    assert r.held([stale], ["me", "b", "c"])[0].holders == ["me", "b", "c"]


def test_acknowledgements_fill_tombstone_holders_and_handoff_acks() -> None:
    r = replica()
    r.merge(Output(), "b", [Update("t", peer_version(5, tombstone=True))], False, False)
    r.merge(Output(), "b", [Update("v", peer_version(5))], False, False)
    r.hand_off(Output(), 10, lambda _: ["x"], lambda _: False)  # starts tracking acks
    tomb, live = r.store.get("t"), r.store.get("v")
    assert tomb is not None and live is not None
    r.acknowledged("x", [Held("t", tomb.hlc, tomb.origin, ["y"]), Held("v", live.hlc, live.origin)])
    assert r.tombstones.holders_of("t") == ["b", "me", "x", "y"]
    assert r.handoff.acks["v"] == {"x"}
    out = Output()
    r.hand_off(out, 10, lambda _: ["x"], lambda _: True)
    assert sorted(out.purges) == ["t", "v"], "every owner holds them: handed off"


def test_a_restored_version_merges_by_lww_and_a_second_restore_changes_nothing() -> None:
    r = replica()
    version = peer_version(5_000, origin="x")
    out = Output()
    assert r.restore_version(out, "k", version) == (WriteStatus.CREATED, version)
    assert out.writes == [("k", version)] and r.hlc >= version.hlc
    again = Output()
    assert r.restore_version(again, "k", version) == (WriteStatus.UNCHANGED, version)
    assert again.writes == []
    older = peer_version(4_000, origin="x")
    assert r.restore_version(Output(), "k", older) == (WriteStatus.STALE, version)


def test_an_if_changed_put_of_the_stored_value_is_not_written() -> None:
    r = replica()
    _, first = r.write(WriteCommand("k", b"v", "text/plain"), now=1.0)
    same = WriteCommand("k", b"v", "text/plain", if_changed=True)
    assert r.write(same, now=2.0) == (WriteStatus.UNCHANGED, first)
    other_type = WriteCommand("k", b"v", "text/csv", if_changed=True)
    assert r.write(other_type, now=2.0)[0] is WriteStatus.OK
