"""The write decisions: when a write is refused, and the version it builds."""

from hypothesis import given
from hypothesis import strategies as st

from rumordb.core import hlc
from rumordb.core.bounds import bounds_at
from rumordb.core.context import Context
from rumordb.core.hlc import pack
from rumordb.core.record import MAX_TTL_S, Record, expires_at, is_expired, valid_expiry
from rumordb.core.vclock import advance, descends, merge
from rumordb.core.writes import (
    TOMBSTONE_CONTENT_TYPE,
    WriteCommand,
    WriteStatus,
    context_refusal,
    expiry,
    new_version,
    refusal,
)


def _local(clock: dict[str, int], stamp: int, tombstone: bool) -> Record:
    return Record(b"" if tombstone else b"old", "text/plain", clock, stamp, "a", tombstone)


def _context(clock: dict[str, int], stamp: int) -> Context:
    return Context(sorted(clock.items()), stamp)


LIVE = Record(b"v", "text/plain", {"a": pack(1)}, pack(1), "a")
TOMBSTONE = Record(b"", TOMBSTONE_CONTENT_TYPE, {"a": pack(2)}, pack(2), "a", True)


def test_refusals() -> None:
    assert refusal(WriteCommand("k", create=True), LIVE) is WriteStatus.EXISTS
    assert refusal(WriteCommand("k", create=True), TOMBSTONE) is None
    assert refusal(WriteCommand("k", delete=True), None) is WriteStatus.NOT_FOUND
    assert refusal(WriteCommand("k", delete=True), TOMBSTONE) is WriteStatus.NOT_FOUND
    stale = Context([("b", 1)], 0)
    assert refusal(WriteCommand("k", context=stale), LIVE) is WriteStatus.PRECONDITION_FAILED
    # If-Match on an absent key names a version that is not there (RFC 9110): 412, also
    # before a delete's 404 (preconditions are evaluated first).
    assert refusal(WriteCommand("k", context=stale), None) is WriteStatus.PRECONDITION_FAILED
    assert refusal(WriteCommand("k", context=stale, delete=True), None) is (
        WriteStatus.PRECONDITION_FAILED
    )
    current = Context(sorted(LIVE.clock.items()), LIVE.hlc)
    assert refusal(WriteCommand("k", b"2", context=current), LIVE) is None


def test_a_new_version_descends_from_the_local_one_and_the_context() -> None:
    context = Context([("c", pack(5))], pack(5))
    record = new_version("me", WriteCommand("k", b"2", "text/csv", context), LIVE, pack(3), 10)
    assert descends(record.clock, LIVE.clock) and descends(record.clock, context.clock)
    assert record.hlc > max(pack(5), pack(3), LIVE.hlc) and record.origin == "me"
    assert (record.value, record.content_type, record.tombstone) == (b"2", "text/csv", False)


_clocks = st.dictionaries(st.sampled_from(["a", "me", "z"]), st.integers(0, 2**40), max_size=3)
_stamps = st.integers(0, 2**40)


@given(
    st.one_of(st.none(), st.builds(_local, _clocks, _stamps, st.booleans())),
    st.one_of(st.none(), st.builds(_context, _clocks, _stamps)),
    st.booleans(),
    st.integers(0, 3) | st.just(0),
    _stamps,
    st.integers(0, 2**24),
)
def test_a_new_version_is_the_hlc_send_and_clock_advance_it_inlines(
    local: Record | None, context: Context | None, delete: bool, ttl_s: int, last: int,
    now_ms: int,
) -> None:  # fmt: skip
    command = WriteCommand("k", b"v", "text/plain", context, delete=delete, ttl_ms=ttl_s * 1000)
    record = new_version("me", command, local, last, now_ms)
    clock = dict(local.clock) if local is not None else {}
    floor = local.hlc if local is not None else 0
    if context is not None:
        clock = merge(clock, context.clock)
        floor = max(floor, context.hlc)
    stamp = hlc.send(max(last, floor), now_ms)
    assert record.hlc == stamp and record.clock == advance(clock, "me", stamp)
    assert record.tombstone is delete and record.origin == "me"
    assert record.expires == (0 if delete else expiry(stamp, command))
    if local is not None:
        assert record.clock is not local.clock, "the stored version's clock is never changed"


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


def test_a_context_out_of_bounds_is_refused_before_the_stored_version_is_read() -> None:
    bounds = bounds_at(1_000, 5_000, known_width=1, slack=1)
    assert context_refusal(Context([("a", pack(1_000))], pack(6_000)), bounds) is None
    assert context_refusal(Context([("a", 1)], pack(6_001)), bounds) is WriteStatus.CONTEXT_AHEAD
    wide = Context([("a", 1), ("b", 1), ("c", 1)], 1)
    assert context_refusal(wide, bounds) is WriteStatus.CONTEXT_TOO_WIDE


def test_an_absolute_expiry_is_kept_and_always_one_a_peer_accepts() -> None:
    def written(expires: int, now_ms: int = 10) -> Record:
        return new_version("me", WriteCommand("k", b"v", expires=expires), None, 0, now_ms)

    record = written(pack(5_000, 3))
    assert record.expires == pack(5_000, 3) and valid_expiry(record)
    past = written(pack(1))  # already past at the write: expired at once, still valid
    assert past.expires == past.hlc + 1 and valid_expiry(past) and is_expired(past, past.hlc + 1)
    far = written(pack(10 + MAX_TTL_S * 1000 + 1))
    assert far.expires == expires_at(far.hlc, MAX_TTL_S * 1000) and valid_expiry(far)
    assert written(0).expires == 0


def test_an_if_changed_put_over_the_same_expiry_millisecond_changes_nothing() -> None:
    expiring = Record(b"v", "text/plain", {"a": pack(1)}, pack(1), "a", False, pack(900, 7))
    same_ms = WriteCommand("k", b"v", "text/plain", if_changed=True, expires=pack(900))
    assert refusal(same_ms, expiring) is WriteStatus.UNCHANGED
    other_ms = WriteCommand("k", b"v", "text/plain", if_changed=True, expires=pack(901))
    assert refusal(other_ms, expiring) is None
    permanent = WriteCommand("k", b"v", "text/plain", if_changed=True)
    assert refusal(permanent, expiring) is None, "a put without expiry makes it permanent"
    ttl = WriteCommand("k", b"v", "text/plain", if_changed=True, ttl_ms=1_000)
    assert refusal(ttl, LIVE) is None, "a TTL restarts at every write"
