"""The If-Match version context: a URL-safe token that round-trips a clock and an HLC."""

import pytest

from rumordb.core.context import decode_context, encode_context
from rumordb.core.errors import InvalidContext


def test_a_context_round_trips_and_survives_quotes() -> None:
    text = encode_context({"b": 2, "a": 1}, 12345)
    context = decode_context(f'"{text}"')
    assert context.clock == {"a": 1, "b": 2} and context.hlc == 12345
    assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize("text", ["", 'W/"abc"', "!!!", "x" * 9000, "AAAA"])
def test_bad_contexts_are_refused_with_a_clear_error(text: str) -> None:
    with pytest.raises(InvalidContext):
        decode_context(text)
