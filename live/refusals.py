"""How peer messages the core refused are reported: a warning, rate-limited.

The core counts every refused message (``decode_errors``, ``InvalidMessage`` by reason:
``/metrics`` shows them all); the log says who sent one and why, at most once per
``REFUSED_LOG_INTERVAL_S``, with the number held back since the last line, so a peer
that floods bad messages cannot flood the log too.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from rumordb.core import InvalidMessage
from rumordb.core.errors import DecodeError

log = structlog.get_logger("rumor.node")

REFUSED_LOG_INTERVAL_S = 10.0


class RateLimitedLog:
    """At most one line per ``interval_s``; the lines held back are counted into the next."""

    __slots__ = ("_last_s", "_suppressed", "interval_s")

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last_s = float("-inf")
        self._suppressed = 0

    def allow(self, now_s: float) -> int | None:
        """None: hold this line back; else how many were held back since the last one."""
        if now_s - self._last_s < self.interval_s:
            self._suppressed += 1
            return None
        self._last_s, suppressed, self._suppressed = now_s, self._suppressed, 0
        return suppressed


class RefusalLog:
    __slots__ = ("_limit", "_mono")

    def __init__(
        self,
        interval_s: float = REFUSED_LOG_INTERVAL_S,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit, self._mono = RateLimitedLog(interval_s), mono

    def refused(self, sender: str, exc: DecodeError) -> None:
        """A message from ``sender`` dropped whole (undecodable, or out of bounds)."""
        reason = exc.reason if isinstance(exc, InvalidMessage) else "undecodable"
        suppressed = self._limit.allow(self._mono())
        if suppressed is not None:
            log.warning(
                "gossip_message_refused",
                sender=sender,
                reason=reason,
                error=str(exc)[:300],
                suppressed_since_last=suppressed,
            )
