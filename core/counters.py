"""What a node counts: totals since it started, read through ``NodeView.counters``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Counters:
    messages_sent: int = 0
    bytes_sent: int = 0
    messages_received: int = 0
    bytes_received: int = 0
    decode_errors: int = 0
    messages_refused: int = 0  # decoded, but out of bounds (core.bounds): dropped whole
    messages_clock_ahead: int = 0  # of those, refused for an HLC beyond the skew bound
    updates_applied: int = 0
    updates_stale: int = 0
    lww_overwrites: int = 0  # concurrent versions decided by LWW
    rumor_rounds: int = 0
    anti_entropy_sessions: int = 0
    anti_entropy_keys_sent: int = 0
    anti_entropy_completed: int = 0  # exchanges that ended here (digests agree, or records came)
    tombstones_purged: int = 0
    handoffs_completed: int = 0
    keys_expired: int = 0  # values whose TTL ran out, replaced by their derived tombstone
