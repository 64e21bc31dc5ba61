"""This node's clock against its peers': a majority verdict from heartbeat readings."""

import pytest

from rumordb.core.clock_watch import SAMPLES, WINDOW_MS, ClockWatch, Skew, verdict_of


@pytest.mark.parametrize(
    ("aheads", "skew"),
    [
        ([], Skew.OK),  # alone, or not heard from anyone yet
        ([0, 0], Skew.OK),
        ([6_000, 6_000], Skew.AHEAD),  # the fast node of three: both peers behind it
        ([0, -6_000], Skew.OK),  # a good node of three: only the fast peer disagrees
        ([6_000], Skew.AHEAD),  # two nodes: the direction tells which is ahead
        ([-6_000], Skew.BEHIND),
        ([6_000, 6_000, 0], Skew.AHEAD),
        ([6_000, 0, 0, 6_000], Skew.OK),  # half is not a majority
        ([5_000, 5_000], Skew.OK),  # at the bound is within it
    ],
)
def test_a_majority_of_peers_beyond_the_bound_decides(aheads: list[int], skew: Skew) -> None:
    assert verdict_of(sorted(aheads), 5_000).skew is skew


def test_the_least_delayed_reading_of_a_peer_counts() -> None:
    watch = ClockWatch(5_000)
    watch.heard("p", 1_000, 1_000 + 8_000)  # a reading that sat 8 s in a queue
    assert watch.verdict.skew is Skew.AHEAD
    watch.heard("p", 2_000, 2_000 + 10)
    assert watch.verdict.skew is Skew.OK and watch.verdict.ahead_ms == 10
    for i in range(SAMPLES):  # the prompt reading ages out of the last SAMPLES
        watch.heard("p", 3_000 + i, 3_000 + i + 7_000)
    assert watch.verdict.skew is Skew.AHEAD and watch.verdict.ahead_ms == 7_000


def test_peers_unheard_for_the_window_stop_counting() -> None:
    watch = ClockWatch(5_000)
    watch.heard("p", 0, 60_000)
    assert watch.verdict.skew is Skew.AHEAD and watch.verdict.peers == 1
    assert watch.judge(60_000 + WINDOW_MS + 1).skew is Skew.OK
    assert watch.verdict.peers == 0
