"""RumorDB's protocol core: pure, deterministic, no I/O.

The driver-facing API (``live.runner`` and ``sim.engine`` use nothing else):

* build a ``Node`` (``NodeConfig``; a ``MemberTable``: ``Membership`` or
  ``StaticMembership``; the incarnation from ``restart_incarnation``);
* feed it inputs with the current time: ``write(WriteCommand, now) -> WriteResult``
  (the key checked first with ``check_key``, which raises ``InvalidKey``; its
  ``too_long`` flag means HTTP 414), ``flush(now)``, ``receive(data, now)``,
  ``tick(now)`` at ``next_deadline()``, ``join(...)`` for a discovered peer (each with an
  optional monotonic ``mono`` for membership timeouts and timers); ``leave(now)``,
  ``forget(member_id, now)`` (``ForgetRefused`` for a live member), and persist what
  ``take_purged_versions()`` hands out (``Node(purged=...)`` restores it);
* carry out every ``Output``: persist ``writes`` and ``purges``, then send ``messages``;
  log or count its events (``transitions``, ``discards``);
* ask where to answer a read: ``read(key) -> Local | AskOwners``, and a listing:
  ``plan_list(...) -> ListPlan``, joined with ``merge_pages``;
* after a restart, stream the stored versions in with ``Node.startup.load`` (a
  ``StartupLoad``) a slice at a time, answering a read of a key not loaded yet with
  ``read_stored``;
* read state only through ``Node.view`` (a ``NodeView``); ``message_kind`` names an
  encoded message's type without decoding it.
* a ``write`` that could not be persisted is undone with ``abort()`` (instead of
  ``flush``); a peer message out of bounds raises ``InvalidMessage`` (a ``DecodeError``).
"""

from rumordb.core.bounds import InvalidMessage
from rumordb.core.clock_watch import ClockVerdict, Skew
from rumordb.core.config import NodeConfig
from rumordb.core.context import Context, decode_context, encode_context
from rumordb.core.counters import Counters
from rumordb.core.errors import DecodeError, InvalidContext, InvalidKey, RumorError
from rumordb.core.keys import check_key, first_bad_key
from rumordb.core.member_state import Event, InvalidTransition, State
from rumordb.core.membership import (
    ForgetRefused,
    MemberEntry,
    MemberInfo,
    Membership,
    MemberTable,
    StaticMembership,
    Transition,
    restart_incarnation,
)
from rumordb.core.merge import Outcome, decide, merge
from rumordb.core.messages import Message, decode, encode, message_kind
from rumordb.core.node import Node
from rumordb.core.output import Output
from rumordb.core.reads import AskOwners, ListPlan, Local, ReadPlan, merge_pages
from rumordb.core.record import Discarded, Record
from rumordb.core.ring import Ring
from rumordb.core.startup import StartupLoad, read_stored
from rumordb.core.vclock import Order, compare
from rumordb.core.view import NodeView
from rumordb.core.writes import BatchWrite, WriteCommand, WriteResult, WriteStatus

__all__ = [
    "AskOwners",
    "BatchWrite",
    "ClockVerdict",
    "Context",
    "Counters",
    "DecodeError",
    "Discarded",
    "Event",
    "ForgetRefused",
    "InvalidContext",
    "InvalidKey",
    "InvalidMessage",
    "InvalidTransition",
    "ListPlan",
    "Local",
    "MemberEntry",
    "MemberInfo",
    "MemberTable",
    "Membership",
    "Message",
    "Node",
    "NodeConfig",
    "NodeView",
    "Order",
    "Outcome",
    "Output",
    "ReadPlan",
    "Record",
    "Ring",
    "RumorError",
    "Skew",
    "StartupLoad",
    "State",
    "StaticMembership",
    "Transition",
    "WriteCommand",
    "WriteResult",
    "WriteStatus",
    "check_key",
    "compare",
    "decide",
    "decode",
    "decode_context",
    "encode",
    "encode_context",
    "first_bad_key",
    "merge",
    "merge_pages",
    "message_kind",
    "read_stored",
    "restart_incarnation",
]
