"""Hybrid logical clock (Kulkarni et al.), packed into one integer.

A timestamp is ``physical_ms << LOGICAL_BITS | logical``. It stays close to the wall
clock, never goes backwards (even when the wall clock does), and respects causality:
a node that has *observed* a timestamp ``t`` only issues timestamps greater than ``t``.
That last property is what lets LWW agree with "a descendant always wins": a write that
causally follows another also carries a larger HLC.

Pure functions: the wall clock comes in as ``wall_ms``; the caller keeps ``last``.
"""

from __future__ import annotations

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1


def pack(physical_ms: int, logical: int = 0) -> int:
    return (physical_ms << LOGICAL_BITS) | logical


def physical_ms(timestamp: int) -> int:
    return timestamp >> LOGICAL_BITS


def logical(timestamp: int) -> int:
    return timestamp & LOGICAL_MASK


def send(last: int, wall_ms: int) -> int:
    """The timestamp of a local event (a write): strictly greater than ``last``."""
    candidate = pack(wall_ms)
    return candidate if candidate > last else last + 1


def receive(last: int, remote: int, wall_ms: int) -> int:
    """The clock after observing ``remote``: greater than both ``last`` and ``remote``."""
    candidate = pack(wall_ms)
    top = max(last, remote)
    return candidate if candidate > top else top + 1


def observe(last: int, remote: int) -> int:
    """Absorb ``remote`` without issuing an event: the next ``send`` exceeds it."""
    return remote if remote > last else last
