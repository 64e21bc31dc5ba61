"""The per-peer send policy: linger, coalescing bound, busy spells, one post in flight."""

from __future__ import annotations

import pytest

from rumordb.core.send_policy import (
    BUSY_POST_BYTES,
    BUSY_POSTS,
    LINGER_BUSY_MS,
    LINGER_MS,
    POST_SPACING_MS,
    PeerSendPolicy,
    Phase,
    linger_ms,
    post_count,
)


@pytest.mark.parametrize(
    ("large_posts", "expected"),
    [
        (0, LINGER_MS),  # the first post of a spell, or small writes
        (1, LINGER_MS),  # one burst (anti-entropy) is not load
        (BUSY_POSTS - 1, LINGER_MS),  # nor a stalled node's backlog, drained in a few posts
        (BUSY_POSTS, LINGER_BUSY_MS),  # sustained load
        (10 * BUSY_POSTS, LINGER_BUSY_MS),
    ],
)
def test_linger_grows_under_load_and_stays_short_when_idle(
    large_posts: int, expected: float
) -> None:
    assert linger_ms(large_posts) == expected


def test_a_backlog_drained_in_a_few_large_posts_keeps_the_short_linger() -> None:
    assert BUSY_POSTS >= 3  # a stalled node's catch-up takes two posts, often three


def test_busy_linger_keeps_ack_to_visible_far_below_50_ms() -> None:
    assert LINGER_MS < LINGER_BUSY_MS <= 25


@pytest.mark.parametrize(
    ("sizes", "bound", "expected"),
    [
        ([], 100, 0),
        ([10, 10, 10], 100, 3),
        ([60, 60, 60], 100, 2),  # the message crossing the bound still goes
        ([500, 1], 100, 1),  # one larger than the bound goes alone
        ([50, 50, 1], 100, 2),  # exactly full: no more
    ],
)
def test_a_post_takes_messages_oldest_first_up_to_the_bound(
    sizes: list[int], bound: int, expected: int
) -> None:
    assert post_count(sizes, bound) == expected


def test_the_first_message_to_an_idle_peer_leaves_at_once() -> None:
    policy = PeerSendPolicy()
    assert LINGER_MS == 0.0
    assert policy.on_enqueue(100.0) == 100.0  # due now: the next loop turn posts it
    assert policy.on_enqueue(100.0) is None  # queued in the same turn: the same post
    assert policy.phase is Phase.LINGERING and policy.due_at_ms == 100.0


def test_messages_queued_during_a_post_leave_a_spacing_after_it_completes() -> None:
    policy = PeerSendPolicy()
    policy.on_enqueue(0.0)
    policy.on_due(100)
    assert policy.on_enqueue(0.5) is None  # one post in flight per peer
    assert policy.on_enqueue(1.0) is None
    assert policy.on_sent(2.0, queued=2) == 2.0 + POST_SPACING_MS  # both in the next post
    policy.on_due(200)
    assert policy.on_enqueue(8.0) is None
    assert policy.on_sent(12.0, queued=1) == 12.0 + POST_SPACING_MS


def test_posts_to_one_peer_leave_at_least_the_spacing_apart() -> None:
    policy = PeerSendPolicy()
    assert policy.on_enqueue(0.0) == 0.0
    policy.on_due(100)
    assert policy.on_sent(1.0, queued=0) is None  # idle again; its last post is kept
    assert policy.on_enqueue(2.0) == 1.0 + POST_SPACING_MS  # a write right behind it waits
    policy.on_due(100)
    assert policy.on_sent(7.0, queued=0) is None
    later = 7.0 + POST_SPACING_MS + 1.0  # idle for longer than the spacing: at once
    assert policy.on_enqueue(later) == later


def test_a_restarted_policy_keeps_the_instant_of_the_last_post() -> None:
    policy = PeerSendPolicy(last_post_ms=10.0)  # the live client after a cancelled post
    assert policy.on_enqueue(11.0) == 10.0 + POST_SPACING_MS


def busy_policy() -> PeerSendPolicy:
    """A peer whose last ``BUSY_POSTS`` posts were large, a post in flight."""
    policy = PeerSendPolicy()
    policy.on_enqueue(0.0)
    for _ in range(BUSY_POSTS):
        policy.on_due(BUSY_POST_BYTES)
        policy.on_sent(0.0, queued=1)
    policy.on_due(BUSY_POST_BYTES)
    return policy


def test_messages_queued_during_a_busy_post_linger_from_their_own_arrival() -> None:
    policy = busy_policy()
    assert policy.on_enqueue(6.0) is None  # one post in flight per peer
    assert policy.on_enqueue(8.0) is None
    assert policy.on_sent(9.0, queued=2) == 6.0 + LINGER_BUSY_MS  # the first of them counts


def test_after_a_slow_post_what_waited_leaves_at_once() -> None:
    policy = busy_policy()
    policy.on_enqueue(6.0)
    assert policy.on_sent(40.0, queued=1) == 40.0 + POST_SPACING_MS  # not 6 + 20: it waited


def test_what_a_full_busy_post_left_behind_lingers_from_its_end() -> None:
    policy = busy_policy()  # the size bound left messages queued, none arrived since
    assert policy.on_sent(9.0, queued=3) == 9.0 + LINGER_BUSY_MS
    policy.on_due(100)
    assert policy.waiting_since_ms is None  # a new post, nothing waiting for it yet


def test_busy_posts_large_posts_in_a_row_make_the_next_linger_long() -> None:
    policy = PeerSendPolicy()
    policy.on_enqueue(0.0)
    for i in range(1, BUSY_POSTS):
        policy.on_due(BUSY_POST_BYTES)
        now = i * 10.0  # each post out for longer than the spacing
        assert policy.on_sent(now, queued=5) == now + POST_SPACING_MS  # a burst is not load
    policy.on_due(BUSY_POST_BYTES)
    assert policy.on_sent(100.0, queued=5) == 100.0 + LINGER_BUSY_MS


def test_a_small_post_ends_the_run_of_large_ones() -> None:
    policy = PeerSendPolicy()
    policy.on_enqueue(0.0)
    for i in range(1, BUSY_POSTS):
        policy.on_due(BUSY_POST_BYTES)
        policy.on_sent(i * 10.0, queued=5)
    policy.on_due(BUSY_POST_BYTES - 1)
    policy.on_sent(100.0, queued=5)
    policy.on_due(BUSY_POST_BYTES)
    assert policy.on_sent(200.0, queued=5) == 200.0 + POST_SPACING_MS


def test_an_idle_peer_forgets_its_busy_spell() -> None:
    policy = PeerSendPolicy()
    policy.on_enqueue(0.0)
    for _ in range(BUSY_POSTS):
        policy.on_due(10 * BUSY_POST_BYTES)
        policy.on_sent(1.0, queued=1)
    policy.on_due(10 * BUSY_POST_BYTES)
    assert policy.on_sent(2.0, queued=0) is None and policy.phase is Phase.IDLE
    assert policy.on_enqueue(50.0) == 50.0 + LINGER_MS


def test_a_post_whose_messages_were_all_dropped_does_not_count_as_load() -> None:
    policy = PeerSendPolicy()
    policy.on_enqueue(0.0)
    policy.on_due(BUSY_POST_BYTES)
    policy.on_sent(1.0, queued=1)
    policy.on_due(0)  # every queued message dropped by a fault
    assert policy.large_posts == 1


def test_calls_out_of_order_are_refused() -> None:
    policy = PeerSendPolicy()
    with pytest.raises(ValueError, match="on_due while idle"):
        policy.on_due(1)
    with pytest.raises(ValueError, match="on_sent while idle"):
        policy.on_sent(0.0, 0)
