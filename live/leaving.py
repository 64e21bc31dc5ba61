"""Leaving the cluster (SIGTERM, ``POST /admin/leave``): after the announcement, the wait.

The runner announces ``left`` to every peer at once (``Node.leave``) and carries out what
that returns like any output (persist, then send). Sharded, the keys this node holds go
to their new owners by the tick loop's maintenance, one window per anti-entropy
interval (``core.lifecycle``), so the leave then waits, polling every ``LEAVE_POLL_S``
and bounded by ``leave_timeout_s``, until none is left or the node stops. Last, the
gossip queues get up to ``LEAVE_FLUSH_S`` to post what they hold, so the announcement
reaches the peers before the process exits. The report says how many keys were handed
off and whether the wait timed out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from rumordb.core import NodeView

LEAVE_POLL_S = 0.1
LEAVE_FLUSH_S = 2.0


async def wait_for_handoff(
    view: NodeView,
    deadline_mono: float,
    running: Callable[[], bool],
    *,
    mono: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    """Wait until no key waits for its owners, ``deadline_mono`` or a stop; the keys left."""
    while view.handoff_remaining() and mono() < deadline_mono and running():
        await sleep(LEAVE_POLL_S)
    return view.handoff_remaining()


def leave_report(node_id: str, held: int, remaining: int, waited_s: float) -> dict[str, Any]:
    """What ``POST /admin/leave`` answers (and the ``node_left`` log line says)."""
    return {
        "node_id": node_id,
        "state": "left",
        "handed_off": held - remaining,
        "remaining": remaining,
        "waited_s": round(waited_s, 3),
        "timed_out": remaining > 0,
    }
