"""The one key check: what a key may be, and which refusals mean "too long"."""

import pytest

from rumordb.core import InvalidKey, check_key, first_bad_key
from rumordb.core.keys import plain_key


@pytest.mark.parametrize("key", ["a", "users/42", "ключ", "🙂" * 256, "a b", "~!@#$%^&*()"])
def test_printable_utf8_keys_within_the_limit_pass(key: str) -> None:
    check_key(key, 1024)


@pytest.mark.parametrize(
    "key",
    ["", "a\x00b", "tab\there", "new\nline", "del\x7f", "c1\x80", "c1\x9f", "lone\ud800"],
)
def test_empty_keys_control_characters_and_lone_surrogates_are_invalid(key: str) -> None:
    with pytest.raises(InvalidKey) as raised:
        check_key(key, 1024)
    assert not raised.value.too_long


def test_a_key_over_the_byte_limit_is_too_long_counting_utf8_bytes() -> None:
    check_key("é" * 512, 1024)  # 1024 bytes: exactly at the limit
    with pytest.raises(InvalidKey) as raised:
        check_key("é" * 513, 1024)
    assert raised.value.too_long and "1024 bytes" in str(raised.value)


def test_the_first_non_breaking_space_after_c1_is_allowed() -> None:
    check_key("a\xa0b", 1024)  # U+00A0 prints (as a space): not a control character


@pytest.mark.parametrize(
    ("keys", "first_bad"),
    [
        ([], None),
        (["a", "users/42", "ключ", "🙂" * 256], None),
        (["a", "b\x00", "c\n"], 1),  # the first one check_key refuses, not a later one
        (["a", "", "c"], 1),
        (["ok", "lone\ud800"], 1),
        (["é" * 512, "é" * 513], 1),  # the second is over the byte limit
        (["é" * 500, "x" * 5, "x\x7f"], 2),  # long keys take the per-key path: same answer
    ],
)
def test_first_bad_key_names_the_first_key_check_key_refuses(
    keys: list[str], first_bad: int | None
) -> None:
    assert first_bad_key(keys, 1024) == first_bad


@pytest.mark.parametrize(
    ("key", "plain"),
    [
        ("users/42", True),
        ("ключ", True),
        ("é" * 256, True),  # 256 characters: 1024 bytes at most, no need to measure
        ("é" * 257, False),  # valid (514 bytes), but only measuring tells
        ("", False),
        ("a\x00b", False),
        ("del\x7f", False),
        ("lone\ud800", False),
    ],
)
def test_a_plain_key_is_one_check_key_passes_for_sure(key: str, plain: bool) -> None:
    assert plain_key(key, 1024) is plain
    if plain:
        check_key(key, 1024)
