"""What a node counts, and what it hands out: the change since the last time it did.

``Counters`` are totals since the node started. A driver learns them only as deltas:
each ``Node.tick`` puts the counts that changed since the previous tick into its
``Output.counter_deltas`` (``Reported``), so summing a node's deltas over its life gives
its totals up to its last tick. Only ticks pay for this (one C call when nothing
changed): a put or a receive increments integers and nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from operator import attrgetter


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


COUNTER_NAMES = tuple(f.name for f in dataclasses.fields(Counters))
_read_all = attrgetter(*COUNTER_NAMES)  # every count in one C call: a tick stays cheap
_ZEROS = (0,) * len(COUNTER_NAMES)  # one tuple shared by every fresh node (176 B each)


class Reported:
    """The totals the last deltas brought a driver up to (one per node)."""

    __slots__ = ("_totals",)

    def __init__(self) -> None:
        self._totals: tuple[int, ...] = _ZEROS

    def take_deltas(self, counters: Counters) -> dict[str, int]:
        """The counts that grew since the last call, by how much (empty: none did)."""
        totals = _read_all(counters)
        last, self._totals = self._totals, totals
        if totals == last:
            return {}
        return {
            name: now - before
            for name, now, before in zip(COUNTER_NAMES, totals, last, strict=True)
            if now != before
        }


def add_deltas(totals: Counters, deltas: Mapping[str, int]) -> None:
    """What a driver does with each tick's deltas: add them to its own totals."""
    for name, delta in deltas.items():
        setattr(totals, name, getattr(totals, name) + delta)
