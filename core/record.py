"""Versioned records, tombstones, and what LWW discarded.

A ``Record`` is one version of one key: the value bytes with their content type, the
vector clock that places it in the key's history, the HLC timestamp that orders it
against concurrent versions, and the node that wrote it. A delete is a record too (a
*tombstone*, with an empty value) so that it replicates and wins like any write; it is
purged only when every member is known to hold it (see ``core.node``), never on a timer.

TTL: ``expires`` is an HLC instant (0: never) carried in the version, so every node
expires the key at the same logical time. At and after it the record reads as absent,
and every node replaces it by the same tombstone, ``expired_tombstone(record)``: the
record's own clock, HLC and origin with the tombstone flag set. That tombstone sorts
just above the record it ends and below everything that descends from it (``core.merge``
compares the flag right after (hlc, origin)), so nodes that derive it on their own agree
on one version, and a write that overwrote the key before it expired still wins.

Wire format: ``expires`` is a new trailing field with a default. A peer of the previous
version decodes these records (msgspec ignores trailing array fields it does not know)
but keeps an expired key alive; records from it decode here with ``expires = 0``.
"""

from __future__ import annotations

import hashlib

import msgspec

from rumordb.core.hlc import LOGICAL_BITS, physical_ms

TOMBSTONE_CONTENT_TYPE = "application/x-rumor-tombstone"
MAX_TTL_S = 365 * 24 * 3600  # a documented bound: a longer TTL is refused (400 at the edge)


class Record(msgspec.Struct, frozen=True, array_like=True, gc=False):
    value: bytes
    content_type: str
    clock: dict[str, int]
    hlc: int
    origin: str
    tombstone: bool = False
    expires: int = 0  # HLC instant at which the value expires; 0: never


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


def is_expired(record: Record, now_hlc: int) -> bool:
    """True for a value whose expiry instant has come (tombstones never expire again)."""
    return record.expires != 0 and not record.tombstone and now_hlc >= record.expires


def is_live(record: Record | None, now_hlc: int) -> bool:
    return record is not None and not record.tombstone and not is_expired(record, now_hlc)


def expires_at(hlc: int, ttl_ms: int) -> int:
    """The expiry instant of a value written at ``hlc`` that lives ``ttl_ms``."""
    return hlc + (ttl_ms << LOGICAL_BITS)


def same_expiry_ms(a: int, b: int) -> bool:
    """Two expiry instants (0: never) that fall in the same millisecond: an export keeps
    an expiry to the millisecond (``expires_ms``), so its re-import compares so."""
    return a >> LOGICAL_BITS == b >> LOGICAL_BITS


def valid_expiry(record: Record) -> bool:
    """A peer's expiry lies after its write and at most ``MAX_TTL_S`` later."""
    if record.expires == 0:
        return True
    return record.hlc < record.expires <= expires_at(record.hlc, MAX_TTL_S * 1000)


def expired_tombstone(record: Record) -> Record:
    """The tombstone every node derives from an expired ``record``: the same on each one."""
    return Record(
        b"", TOMBSTONE_CONTENT_TYPE, record.clock, record.hlc, record.origin, True, record.expires
    )


def created_ms(record: Record) -> int:
    return physical_ms(record.hlc)
