"""Following a node's watch stream: where it is, across reconnects (no I/O here).

A watch stream (``GET /kv?watch=true``, newline-delimited JSON, see ``rumordb.live.watch``)
gives out a position with every event. ``Follow`` remembers the last one, so that after a
disconnect (or an ``overflow``: the node dropped a reader that fell behind) the next
request resumes right after it and no change is missed or repeated. Positions belong to
one node: a watch stays on the node it started on.

>>> follow = Follow("user/")
>>> follow.line(b'{"type": "start", "position": "3:10", "node": "n1"}', "http://n1")
>>> follow.request().target
'/kv?watch=true&prefix=user%2F&from=3%3A10'
"""

from __future__ import annotations

import json

from rumordb import api
from rumordb.types import Change

READ_TIMEOUT_S = 45.0  # a live stream sends a heartbeat every 15 s


class Follow:
    def __init__(self, prefix: str = "", position: str | None = None) -> None:
        self.prefix = prefix
        self.position = position
        self.overflows = 0  # times the node dropped this watch for falling behind

    def request(self) -> api.Request:
        return api.watch(self.prefix, self.position)

    def line(self, raw: bytes | str, node: str) -> Change | None:
        """One line of the stream: a ``Change``, or None for a control event."""
        event = json.loads(raw)
        if not isinstance(event, dict):
            return None
        kind = event.get("type")
        if kind == "change":
            change = api.change(event, node)
            self.position = change.position
            return change
        position = event.get("position")
        if isinstance(position, str):
            self.position = position
        if kind == "overflow":
            self.overflows += 1
        return None  # start, heartbeat, overflow, and kinds a newer node may add
