"""Last-writer-wins merge of two versions of a key.

One total order decides every pair of versions:

1. if one vector clock descends the other, the descendant wins, whatever the HLCs say;
2. otherwise (concurrent writes) the larger ``(hlc, origin)`` wins.

Why HLC before node id: the HLC approximates real time, so among concurrent writes the
one issued later wins, as users expect of LWW; the node id only breaks exact ties. Rule 1
and rule 2 never disagree for versions the core issues, because a node absorbs the HLC of
everything it has seen before it writes (``core.hlc``): a descendant also has the larger
HLC. The order is therefore total, and ``merge`` (keep the maximum) is commutative,
associative and idempotent, so every delivery order converges to the same state.
"""

from __future__ import annotations

import enum

from rumordb.core.record import Record, version_of
from rumordb.core.vclock import Order, compare


class Outcome(enum.Enum):
    NEW = "new"  # no local version
    DESCENDANT = "descendant"  # incoming causally follows the local version
    STALE = "stale"  # incoming is causally older: dropped
    DUPLICATE = "duplicate"  # the same version again
    LWW_WON = "lww_won"  # concurrent, incoming wins by (hlc, origin)
    LWW_LOST = "lww_lost"  # concurrent, local wins by (hlc, origin)

    @property
    def applied(self) -> bool:
        return self in _APPLIED

    @property
    def concurrent(self) -> bool:
        return self in (Outcome.LWW_WON, Outcome.LWW_LOST)


_APPLIED = frozenset({Outcome.NEW, Outcome.DESCENDANT, Outcome.LWW_WON})


def _tiebreak(record: Record) -> tuple[int, str, bool, bytes, str]:
    # hlc and origin decide; the rest only makes the order total for hand-made inputs.
    return (record.hlc, record.origin, record.tombstone, record.value, record.content_type)


def decide(local: Record | None, incoming: Record) -> Outcome:
    """How ``incoming`` relates to ``local``, and so whether it replaces it."""
    if local is None:
        return Outcome.NEW
    order = compare(incoming.clock, local.clock)
    if order is Order.AFTER:
        return Outcome.DESCENDANT
    if order is Order.BEFORE:
        return Outcome.STALE
    if local == incoming:
        return Outcome.DUPLICATE
    if incoming.tombstone != local.tombstone and version_of(incoming) == version_of(local):
        # One write and the tombstone its expiry derives (``core.record``, equal clocks):
        # the tombstone follows it, as the tiebreak below says too, with no conflict.
        return Outcome.DESCENDANT if incoming.tombstone else Outcome.STALE
    if _tiebreak(incoming) > _tiebreak(local):
        return Outcome.LWW_WON
    return Outcome.LWW_LOST


def merge(a: Record | None, b: Record) -> Record:
    """The winner of ``a`` and ``b`` under the total order above."""
    return b if decide(a, b).applied else a  # type: ignore[return-value]


def supersedes(a: Record, b: Record) -> bool:
    """True when ``a`` wins over ``b``."""
    return decide(b, a).applied
