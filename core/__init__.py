"""RumorDB's protocol core: pure, deterministic, no I/O.

Drivers (``live`` and ``sim``) build a ``Node``, feed it client commands, messages and
ticks with the current time, and carry out the ``Output`` it returns (persist, then send).
"""

from rumordb.core.context import Context, decode_context, encode_context
from rumordb.core.errors import DecodeError, InvalidContext, InvalidKey, RumorError
from rumordb.core.membership import MemberEntry, Membership, State, StaticMembership
from rumordb.core.merge import Outcome, decide, merge
from rumordb.core.messages import Message, decode, encode
from rumordb.core.node import Counters, Node, NodeConfig, Output, WriteResult, WriteStatus
from rumordb.core.record import Discarded, Record
from rumordb.core.ring import Ring
from rumordb.core.vclock import Order, compare

__all__ = [
    "Context",
    "Counters",
    "DecodeError",
    "Discarded",
    "InvalidContext",
    "InvalidKey",
    "MemberEntry",
    "Membership",
    "Message",
    "Node",
    "NodeConfig",
    "Order",
    "Outcome",
    "Output",
    "Record",
    "Ring",
    "RumorError",
    "State",
    "StaticMembership",
    "WriteResult",
    "WriteStatus",
    "compare",
    "decide",
    "decode",
    "decode_context",
    "encode",
    "encode_context",
    "merge",
]
