"""Hashes are 64-bit, stable across processes, and spread keys."""

from rumordb.core.hashing import MASK64, hash64, key_hash, mix64


def test_hashes_are_64_bit_and_deterministic() -> None:
    assert 0 <= key_hash("k") <= MASK64 and key_hash("k") == key_hash("k")
    assert hash64(b"k") == key_hash("k")


def test_distinct_inputs_give_distinct_hashes() -> None:
    assert len({key_hash(f"k{i}") for i in range(10_000)}) == 10_000
    assert mix64(1, 2) != mix64(2, 1) and 0 <= mix64(MASK64, MASK64) <= MASK64
