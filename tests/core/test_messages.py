import contextlib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rumordb.core.context import decode_context, encode_context
from rumordb.core.errors import DecodeError, InvalidContext
from rumordb.core.membership import MemberEntry
from rumordb.core.messages import (
    DigestStep,
    Frame,
    LeafEntries,
    Push,
    SyncRecords,
    Update,
    decode,
    encode,
)
from rumordb.core.record import Record

RECORD = Record(b"\x00\xffbinary", "application/octet-stream", {"n1": 2, "n2": 1}, 123456789, "n1")


def test_every_message_round_trips() -> None:
    messages = [
        Push(
            "n1",
            [MemberEntry("n1", "http://127.0.0.1:8001", 2, 17)],
            [Update("k", RECORD)],
            ack=True,
        ),
        DigestStep("n2", 7, 0, 4, [0], (2**64 - 1).to_bytes(8, "little") * 16, 16),
        LeafEntries("n2", 7, 12, [5, 9], [b"", bytes(16)], more=True),
        SyncRecords("n3", 7, [Update("gone", RECORD, ["n1", "n3"])], [12345], next_leaf=10),
    ]
    for message in messages:
        assert decode(encode(message)) == message


def test_oversized_input_is_refused_before_parsing() -> None:
    data = encode(Push("n1", [], [Update("k", RECORD)]))
    with pytest.raises(DecodeError, match="exceeds"):
        decode(data, max_bytes=len(data) - 1)


def test_wrong_types_and_unknown_versions_are_decode_errors() -> None:
    with pytest.raises(DecodeError):
        decode(msgspec.msgpack.encode([1, ["push", 5, [], [], False]]))
    with pytest.raises(DecodeError, match="version"):
        decode(msgspec.msgpack.encode(Frame(99, Push("n1", [], []))))
    with pytest.raises(DecodeError):
        decode(b"")


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_decoder(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(data)


def test_context_round_trips_and_rejects_garbage() -> None:
    token = encode_context({"n1": 3, "n2": 1}, 99)
    context = decode_context(f'"{token}"')
    assert context.clock == {"n1": 3, "n2": 1} and context.hlc == 99
    for bad in ["", "!!!", 'W/"abc"', "x" * 9000, encode_context({}, 1)[:-3] + "@@"]:
        with pytest.raises(InvalidContext):
            decode_context(bad)
    negative = msgspec.msgpack.encode([[["n1", -1]], 5])
    import base64

    with pytest.raises(InvalidContext):
        decode_context(base64.urlsafe_b64encode(negative).decode())


@given(
    st.dictionaries(st.text(min_size=1, max_size=8), st.integers(0, 2**64 - 1), max_size=5),
    st.integers(0, 2**64 - 1),
)
def test_context_encoding_is_the_documented_canonical_form(clock: dict[str, int], hlc: int) -> None:
    """URL-safe base64, unpadded, of MessagePack [[sorted non-zero pairs], hlc]."""
    import base64

    from rumordb.core.context import Context

    pairs = sorted((node, count) for node, count in clock.items() if count)
    reference = base64.urlsafe_b64encode(msgspec.msgpack.encode(Context(pairs, hlc)))
    text = encode_context(clock, hlc)
    assert text == reference.rstrip(b"=").decode()
    decoded = decode_context(text)
    assert decoded.clock == dict(pairs) and decoded.hlc == hlc
