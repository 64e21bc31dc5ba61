"""A version's identity and what LWW keeps of a discarded one."""

import hashlib

from rumordb.core.hlc import pack
from rumordb.core.record import Record, created_ms, discarded_from, version_of

RECORD = Record(b"value", "text/plain", {"a": 3}, pack(1_234), "a")


def test_a_version_is_named_by_hlc_and_origin() -> None:
    assert version_of(RECORD) == (RECORD.hlc, "a") and created_ms(RECORD) == 1_234


def test_a_discarded_version_keeps_its_identity_and_a_hash_of_its_value() -> None:
    lost = discarded_from(RECORD)
    assert lost.value_sha256 == hashlib.sha256(b"value").hexdigest()
    assert (lost.clock, lost.hlc, lost.origin, lost.tombstone) == (
        RECORD.clock,
        RECORD.hlc,
        "a",
        False,
    )
