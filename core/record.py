"""Versioned records, tombstones, and what LWW discarded.

A ``Record`` is one version of one key: the value bytes with their content type, the
vector clock that places it in the key's history, the HLC timestamp that orders it
against concurrent versions, and the node that wrote it. A delete is a record too (a
*tombstone*, with an empty value) so that it replicates and wins like any write; it is
purged only when every member is known to hold it (see ``core.node``), never on a timer.
"""

from __future__ import annotations

import hashlib

import msgspec

from rumordb.core.hlc import physical_ms


class Record(msgspec.Struct, frozen=True, array_like=True, gc=False):
    value: bytes
    content_type: str
    clock: dict[str, int]
    hlc: int
    origin: str
    tombstone: bool = False


class Discarded(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The last concurrent version of a key that LWW threw away: what a conflict cost."""

    value_sha256: str
    clock: dict[str, int]
    hlc: int
    origin: str
    tombstone: bool


def discarded_from(record: Record) -> Discarded:
    return Discarded(
        value_sha256=hashlib.sha256(record.value).hexdigest(),
        clock=record.clock,
        hlc=record.hlc,
        origin=record.origin,
        tombstone=record.tombstone,
    )


def version_of(record: Record) -> tuple[int, str]:
    """A write is identified by (HLC, origin): a node never issues the same HLC twice."""
    return (record.hlc, record.origin)


def created_ms(record: Record) -> int:
    return physical_ms(record.hlc)
