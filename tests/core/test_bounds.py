"""What a context or a peer message may claim: HLCs, clock widths, keys, content types."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rumordb.core.bounds import (
    CLOCK_AHEAD,
    MAX_CONTENT_TYPE_BYTES,
    InvalidMessage,
    _all_plainly_valid,
    _plainly_valid,
    bounds_at,
    check_message,
    clock_problem,
    record_problem,
)
from rumordb.core.hlc import pack
from rumordb.core.messages import Heartbeat, Push, SyncRecords, Update
from rumordb.core.record import Record

NOW_MS = 1_767_225_600_000
BOUNDS = bounds_at(NOW_MS, 5_000, known_width=3, slack=2)


def version(hlc: int, clock: dict[str, int] | None = None, **fields: object) -> Record:
    values: dict[str, object] = {"value": b"v", "content_type": "text/plain", "tombstone": False}
    values.update(fields)
    return Record(
        values["value"],  # type: ignore[arg-type]
        values["content_type"],  # type: ignore[arg-type]
        clock if clock is not None else {"a": hlc},
        hlc,
        "a",
        values["tombstone"],  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("clock", "stamp", "problem"),
    [
        ({"a": pack(NOW_MS)}, pack(NOW_MS), None),
        ({"a": 1}, pack(NOW_MS + 5_000, 65_535), None),  # the last HLC within the bound
        ({"a": 1}, pack(NOW_MS + 5_001), CLOCK_AHEAD),
        ({"a": 1}, 2**64 - 1, CLOCK_AHEAD),
        ({"a": 2**64 - 1}, pack(NOW_MS), CLOCK_AHEAD),  # counters are HLCs too
        ({f"n{i}": 1 for i in range(5)}, 1, None),  # members seen (3) plus slack (2)
    ],
)
def test_clock_bounds(clock: dict[str, int], stamp: int, problem: str | None) -> None:
    assert clock_problem(clock, stamp, BOUNDS) == problem


def test_a_clock_wider_than_the_members_seen_plus_slack_is_refused() -> None:
    problem = clock_problem({f"n{i}": 1 for i in range(6)}, 1, BOUNDS)
    assert problem is not None and "6 entries" in problem
    assert clock_problem({"a": -1}, 1, BOUNDS) is not None
    assert clock_problem({"a": 1}, -1, BOUNDS) is not None


def test_record_rules_content_type_and_tombstone_shape() -> None:
    assert record_problem(version(1), BOUNDS) is None
    assert record_problem(version(1, content_type="t" * MAX_CONTENT_TYPE_BYTES), BOUNDS) is None
    long_type = version(1, content_type="é" * 128)  # 256 bytes of UTF-8
    assert "content type" in str(record_problem(long_type, BOUNDS))
    assert record_problem(version(1, value=b"", tombstone=True), BOUNDS) is None
    assert "tombstone" in str(record_problem(version(1, value=b"x", tombstone=True), BOUNDS))


def test_one_bad_update_refuses_the_whole_message_with_its_reason() -> None:
    good = Update("k", version(1))
    check_message(Push("p", [], [good, good]), BOUNDS, 64)
    check_message(Heartbeat("p", [], clock_ms=2**62), BOUNDS, 64)  # nothing in it is absorbed
    ahead = Update("late", version(pack(NOW_MS + 60_000)))
    with pytest.raises(InvalidMessage) as refused:
        check_message(Push("p", [], [good, ahead]), BOUNDS, 64)
    assert refused.value.reason == CLOCK_AHEAD
    for bad in (Update("a\x00b", version(1)), Update("x" * 65, version(1))):
        with pytest.raises(InvalidMessage) as refused:
            check_message(SyncRecords("p", 1, [good, bad], []), BOUNDS, 64)
        assert refused.value.reason == "invalid"


def test_a_peer_record_whose_expiry_is_before_its_write_or_too_far_is_refused() -> None:
    from msgspec.structs import replace

    from rumordb.core.record import MAX_TTL_S, expires_at

    record = version(1)
    assert record_problem(replace(record, expires=expires_at(record.hlc, 1000)), BOUNDS) is None
    assert "expiry" in str(record_problem(replace(record, expires=record.hlc), BOUNDS))
    too_far = expires_at(record.hlc, MAX_TTL_S * 1000 + 1)
    assert "expiry" in str(record_problem(replace(record, expires=too_far), BOUNDS))


@pytest.mark.parametrize(
    "bad",
    [
        version(pack(NOW_MS + 60_000)),  # ahead
        version(1, {"a": 1, "b": -1}),  # a negative counter
        version(-1),
        version(1, {f"n{i}": 1 for i in range(6)}),  # too wide
        version(1, content_type="é" * 128),  # 256 bytes
        version(1, value=b"x", tombstone=True),
    ],
)
def test_a_bad_record_after_many_plain_ones_is_found_and_named(bad: Record) -> None:
    """The fast pass over plain records must not let a bad one through, wherever it is."""
    good = [Update(f"k{i}", version(pack(NOW_MS) + i)) for i in range(50)]
    with pytest.raises(InvalidMessage) as refused:
        check_message(Push("p", [], [*good, Update("bad", bad), *good]), BOUNDS, 64)
    assert "'bad'" in str(refused.value)


_records = st.builds(
    Record,
    st.just(b"v"),
    st.sampled_from(["text/plain", "t" * 70]),
    st.dictionaries(st.sampled_from("abcd"), st.integers(-1, 12), max_size=4),
    st.integers(-1, 12),
    st.just("a"),
    st.booleans(),
    st.sampled_from([0, 0, 5]),
)


@given(st.lists(_records, max_size=6), st.integers(0, 11), st.integers(0, 4))
def test_a_whole_batch_is_plainly_valid_exactly_when_each_record_is(
    records: list[Record], max_hlc: int, max_entries: int
) -> None:
    each = all(_plainly_valid(record, max_hlc, max_entries) for record in records)
    assert _all_plainly_valid(records, max_hlc, max_entries) is each
