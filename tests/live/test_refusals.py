"""Refused peer messages: logged with sender and reason, at most once per interval."""

from __future__ import annotations

from structlog.testing import capture_logs

from rumordb.core import InvalidMessage
from rumordb.core.errors import DecodeError
from rumordb.live.refusals import RateLimitedLog, RefusalLog


def test_a_rate_limited_log_counts_the_lines_it_held_back() -> None:
    limited = RateLimitedLog(10.0)
    assert limited.allow(100.0) == 0
    assert limited.allow(101.0) is None and limited.allow(109.9) is None
    assert limited.allow(110.0) == 2


def test_a_refusal_names_its_sender_and_reason_and_counts_those_held_back() -> None:
    clock = [50.0]
    refusals = RefusalLog(10.0, mono=lambda: clock[0])
    with capture_logs() as logs:
        refusals.refused("n2", InvalidMessage("an HLC far ahead", "clock_ahead"))
        for _ in range(3):
            clock[0] += 1.0
            refusals.refused("n3", DecodeError("not MessagePack"))
        clock[0] += 10.0
        refusals.refused("n3", DecodeError("x" * 1000))
    assert [(e["sender"], e["reason"], e["suppressed_since_last"]) for e in logs] == [
        ("n2", "clock_ahead", 0),
        ("n3", "undecodable", 3),
    ]
    assert logs[0]["error"] == "an HLC far ahead" and len(logs[1]["error"]) == 300
