"""The outbox encodes once per message, batches pushes, and counts what it sends."""

from rumordb.core.counters import Counters
from rumordb.core.hlc import pack
from rumordb.core.membership import MemberEntry
from rumordb.core.messages import Heartbeat, Push, Update, decode
from rumordb.core.outbox import Outbox
from rumordb.core.output import Output
from rumordb.core.record import Record

UPDATES = [Update(f"k{i}", Record(b"v", "t", {"a": 1}, pack(1), "a")) for i in range(5)]


def test_push_batches_and_every_target_gets_the_same_bytes() -> None:
    counters, out = Counters(), Output()
    Outbox("me", counters, list, max_batch=2).push(out, ["x", "y"], UPDATES, relay=False)
    assert [target for target, _ in out.messages] == ["x", "y"] * 3
    sizes = [len(m.updates) for _, data in out.messages[::2] if isinstance(m := decode(data), Push)]
    assert sizes == [2, 2, 1]
    assert all(not decode(data).relay for _, data in out.messages)  # type: ignore[union-attr]
    assert counters.messages_sent == 6
    assert counters.bytes_sent == sum(len(data) for _, data in out.messages)


def test_nothing_is_sent_or_counted_without_targets() -> None:
    counters, out = Counters(), Output()
    Outbox("me", counters, list, max_batch=2).push(out, [], UPDATES)
    assert not out and counters.messages_sent == 0


def test_push_each_sends_each_target_its_own_updates_asking_for_acks() -> None:
    out = Output()
    Outbox("me", Counters(), list, 10).push_each(
        out, {"x": UPDATES[:1], "y": UPDATES[1:]}, ack=True
    )
    decoded = {target: decode(data) for target, data in out.messages}
    assert [len(m.updates) for m in decoded.values()] == [1, 4]  # type: ignore[union-attr]
    assert all(m.ack for m in decoded.values())  # type: ignore[union-attr]


def test_a_heartbeat_is_stamped_with_the_wall_clock_and_built_only_for_targets() -> None:
    sampled: list[int] = []

    def entries() -> list[MemberEntry]:
        sampled.append(1)  # a member sample draws from the node's random source
        return []

    out, outbox = Output(), Outbox("me", Counters(), entries, 10)
    outbox.beat(out, [], 12.5)
    assert not out.messages and not sampled, "no target: nothing built, nothing drawn"
    outbox.beat(out, ["x", "y"], 12.5)
    beats = [decode(data) for _, data in out.messages]
    assert [target for target, _ in out.messages] == ["x", "y"] and len(sampled) == 1
    assert all(
        isinstance(b, Heartbeat) and b.clock_ms == 12_500 and b.sender == "me" for b in beats
    )
