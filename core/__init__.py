"""RumorDB's protocol core: pure, deterministic, no I/O.

Drivers (``live`` and ``sim``) build a ``Node``, feed it client commands, messages and
ticks with the current time, and carry out the ``Output`` it returns (persist, then send).
"""

from core.context import Context, decode_context, encode_context
from core.errors import DecodeError, InvalidContext, InvalidKey, RumorError
from core.membership import MemberEntry, Membership, State, StaticMembership
from core.merge import Outcome, decide, merge
from core.messages import Message, decode, encode
from core.node import Counters, Node, NodeConfig, Output, WriteResult, WriteStatus
from core.record import Discarded, Record
from core.ring import Ring
from core.vclock import Order, compare

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
