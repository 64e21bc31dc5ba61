"""What is refused before it is applied: client writes and peer messages, by the bounds.

A client write is refused while this node's clock runs ahead of most peers'
(``core.clock_watch``: its versions would win every LWW race) and when its context is
out of bounds. A peer message is checked whole (``core.bounds``) and dropped whole,
counted, if any part of it is out of bounds. The bounds widen with the vector clocks a
node may honestly see: the members it knows, or the widest clock it loaded.
"""

from __future__ import annotations

from collections.abc import Callable

from rumordb.core.bounds import CLOCK_AHEAD, Bounds, InvalidMessage, bounds_at, check_message
from rumordb.core.clock_watch import ClockVerdict, Skew
from rumordb.core.config import NodeConfig
from rumordb.core.counters import Counters
from rumordb.core.messages import Message
from rumordb.core.writes import WriteCommand, WriteStatus, context_refusal


def bounds_for(now: float, config: NodeConfig, members: int, widest_loaded: int) -> Bounds:
    """The bounds at wall time ``now`` for a node that knows ``members`` members."""
    known = max(members, widest_loaded)
    return bounds_at(int(now * 1000), config.max_clock_skew_ms, known, config.clock_slack)


def write_refusal(
    command: WriteCommand, clock: ClockVerdict, now: float, bounds_at_s: Callable[[float], Bounds]
) -> WriteStatus | None:
    """Why a client write is refused before its key's version is looked at, if it is.

    ``bounds_at_s(now)`` gives the bounds; only a write with a context needs them.
    """
    if clock.skew is Skew.AHEAD:
        return WriteStatus.CLOCK_AHEAD
    if command.context is None:
        return None
    return context_refusal(command.context, bounds_at_s(now))


def admit(message: Message, bounds: Bounds, max_key_bytes: int, counters: Counters) -> None:
    """Raise ``InvalidMessage`` (counted) unless the whole message is within ``bounds``."""
    try:
        check_message(message, bounds, max_key_bytes)
    except InvalidMessage as exc:
        counters.messages_refused += 1
        if exc.reason == CLOCK_AHEAD:
            counters.messages_clock_ahead += 1
        raise
