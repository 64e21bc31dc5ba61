"""The live send path in the simulator: per-peer queues coalesced into posts.

With ``[network] posts = true`` a message from ``src`` to ``dst`` does not travel alone:
it joins the ``(src, dst)`` queue, and ``core.send_policy`` (the live gossip client's
rule) decides when a post leaves with what. A post then

* is dropped whole across a partition (the live node's block fault drops its messages
  before posting), and loses single messages on a lossy link (the loss fault does too);
* travels the link's delay, then waits for the receiver's CPU (one post at a time per
  node) and costs it ``post_cost_us + message_cost_us * messages`` (``sim.calibration``);
  its messages are delivered when that work is done;
* completes (the sender may post again) one link delay after that, as its HTTP response
  comes back; a post to a node that is down fails after one link delay.

Members' addresses are URLs as long as a local live node's (``live_address``): membership
entries ride on every gossip message. Bytes are counted as ``/metrics`` counts them: the sealed body (payload, envelope, seal);
the HTTP heads apart. Every random draw is the network's, in event order: reproducible.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import simpy

from rumordb.core.send_policy import PeerSendPolicy, post_count
from rumordb.sim.calibration import Constants
from rumordb.sim.metrics import Traffic
from rumordb.sim.network import Fate, Network

LIVE_PORT_BASE = 40000  # the free ports a local live cluster gets are about this long


def live_address(index: int) -> str:
    """The address a live node would announce (membership entries carry it in gossip)."""
    return f"http://127.0.0.1:{LIVE_PORT_BASE + index}"


Deliver = Callable[[str, bytes, float], None]  # (dst, data, delay_s): the engine delivers


@dataclass(slots=True)
class PostStats:
    posts: int = 0
    messages: int = 0  # messages that left in posts (not dropped before posting)
    sealed_bytes: int = 0  # what /metrics counts: sealed bodies
    head_bytes: int = 0  # HTTP request heads
    failed: int = 0  # posts to a node that was down


@dataclass(slots=True)
class _Peer:
    policy: PeerSendPolicy = field(default_factory=PeerSendPolicy)
    queue: deque[bytes] = field(default_factory=deque)


class Posts:
    def __init__(
        self,
        env: simpy.Environment,
        network: Network,
        constants: Constants,
        traffic: Traffic,
        deliver: Deliver,
        is_up: Callable[[str], bool],
        record: Callable[[str], None],
    ) -> None:
        self.env = env
        self.network = network
        self.constants = constants
        self.traffic = traffic
        self.stats = PostStats()
        self._deliver = deliver
        self._is_up = is_up
        self._record = record
        self._peers: dict[tuple[str, str], _Peer] = {}
        self._busy_until: dict[str, float] = {}  # each receiver's CPU, in sim seconds
        self.sample_bytes = 0  # sealed bytes since the sampler last took them

    def enqueue(self, src: str, dst: str, data: bytes) -> None:
        peer = self._peers.get((src, dst))
        if peer is None:
            peer = self._peers[(src, dst)] = _Peer()
        peer.queue.append(data)
        self._arm(src, dst, peer, peer.policy.on_enqueue(self.env.now * 1000))

    def _arm(self, src: str, dst: str, peer: _Peer, due_ms: float | None) -> None:
        if due_ms is None:
            return
        delay_s = max(0.0, due_ms / 1000 - self.env.now)
        self.env.timeout(delay_s).callbacks.append(partial(self._due, src, dst, peer))

    def _due(self, src: str, dst: str, peer: _Peer, _event: Any) -> None:
        queue = peer.queue
        batch = [queue.popleft() for _ in range(post_count(map(len, queue)))]
        fate, delay_s, lost = self.network.post_fate(src, dst, len(batch))
        if fate is not Fate.DELIVERED:
            self._blocked(fate, len(batch))
            batch = []
        elif any(lost):
            self.traffic.lost += sum(lost)
            batch = [data for data, gone in zip(batch, lost, strict=True) if not gone]
        peer.policy.on_due(sum(map(len, batch)))
        self._record(f"post {src} {dst} {len(batch)} {fate.value} {delay_s!r}")
        if not batch:
            self._arm(src, dst, peer, peer.policy.on_sent(self.env.now * 1000, len(queue)))
            return
        done_s = self._post(src, dst, batch, delay_s)
        self.env.timeout(done_s).callbacks.append(partial(self._sent, src, dst, peer))

    def _post(self, src: str, dst: str, batch: list[bytes], delay_s: float) -> float:
        """Count and deliver one post; the seconds until its response is back."""
        c, stats = self.constants, self.stats
        sealed = c.sealed_bytes(sum(map(len, batch)), len(batch), src, dst)
        stats.posts += 1
        stats.messages += len(batch)
        stats.sealed_bytes += sealed
        stats.head_bytes += c.http_head_bytes + len(src) + len(str(sealed))
        self.sample_bytes += sealed
        now = self.env.now
        arrival = now + delay_s
        if not self._is_up(dst):
            stats.failed += 1
            self.traffic.to_down_node += len(batch)
            return 2 * delay_s
        start = max(arrival, self._busy_until.get(dst, 0.0))
        done = start + c.cost_s(len(batch))
        self._busy_until[dst] = done
        for data in batch:
            self._deliver(dst, data, done - now)
        return done - now + delay_s

    def _sent(self, src: str, dst: str, peer: _Peer, _event: Any) -> None:
        self._arm(src, dst, peer, peer.policy.on_sent(self.env.now * 1000, len(peer.queue)))

    def _blocked(self, fate: Fate, count: int) -> None:
        if fate is Fate.PARTITIONED:
            self.traffic.partitioned += count
        else:
            self.traffic.unreachable += count
