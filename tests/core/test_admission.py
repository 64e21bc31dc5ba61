"""Refusals before anything is applied: our clock, a context, a peer message."""

from __future__ import annotations

import pytest

from rumordb.core import NodeConfig
from rumordb.core.admission import admit, bounds_for, write_refusal
from rumordb.core.bounds import CLOCK_AHEAD, Bounds, InvalidMessage
from rumordb.core.clock_watch import ClockVerdict, Skew
from rumordb.core.context import Context
from rumordb.core.counters import Counters
from rumordb.core.hlc import pack
from rumordb.core.messages import Push, Update
from rumordb.core.record import Record
from rumordb.core.writes import WriteCommand, WriteStatus

NOW = 1_000.0
CONFIG = NodeConfig()


def _bounds(now: float) -> Bounds:
    return bounds_for(now, CONFIG, 3, 0)


def _never(now: float) -> Bounds:
    raise AssertionError("bounds are only needed for a context")


def test_a_node_whose_clock_runs_ahead_refuses_every_client_write() -> None:
    ahead = ClockVerdict(Skew.AHEAD, 60_000, 2, 5_000)
    assert write_refusal(WriteCommand("k", b"v"), ahead, NOW, _never) is WriteStatus.CLOCK_AHEAD
    ok = ClockVerdict(Skew.OK, 0, 2, 5_000)
    assert write_refusal(WriteCommand("k", b"v"), ok, NOW, _never) is None


def test_a_context_beyond_the_bounds_is_refused() -> None:
    ok = ClockVerdict(Skew.OK, 0, 2, 5_000)
    future = Context([("n1", 1)], pack(int(NOW * 1000) + 10**9))
    assert write_refusal(WriteCommand("k", b"v", context=future), ok, NOW, _bounds) is not None
    fine = Context([("n1", 1)], pack(int(NOW * 1000)))
    assert write_refusal(WriteCommand("k", b"v", context=fine), ok, NOW, _bounds) is None


def test_a_message_out_of_bounds_is_refused_whole_and_counted_by_reason() -> None:
    counters = Counters()
    far = pack(int(NOW * 1000) + 10**9)
    future = Record(b"f", "text/plain", {"n2": far}, far, "n2")
    with pytest.raises(InvalidMessage) as refused:
        admit(Push("n2", [], [Update("k", future)]), _bounds(NOW), 512, counters)
    assert refused.value.reason == CLOCK_AHEAD
    assert (counters.messages_refused, counters.messages_clock_ahead) == (1, 1)
    good = Record(b"g", "text/plain", {"n2": pack(1)}, pack(1), "n2")
    admit(Push("n2", [], [Update("k", good)]), _bounds(NOW), 512, counters)
    assert counters.messages_refused == 1
