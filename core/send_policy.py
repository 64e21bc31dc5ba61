"""When a batch of gossip leaves for one peer: at once, coalesced while a post is out.

Theory of operation. A node sends each peer its messages in *posts* (one ``POST /gossip``
each, many messages per post), one post in flight per peer. The first message queued to
an idle peer leaves at once, in the next loop turn (with everything queued in the same
turn: the pushes of one flush to one peer share a post). Messages queued while a post is
in flight coalesce and leave when it completes (Nagle's rule: the round trip is the
batching window, so batches grow with load by themselves), or when their own linger
(counted, as Kafka counts it, from the first of them) ends if that is later. When
nothing is queued the peer goes idle and forgets its history, all but the instant its
last post ended: a post to a peer starts at least ``POST_SPACING_MS`` after the last
one to it ended (so what is queued during a post leaves that long after it completes).

Why the spacing: on loopback a post completes in about a millisecond, so under a stream
of writes (wrk, 64 connections, ``sync``) each group commit found its peers idle again
and sent a post of its own; a post and its receipt cost ~100 µs of CPU whatever their
size. Starting each post 5 ms after the last one ended keeps a peer's post rate under
200/s, so writes coalesce under load (replicated durable PUT, 3 nodes, ``bench.request_cost --method PUT
--nodes 3``: 261 µs of CPU per PUT without it, ~208 with a 5 ms linger), while a write
that finds a peer idle for 5 ms or more still leaves at once (200 writes/s: most do).

Why no linger when idle (there was one of 5 ms): at a few hundred writes/s each write
is its own group commit and finds its peers idle, so the linger delayed every write by
5 ms plus a timer wake-up (late on a loaded machine) and coalesced little. Measured with
``bench.http_bench --lag-only --nodes 5 --rate 200 --node-arg=--durability=batch`` at
load 20, origin applied -> applied on all: p50 9.4 / 8.8 ms and p99 35.5 / 35.5 with it,
4.8 / 4.7 and 12.4 / 13.8 without, for 1.25-1.5 -> 1.7-1.9 posts per write (all
nodes) and 2.6-2.9 -> 3.3 ms of CPU per write summed over the five nodes.

The linger is ``LINGER_MS`` (none) unless the last ``BUSY_POSTS`` posts of this busy
spell each carried ``BUSY_POST_BYTES`` or more: then it is ``LINGER_BUSY_MS``. That many
large posts in a row mean sustained load, where a post and a replica commit cost about
100 µs of CPU each whatever their size, so fewer, larger posts leave CPU for clients. A
burst does not slow the writes behind it down: an anti-entropy step, or the backlog a
stalled node (a pause, a starved CPU) flushes when it runs again, drains in two or three
posts; when two large posts in a row counted as load, the writes behind them waited
``LINGER_BUSY_MS`` more each (ack -> visible measured 25-28 ms for whole runs of writes
at 200 writes/s on five loaded nodes, against ~6 ms for the others).

States (per peer)::

    idle --on_enqueue--> lingering(due_at_ms) --on_due--> posting --on_sent--> lingering
                                                                       \\-> idle (empty)

(``lingering`` with ``due_at_ms`` = now when there is no linger: the post is due at once.)

Pure: time comes in as ``now_ms``; the live gossip client and the simulator's network
both drive one ``PeerSendPolicy`` per peer (``on_enqueue`` for every message queued), so
their batching cannot drift apart.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

LINGER_MS = 0.0  # an idle peer: its first message leaves at once
POST_SPACING_MS = 5.0  # a post starts at least this long after the last one ended
LINGER_BUSY_MS = 20.0
BUSY_POST_BYTES = 2048
BUSY_POSTS = 4  # large posts in a row that mean sustained load
MAX_POST_BYTES = 8 * 1024 * 1024  # payload bytes per post (a message crossing it still goes)


def linger_ms(large_posts: int) -> float:
    """The linger after ``large_posts`` posts in a row of ``BUSY_POST_BYTES`` or more."""
    return LINGER_BUSY_MS if large_posts >= BUSY_POSTS else LINGER_MS


def has_room(payload_bytes: int, max_post_bytes: int = MAX_POST_BYTES) -> bool:
    """Whether a post of ``payload_bytes`` so far takes one more message (whatever its
    size: a message larger than the bound still leaves, alone)."""
    return payload_bytes < max_post_bytes


def post_count(sizes: Iterable[int], max_post_bytes: int = MAX_POST_BYTES) -> int:
    """How many queued messages (oldest first, of ``sizes`` bytes) the next post carries."""
    count = total = 0
    for size in sizes:
        if not has_room(total, max_post_bytes):
            break
        count += 1
        total += size
    return count


class Phase(enum.Enum):
    IDLE = "idle"
    LINGERING = "lingering"
    POSTING = "posting"


@dataclass(slots=True)
class PeerSendPolicy:
    """The send state of one peer; the driver owns the queue and the timer."""

    phase: Phase = Phase.IDLE
    due_at_ms: float | None = None
    large_posts: int = 0  # the last posts of this busy spell that were large, in a row
    waiting_since_ms: float | None = None  # the first message queued during this post
    last_post_ms: float = float("-inf")  # when the last post ended (kept while idle)

    def on_enqueue(self, now_ms: float) -> float | None:
        """A message was queued; the instant a post is due if a linger starts now (the
        driver arms a timer for it), else None (a linger or a post is under way)."""
        if self.phase is Phase.POSTING:
            if self.waiting_since_ms is None:
                self.waiting_since_ms = now_ms
            return None
        if self.phase is not Phase.IDLE:
            return None
        return self._linger(now_ms)

    def on_due(self, payload_bytes: int) -> None:
        """The linger ended and a post of ``payload_bytes`` leaves (0: everything queued
        was dropped; the driver then calls ``on_sent`` with nothing queued)."""
        if self.phase is not Phase.LINGERING:
            raise ValueError(f"on_due while {self.phase.value}")
        self.phase, self.due_at_ms = Phase.POSTING, None
        if payload_bytes:
            self.large_posts = self.large_posts + 1 if payload_bytes >= BUSY_POST_BYTES else 0

    def on_sent(self, now_ms: float, queued: int) -> float | None:
        """The post completed (or failed) with ``queued`` messages waiting; the instant
        the next post is due, or None when the peer goes idle."""
        if self.phase is not Phase.POSTING:
            raise ValueError(f"on_sent while {self.phase.value}")
        since, self.waiting_since_ms = self.waiting_since_ms, None
        self.last_post_ms = now_ms
        if queued:
            # What the last post could not carry (its size bound) lingers from now.
            return self._linger(now_ms, now_ms if since is None else since)
        self.phase = Phase.IDLE
        self.large_posts = 0
        return None

    def _linger(self, now_ms: float, since_ms: float | None = None) -> float:
        start = now_ms if since_ms is None else since_ms
        self.phase = Phase.LINGERING
        linger_end = start + linger_ms(self.large_posts)
        self.due_at_ms = max(now_ms, linger_end, self.last_post_ms + POST_SPACING_MS)
        return self.due_at_ms
