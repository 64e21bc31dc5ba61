"""Stable 64-bit hashes shared by the ring and the digest tree.

Python's ``hash()`` is salted per process, so nodes could not compare it; BLAKE2b is in
the standard library, stable everywhere, and fast enough (about half a microsecond).
"""

from __future__ import annotations

from functools import lru_cache
from hashlib import blake2b

MASK64 = (1 << 64) - 1


def hash64(data: bytes) -> int:
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")


@lru_cache(maxsize=1 << 16)
def key_hash(key: str) -> int:
    """Cached: the same keys are hashed on every write, digest update and ring lookup."""
    return hash64(key.encode())


def mix64(a: int, b: int) -> int:
    """Combine two 64-bit hashes into one well-spread 64-bit value (splitmix64 finaliser)."""
    z = (a ^ (b * 0x9E3779B97F4A7C15)) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)
