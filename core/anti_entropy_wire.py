"""The wire shape of anti-entropy steps: packed hashes, and the whole-message checks.

A digest step's children and a leaf's entries travel packed (little-endian uint64s,
aligned to the parents or leaves the message names) rather than as MessagePack maps:
8 bytes a child hash and 16 an entry, no index per item. Measured at 1M keys with 1%
missing: the descent's two widest steps shrank from ~15-19 to 8 bytes a child.

Every step is checked whole here before any of it is looked at (``core.bounds`` calls
``problem``): widths within the largest shape, parents and leaves strictly ascending and
inside their width, packed lengths that match, and at most ``MAX_STEP_CHILDREN``
children or ``MAX_LEAF_PAIRS`` entries, so one message bounds the work it causes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from rumordb.core.digest import MAX_LEAF_BITS, STEP_BITS
from rumordb.core.messages import DigestStep, LeafEntries, Message, SyncRecords

MAX_STEP_CHILDREN = 1 << 18  # children hashes in one step: 2 MiB packed
MAX_LEAF_PAIRS = 1 << 18  # (key hash, entry hash) pairs in one LeafEntries: 4 MiB packed


def pack(values: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


def unpack(data: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(data) >> 3}Q", data)


def _ascending_within(indices: Sequence[int], width: int) -> bool:
    if not indices:
        return True
    if indices[0] < 0 or indices[-1] >= 1 << width:
        return False
    return list(indices) == sorted(set(indices))  # strictly ascending: no repeats


def step_problem(step: DigestStep) -> str | None:
    """Why a digest step is malformed, or None."""
    if not 0 <= step.above <= step.width <= step.leaf_bits <= MAX_LEAF_BITS:
        return f"widths {step.above}..{step.width} outside 0..{step.leaf_bits} (at most {MAX_LEAF_BITS})"  # fmt: skip
    fanout_bits = step.width - step.above
    if fanout_bits > STEP_BITS or (fanout_bits == 0 and step.width != 0):
        return f"a step from width {step.above} to {step.width}"
    if len(step.parents) << fanout_bits > MAX_STEP_CHILDREN:
        return f"more than {MAX_STEP_CHILDREN} children in one step"
    if not _ascending_within(step.parents, step.above):
        return "parents not strictly ascending within their width"
    if len(step.hashes) != 8 * (len(step.parents) << fanout_bits):
        return "child hashes not aligned to the parents"
    return None


def leaves_problem(message: LeafEntries) -> str | None:
    """Why a leaf listing is malformed, or None (every key hash inside its leaf)."""
    if not 0 <= message.width <= MAX_LEAF_BITS:
        return f"leaf width {message.width} outside 0..{MAX_LEAF_BITS}"
    if len(message.pairs) != len(message.leaves):
        return "leaf entries not aligned to the leaves"
    if not _ascending_within(message.leaves, message.width):
        return "leaves not strictly ascending within their width"
    if any(len(packed) & 15 for packed in message.pairs):
        return "a leaf's packed entries not whole pairs"
    if sum(len(packed) for packed in message.pairs) > 16 * MAX_LEAF_PAIRS:
        return f"more than {MAX_LEAF_PAIRS} leaf entries"
    shift = 64 - message.width
    for leaf, packed in zip(message.leaves, message.pairs, strict=True):
        if any(khash >> shift != leaf for khash in unpack(packed)[0::2]):
            return f"a key hash outside leaf {leaf}"
    return None


def problem(message: Message) -> str | None:
    """Why an anti-entropy message is malformed, or None (other messages: None)."""
    if isinstance(message, DigestStep):
        return step_problem(message)
    if isinstance(message, LeafEntries):
        return leaves_problem(message)
    if isinstance(message, SyncRecords) and not -1 <= message.next_leaf <= 1 << MAX_LEAF_BITS:
        return f"next leaf {message.next_leaf} outside -1..2**{MAX_LEAF_BITS}"
    return None
