"""The three periodic jobs: first deadlines jittered, then one interval apart."""

import random

from rumordb.core.timers import Timers


def test_without_jitter_everything_is_due_at_start_then_each_on_its_interval() -> None:
    timers = Timers(probe_interval_ms=1000, gossip_interval_ms=200, anti_entropy_interval_ms=500)
    timers.start(10.0, None)
    assert timers.next_deadline() == 10.0
    due = timers.fire(10.0)
    assert due.probe and due.gossip and due.anti_entropy
    assert timers.next_deadline() == 10.2
    due = timers.fire(10.2)
    assert due.gossip and not due.probe and not due.anti_entropy


def test_jitter_spreads_first_deadlines_within_one_interval() -> None:
    timers = Timers(1000, 200, 500)
    timers.start(0.0, random.Random(1))
    assert 0 <= timers.next_probe < 1.0 and 0 <= timers.next_gossip < 0.2
    assert 0 <= timers.next_anti_entropy < 0.5


def test_nothing_is_due_before_its_deadline() -> None:
    timers = Timers(1000, 200, 500)
    timers.start(5.0, None)
    timers.fire(5.0)
    due = timers.fire(5.1)
    assert (due.probe, due.gossip, due.anti_entropy) == (False, False, False)
