"""Reporting the clock verdict: one log line per change, a /health problem while outside."""

from __future__ import annotations

from structlog.testing import capture_logs

from rumordb.core import ClockVerdict, Skew
from rumordb.live.clock_report import ClockLog, clock_problem

OK = ClockVerdict(Skew.OK, 40, 3, 500)
AHEAD = ClockVerdict(Skew.AHEAD, 2_000, 3, 500)
BEHIND = ClockVerdict(Skew.BEHIND, -1_500, 2, 500)


def test_a_clock_within_the_bound_is_no_problem() -> None:
    assert clock_problem(OK) is None


def test_a_clock_ahead_says_that_client_writes_are_refused() -> None:
    assert clock_problem(AHEAD) == (
        "clock: 2000 ms ahead of the median of 3 peer(s), beyond the 500 ms skew bound; "
        "client writes are refused (503) until it is fixed"
    )


def test_a_clock_behind_says_that_peers_versions_ahead_are_refused() -> None:
    assert clock_problem(BEHIND) == (
        "clock: 1500 ms behind the median of 2 peer(s), beyond the 500 ms skew bound; "
        "versions from peers ahead of this clock are refused"
    )


def test_each_change_of_verdict_is_logged_once() -> None:
    clock_log = ClockLog()
    with capture_logs() as logs:
        for verdict in (OK, AHEAD, AHEAD, BEHIND, BEHIND, OK, OK):
            clock_log.observe(verdict)
    assert [(entry["event"], entry.get("skew")) for entry in logs] == [
        ("clock_out_of_bound", "ahead"),
        ("clock_out_of_bound", "behind"),
        ("clock_within_bound", None),
    ]
    assert logs[0]["writes_refused"] is True and logs[1]["writes_refused"] is False
