"""What a client context or a peer message may claim: checked whole, before it is applied.

Clocks come from outside (a client's ``If-Match``, a peer's records), and a clock once
absorbed can never be taken back: the node's HLC only grows, and every later version
descends from the clocks it merged. So a clock is bounded before it is looked at:

* its HLC, and every vector clock counter (writers use their HLC as the counter), at
  most ``max_clock_skew_ms`` ahead of this node's wall clock: an HLC of 2^64-1 would
  otherwise drag every node's clock to the end of time (and overflow the next version);
* its width at most the members this node has ever seen (or the widest clock it loaded
  from disk) plus ``slack``: clocks naming hundreds of unknown nodes would otherwise
  replicate, and make the node's own next ETag exceed its ``If-Match`` limit.

A peer message is refused whole (``InvalidMessage``) if any one of its updates breaks a
rule: its key, content type, clock, tombstone shape, or TTL expiry. Nothing of it is applied, so a
bad update never leaves a message half-merged. An anti-entropy step is refused whole if
its shape is malformed (``core.anti_entropy_wire``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import attrgetter

import msgspec

from rumordb.core import anti_entropy_wire, hlc
from rumordb.core.errors import DecodeError, InvalidKey
from rumordb.core.keys import check_key, first_bad_key, plain_key
from rumordb.core.messages import Message, Push, SyncRecords, Update
from rumordb.core.record import Record, valid_expiry

DEFAULT_MAX_CLOCK_SKEW_MS = 5_000
DEFAULT_CLOCK_SLACK = 16  # clock entries beyond the members seen (members not yet heard of)
MAX_CONTENT_TYPE_BYTES = 255

# Why a peer message was refused; also the ``reason`` label of its metric.
CLOCK_AHEAD = "clock_ahead"
INVALID = "invalid"


class InvalidMessage(DecodeError):
    """A peer message that decodes but claims too much; ``reason``: ``clock_ahead``..."""

    def __init__(self, detail: str, reason: str = INVALID) -> None:
        super().__init__(detail)
        self.reason = reason


class Bounds(msgspec.Struct, frozen=True, gc=False):
    """The limits in force now: the largest HLC accepted, the widest vector clock."""

    max_hlc: int
    max_entries: int


def bounds_at(now_ms: int, max_clock_skew_ms: int, known_width: int, slack: int) -> Bounds:
    """``known_width``: members ever seen, or the widest clock loaded, if that is more."""
    return Bounds(hlc.pack(now_ms + max_clock_skew_ms, hlc.LOGICAL_MASK), known_width + slack)


def clock_problem(clock: Mapping[str, int], stamp: int, bounds: Bounds) -> str | None:
    """Why a (vector clock, HLC) pair is out of bounds, or None; ``clock_ahead`` first."""
    if stamp < 0:
        return "a negative HLC"
    counts = clock.values()  # max/min in C: this runs for every record a peer sends
    if stamp > bounds.max_hlc or max(counts, default=0) > bounds.max_hlc:
        return CLOCK_AHEAD
    if len(clock) > bounds.max_entries:
        return f"a vector clock of {len(clock)} entries (at most {bounds.max_entries} here)"
    if min(counts, default=0) < 0:
        return "a negative vector clock counter"
    return None


def record_problem(record: Record, bounds: Bounds) -> str | None:
    """Why a peer's record may not be stored, or None."""
    problem = clock_problem(record.clock, record.hlc, bounds)
    if problem is not None:
        return problem
    if len(record.content_type) > MAX_CONTENT_TYPE_BYTES // 4 and (
        len(record.content_type.encode("utf-8", "surrogatepass")) > MAX_CONTENT_TYPE_BYTES
    ):
        return f"a content type over {MAX_CONTENT_TYPE_BYTES} bytes"
    if record.tombstone and record.value:
        return "a tombstone with a value"
    if not valid_expiry(record):
        return "an expiry before its write or beyond the longest TTL"
    return None


def check_updates(updates: Sequence[Update], bounds: Bounds, max_key_bytes: int) -> None:
    """Raise ``InvalidMessage`` if any update is out of bounds (nothing is applied).

    The keys are checked all at once, and a record that plainly passes (``_plainly_valid``)
    skips the detailed checks; only an update that might fail takes them, in order, so
    the first bad update is named as before. A single update skips the C-level passes
    over lists: their setup was most of its check (3.9 -> 0.7 us, a value with a
    one-entry clock).
    """
    max_hlc, max_entries = bounds.max_hlc, bounds.max_entries
    if len(updates) == 1:  # a lone write's push (most rumors): no lists to build
        only = updates[0]
        keys_ok = plain_key(only.key, max_key_bytes)
        if keys_ok and _plainly_valid(only.record, max_hlc, max_entries):
            return
    else:
        keys_ok = first_bad_key(list(map(_KEY, updates)), max_key_bytes) is None
        if keys_ok and _all_plainly_valid(list(map(_RECORD, updates)), max_hlc, max_entries):
            return
    for update in updates:
        if keys_ok and _plainly_valid(update.record, max_hlc, max_entries):
            continue
        try:
            check_key(update.key, max_key_bytes)
        except InvalidKey as exc:
            raise InvalidMessage(f"an update's key: {exc}") from None
        problem = record_problem(update.record, bounds)
        if problem == CLOCK_AHEAD:
            detail = f"key {update.key!r}: an HLC beyond this node's clock skew bound"
            raise InvalidMessage(detail, CLOCK_AHEAD)
        if problem is not None:
            raise InvalidMessage(f"key {update.key!r}: {problem}")


def _all_plainly_valid(records: list[Record], max_hlc: int, max_entries: int) -> bool:
    """``_plainly_valid`` of every record, in C-level passes over the whole list (no
    Python frame per record: a replica checks every update of every push it receives)."""
    if not records:
        return True
    clocks = list(map(_CLOCK, records))
    sizes = list(map(len, clocks))
    if min(sizes) <= 0 or max(sizes) > max_entries:
        return False  # (an empty clock: the detailed checks name it)
    hlcs = list(map(_HLC, records))
    entries = list(map(dict.values, clocks))
    return (
        min(hlcs) >= 0
        and max(hlcs) <= max_hlc
        and not any(map(_EXPIRES, records))
        and not any(map(_TOMBSTONE, records))
        and max(map(max, entries)) <= max_hlc
        and min(map(min, entries)) >= 0
        and max(map(len, map(_CONTENT_TYPE, records))) <= MAX_CONTENT_TYPE_BYTES // 4
    )


_KEY, _RECORD = attrgetter("key"), attrgetter("record")
_CLOCK, _HLC, _EXPIRES = attrgetter("clock"), attrgetter("hlc"), attrgetter("expires")
_TOMBSTONE, _CONTENT_TYPE = attrgetter("tombstone"), attrgetter("content_type")


def _plainly_valid(record: Record, max_hlc: int, max_entries: int) -> bool:
    """True for a record that ``record_problem`` passes for sure: the common case in one
    expression (a value, no expiry, a short content type), without its calls."""
    clock = record.clock
    return (
        0 <= record.hlc <= max_hlc
        and not record.expires
        and not record.tombstone
        and 0 < len(clock) <= max_entries
        and max(clock.values()) <= max_hlc
        and min(clock.values()) >= 0
        and len(record.content_type) <= MAX_CONTENT_TYPE_BYTES // 4
    )


def check_message(message: Message, bounds: Bounds, max_key_bytes: int) -> None:
    """The one check of a decoded peer message, before any of it is handled."""
    if isinstance(message, (Push, SyncRecords)):
        check_updates(message.updates, bounds, max_key_bytes)
    shape = anti_entropy_wire.problem(message)  # widths, alignment, sizes of a step
    if shape is not None:
        raise InvalidMessage(f"an anti-entropy step: {shape}")
