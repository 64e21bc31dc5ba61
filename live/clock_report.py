"""How this node reports its clock against its peers' (``core.clock_watch``'s verdict).

The core decides whether this node's wall clock is within the skew bound of the median
of its peers' (and refuses client writes while it runs ahead); the runner reports it:
one log line when the clock leaves the bound or re-enters it (not one per tick), and a
``/health`` problem for as long as it stays outside.
"""

from __future__ import annotations

import structlog

from rumordb.core import ClockVerdict, Skew

log = structlog.get_logger("rumor.node")


def clock_problem(verdict: ClockVerdict) -> str | None:
    """The ``/health`` line of a clock outside the skew bound (None: within it)."""
    if verdict.skew is Skew.OK:
        return None
    side = "ahead of" if verdict.skew is Skew.AHEAD else "behind"
    text = (
        f"clock: {abs(verdict.ahead_ms)} ms {side} the median of {verdict.peers} peer(s), "
        f"beyond the {verdict.bound_ms} ms skew bound"
    )
    if verdict.skew is Skew.AHEAD:
        return text + "; client writes are refused (503) until it is fixed"
    return text + "; versions from peers ahead of this clock are refused"


class ClockLog:
    """Logs each change of the verdict (``observe`` it after every tick)."""

    __slots__ = ("skew",)

    def __init__(self) -> None:
        self.skew = Skew.OK  # the last verdict logged

    def observe(self, verdict: ClockVerdict) -> None:
        if verdict.skew is self.skew:
            return
        self.skew = verdict.skew
        if verdict.skew is Skew.OK:
            log.info("clock_within_bound", ahead_ms=verdict.ahead_ms, peers=verdict.peers)
            return
        log.warning(
            "clock_out_of_bound",
            skew=verdict.skew.value,
            ahead_ms=verdict.ahead_ms,
            bound_ms=verdict.bound_ms,
            peers=verdict.peers,
            writes_refused=verdict.skew is Skew.AHEAD,
        )
