"""One random stream per simulated node, from a counter: no generator state per node.

Why. A node's draws (whom it gossips to, its anti-entropy peer, its timer jitter) must
not depend on what other nodes do, or a node that sleeps through its idle ticks would
change whom the others pick (``sim.engine``: idle wake-ups are skipped). A
``random.Random`` per node would do, but its Mersenne Twister state is 2.5 KB: a GiB at a
million nodes. Here a draw is a pure function of (run seed, node index, draw number):
SplitMix64's finaliser over the node's key plus the draw number, as counter-based
generators (Philox, SplitMix) do. A node costs one 8-byte counter.

Use. ``NodeStreams`` is a ``random.Random`` (so ``sample``, ``randrange``, ``choice``
come from the standard library, built on ``getrandbits`` and ``random``) shared by every
node; the driver ``select``s a node before each call into it, and the draws of that
call come from that node's stream.
"""

from __future__ import annotations

import hashlib
import random
from array import array
from typing import Any

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15  # SplitMix64's increment (2^64 / golden ratio, odd)
INV_2_53 = 1.0 / (1 << 53)


def mix64(z: int) -> int:
    """SplitMix64's finaliser: a bijection of 64-bit integers that scatters every bit."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def seed_key(seed: str) -> int:
    """A 64-bit key for the run seed (any text)."""
    return int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=8).digest(), "little")


def draw(key: int, index: int, count: int) -> int:
    """Draw number ``count`` of node ``index``'s stream: 64 random bits."""
    node_key = mix64((key + (index + 1) * GOLDEN) & MASK)
    return mix64((node_key + (count + 1) * GOLDEN) & MASK)


class NodeStreams(random.Random):
    """Every node's stream; ``select(i)`` makes node ``i``'s the one drawn from."""

    def __init__(self, seed: str, nodes: int) -> None:
        self._key = seed_key(seed)
        self._counts = array("Q", bytes(8 * nodes))  # draws made, per node
        self._node_keys = array("Q", bytes(8 * nodes))  # each node's key, once drawn (0: not yet)
        self._index = 0
        super().__init__(0)

    def seed(self, a: Any = None, version: int = 2) -> None:
        """Ignored: the streams are keyed by the run seed given at construction."""

    def select(self, index: int) -> None:
        self._index = index

    def draws(self, index: int) -> int:
        """How many draws node ``index`` made so far."""
        return self._counts[index]

    def _next(self) -> int:
        """``draw(key, index, count)`` for the selected node, its count then counted."""
        index = self._index
        counts = self._counts
        count = counts[index]
        counts[index] = count + 1
        node_key = self._node_keys[index]
        if not node_key:
            node_key = self._node_keys[index] = mix64((self._key + (index + 1) * GOLDEN) & MASK)
        z = (node_key + (count + 1) * GOLDEN) & MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK  # mix64, inlined: the hot path
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def _randbelow(self, n: int) -> int:
        """What ``random.Random._randbelow_with_getrandbits`` returns over these bits (the
        same draws), without a call per bit request: ``sample`` and ``randrange`` use it."""
        shift = 64 - n.bit_length()
        r = self._next() >> shift
        while r >= n:
            r = self._next() >> shift
        return r

    def getrandbits(self, k: int) -> int:
        if k <= 64:
            return self._next() >> (64 - k) if k else 0
        words = (k + 63) // 64
        value = 0
        for _ in range(words):
            value = (value << 64) | self._next()
        return value >> (words * 64 - k)

    def random(self) -> float:
        return (self._next() >> 11) * INV_2_53
