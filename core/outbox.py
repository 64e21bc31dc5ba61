"""Outgoing messages: encoded once, batched to the size limit, counted, put in an Output.

Every message carries a sample of the member table (``entries``), so membership rides
on data; one ``encode`` per message however many targets get it.
"""

from __future__ import annotations

from collections.abc import Callable

from rumordb.core.counters import Counters
from rumordb.core.membership import MemberEntry
from rumordb.core.messages import Heartbeat, Message, Push, Update, encode
from rumordb.core.output import Output
from rumordb.core.rumors import chunks


class Outbox:
    __slots__ = ("_counters", "_entries", "max_batch", "node_id")

    def __init__(
        self,
        node_id: str,
        counters: Counters,
        entries: Callable[[], list[MemberEntry]],
        max_batch: int,
    ) -> None:
        self.node_id = node_id
        self._counters = counters
        self._entries = entries
        self.max_batch = max_batch

    def entries(self) -> list[MemberEntry]:
        return self._entries()

    def send(self, out: Output, targets: list[str], message: Message) -> None:
        if not targets:
            return
        data = encode(message)
        sent = len(targets)
        out.messages.extend(zip(targets, [data] * sent, strict=True))  # (target, data), in C
        counters = self._counters
        counters.messages_sent += sent
        counters.bytes_sent += len(data) * sent

    def beat(self, out: Output, targets: list[str], now: float) -> None:
        """This node's heartbeat, stamped with wall time ``now``, to ``targets`` (none:
        nothing is built, so the member sample draws nothing)."""
        if targets:
            self.send(out, targets, Heartbeat(self.node_id, self._entries(), int(now * 1000)))

    def push(
        self,
        out: Output,
        targets: list[str],
        updates: list[Update],
        *,
        relay: bool = True,
        ack: bool = False,
    ) -> None:
        """``updates`` to ``targets`` in Pushes of at most ``max_batch`` updates each."""
        if not targets or not updates:
            return  # nothing to build: a message for nobody (or of nothing) is not sent
        if len(updates) <= self.max_batch:  # one message (nearly every push): no slicing
            self.send(out, targets, Push(self.node_id, self._entries(), updates, ack, relay))
            return
        for chunk in chunks(updates, self.max_batch):
            self.send(out, targets, Push(self.node_id, self._entries(), chunk, ack, relay))

    def push_each(
        self,
        out: Output,
        grouped: dict[str, list[Update]],
        *,
        relay: bool = True,
        ack: bool = False,
    ) -> None:
        """Each target its own updates (``grouped``: target -> updates)."""
        for target, updates in grouped.items():
            self.push(out, [target], updates, relay=relay, ack=ack)
