"""The write decisions: when a write is refused, and the version it builds."""

from rumordb.core.context import Context
from rumordb.core.hlc import pack
from rumordb.core.record import Record
from rumordb.core.vclock import descends
from rumordb.core.writes import (
    TOMBSTONE_CONTENT_TYPE,
    WriteCommand,
    WriteStatus,
    new_version,
    refusal,
)

LIVE = Record(b"v", "text/plain", {"a": pack(1)}, pack(1), "a")
TOMBSTONE = Record(b"", TOMBSTONE_CONTENT_TYPE, {"a": pack(2)}, pack(2), "a", True)


def test_refusals() -> None:
    assert refusal(WriteCommand("k", create=True), LIVE) is WriteStatus.EXISTS
    assert refusal(WriteCommand("k", create=True), TOMBSTONE) is None
    assert refusal(WriteCommand("k", delete=True), None) is WriteStatus.NOT_FOUND
    assert refusal(WriteCommand("k", delete=True), TOMBSTONE) is WriteStatus.NOT_FOUND
    stale = Context([("b", 1)], 0)
    assert refusal(WriteCommand("k", context=stale), LIVE) is WriteStatus.PRECONDITION_FAILED
    assert refusal(WriteCommand("k", context=stale), None) is None, "nothing to conflict with"
    current = Context(sorted(LIVE.clock.items()), LIVE.hlc)
    assert refusal(WriteCommand("k", b"2", context=current), LIVE) is None


def test_a_new_version_descends_from_the_local_one_and_the_context() -> None:
    context = Context([("c", pack(5))], pack(5))
    record = new_version("me", WriteCommand("k", b"2", "text/csv", context), LIVE, pack(3), 10)
    assert descends(record.clock, LIVE.clock) and descends(record.clock, context.clock)
    assert record.hlc > max(pack(5), pack(3), LIVE.hlc) and record.origin == "me"
    assert (record.value, record.content_type, record.tombstone) == (b"2", "text/csv", False)


def test_a_delete_builds_an_empty_tombstone() -> None:
    record = new_version("me", WriteCommand("k", b"ignored", delete=True), LIVE, 0, 10)
    assert (
        record.tombstone and record.value == b"" and record.content_type == TOMBSTONE_CONTENT_TYPE
    )


def test_an_if_changed_put_is_refused_only_over_the_same_live_value() -> None:
    same = WriteCommand("k", b"v", "text/plain", if_changed=True)
    assert refusal(same, LIVE) is WriteStatus.UNCHANGED
    assert refusal(same, TOMBSTONE) is None, "a deleted key is written again"
    assert refusal(same, None) is None
    assert refusal(WriteCommand("k", b"w", "text/plain", if_changed=True), LIVE) is None
