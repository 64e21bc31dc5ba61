"""The live send path in the simulator: per-peer queues coalesced into posts.

With ``[network] posts = true`` a message from ``src`` to ``dst`` does not travel alone:
it joins the ``(src, dst)`` queue, and ``core.send_policy`` (the live gossip client's
rule) decides when a post leaves with what. A post then

* is dropped whole across a partition (the live node's block fault drops its messages
  before posting), and loses single messages on a lossy link (the loss fault does too);
* takes its sender's event loop first (``sim.service``: seal, HTTP client), behind
  whatever that node is doing, and under ``sync`` durability not before the node's client
  commit in progress is on disk (the live runner defers every send until then);
* travels the link's delay, then waits for the receiver's event loop (one job at a time
  per node, in arrival order) and costs it per post, per message and per version
  (``sim.calibration``); its messages are delivered when that work is done;
* completes (the sender may post again) one link delay after that, as its HTTP response
  comes back; a post to a node that is down fails after one link delay;
* carries back, in that response, the receiver's replies to its sender (``reply``: an
  anti-entropy digest's answer, a sync's): no linger and no loss (the live loss fault
  drops only posted messages), counted as sent, served by the sender's loop when the
  response arrives; a reply to a reply is posted (the live runner sends those).

A client write takes its node's loop too (``client_write``), and under ``sync``
durability a group commit of the node's disk (``sim.service.Commits``).

Beside the protocol (``SideWork``, from the scenario): each node's loop spends its
background CPU (its own timers, discovery) in one job per timer period, its first
offset by its place in the node list (live nodes start one after the other); and with
an observer (``[network] observer_sample_ms``, the compare driver), each version a node
stores costs it its watch line and the observer the reading of it, each client write
costs the observer its request, and every sample period each node renders ``/metrics``
for the observer. The observer is a server of its own (one event loop) on the machine's
shared cores. None of it draws a random number.

Members' addresses are URLs as long as a local live node's (``live_address``): membership
entries ride on every gossip message. Bytes are counted as ``/metrics`` counts them: the sealed body (payload, envelope, seal);
the HTTP heads apart. Every random draw is the network's, in event order: reproducible.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import msgspec
import simpy

from rumordb.core.messages import message_kind
from rumordb.core.send_policy import PeerSendPolicy, post_count
from rumordb.sim.calibration import Constants
from rumordb.sim.metrics import Traffic
from rumordb.sim.network import Fate, Network
from rumordb.sim.service import Commits, Servers

LIVE_PORT_BASE = 40000
OBSERVER = "(observer)"  # the observer's server (no node id has parentheses)  # the free ports a local live cluster gets are about this long


def live_address(index: int) -> str:
    """The address a live node would announce (membership entries carry it in gossip)."""
    return f"http://127.0.0.1:{LIVE_PORT_BASE + index}"


Via = tuple[str, float]  # a post's sender and its link delay: where replies go, how late
# (dst, data, delay_s, via): the engine delivers (via: the post it came in, if any)
Deliver = Callable[[str, bytes, float, Via | None], None]


@dataclass(slots=True)
class PostStats:
    posts: int = 0
    messages: int = 0  # messages that left in posts (not dropped before posting)
    sealed_bytes: int = 0  # what /metrics counts: sealed bodies
    head_bytes: int = 0  # HTTP request heads
    failed: int = 0  # posts to a node that was down
    busy_s: float = 0.0  # service time of every node's loop (sim.service)
    observer_s: float = 0.0  # the observer's (its share of busy_s)
    core_waited_s: float = 0.0  # time work waited for one of the machine's cores
    longest_job_s: float = 0.0  # the longest single job of any node's loop
    waited_s: float = 0.0  # time work waited for a busy or sleeping loop
    commits: int = 0  # durable group commits (sync durability)


@dataclass(frozen=True, slots=True)
class SideWork:
    """What runs beside the protocol: the nodes, their timer period, how often an
    observer samples them (0: no observer, so no watch streams either)."""

    node_ids: Sequence[str]
    tick_s: float
    sample_s: float = 0.0


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
        servers: Servers | None = None,
        durable: bool = False,
        side: SideWork | None = None,
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
        self.servers = servers or Servers()  # each node's event loop
        self.commits = Commits()  # each node's disk, when ``durable`` (sync)
        self._durable = durable
        self.sample_bytes = 0  # sealed bytes since the sampler last took them
        self._observed = side is not None and side.sample_s > 0
        if side is not None:
            self._start_side_work(side)

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
        self._count(src, dst, batch)
        ready_s = max(self.env.now, self.commits.on_disk_s(src)) if self._durable else self.env.now
        left_s = self.servers.serve(src, ready_s, self.constants.send_s(len(batch)))
        arrive = partial(self._arrive, src, dst, peer, batch, delay_s)
        self.env.timeout(left_s + delay_s - self.env.now).callbacks.append(arrive)

    def _count(self, src: str, dst: str, batch: list[bytes]) -> None:
        """What the sender's ``/metrics`` count for one post."""
        c, stats = self.constants, self.stats
        sealed = c.sealed_bytes(sum(map(len, batch)), len(batch), src, dst)
        stats.posts += 1
        stats.messages += len(batch)
        stats.sealed_bytes += sealed
        stats.head_bytes += c.http_head_bytes + len(src) + len(str(sealed))
        self.sample_bytes += sealed

    def _arrive(
        self, src: str, dst: str, peer: _Peer, batch: list[bytes], delay_s: float, _event: Any
    ) -> None:
        """A post reaches ``dst``: it queues for its loop; the response goes back after."""
        now = self.env.now
        if not self._is_up(dst):
            self.stats.failed += 1
            self.traffic.to_down_node += len(batch)
            done_s = now + delay_s
        else:
            done_s = self.servers.serve(dst, now, self._receive_s(batch))
            for data in batch:
                self._deliver(dst, data, done_s - now, (src, delay_s))
            done_s += delay_s
        self.env.timeout(done_s - now).callbacks.append(partial(self._sent, src, dst, peer))

    def reply(self, src: str, dst: str, batch: list[bytes], delay_s: float) -> None:
        """``src``'s replies to a post from ``dst``, in its response (one link delay)."""
        c, stats = self.constants, self.stats
        sealed = c.sealed_bytes(sum(map(len, batch)), len(batch), src, dst)
        stats.messages += len(batch)
        stats.sealed_bytes += sealed
        self.sample_bytes += sealed
        self._record(f"reply {src} {dst} {len(batch)} {delay_s!r}")
        self.env.timeout(delay_s).callbacks.append(partial(self._replied, dst, batch))

    def _replied(self, dst: str, batch: list[bytes], _event: Any) -> None:
        """A response with replies reaches the post's sender: its loop reads them."""
        now = self.env.now
        if not self._is_up(dst):
            self.traffic.to_down_node += len(batch)
            return
        done_s = self.servers.serve(dst, now, self._receive_s(batch))
        for data in batch:
            self._deliver(dst, data, done_s - now, None)

    def _receive_s(self, batch: list[bytes]) -> float:
        updates = members = 0
        for data in batch:
            carried = carried_counts(data)
            updates += carried[0]
            members += carried[1]
        return self.constants.receive_s(len(batch), updates, members)

    def client_write(self, node_id: str) -> None:
        """A client write at ``node_id`` now: its loop's work, and under ``sync`` durability
        a group commit that the node's next sends wait for (``_due``)."""
        now = self.env.now
        if self._observed:  # the observer sends the request
            self._side_job(OBSERVER, self.constants.observer_write_cost_us)
        done_s = self.servers.serve(node_id, now, self.constants.write_s())
        if self._durable:
            self.commits.commit(node_id, done_s, self.constants.commit_cost_us / 1e6)

    def stored(self, node_id: str, versions: int) -> None:
        """``node_id`` stored ``versions`` now: under an observer, each is a watch line
        the node writes (after the apply: it delays what its loop does next) and the
        observer reads."""
        if not self._observed or versions <= 0:
            return
        c = self.constants
        self._side_job(node_id, c.watch_cost_us * versions)
        self._side_job(OBSERVER, c.observer_event_cost_us * versions)

    def _side_job(self, server: str, cost_us: float) -> None:
        """Work beside the protocol, now; none (a constant the calibration has not
        measured) takes no server, so it draws no wake-up either."""
        if cost_us > 0:
            self.servers.serve(server, self.env.now, cost_us / 1e6)

    def _start_side_work(self, side: SideWork) -> None:
        count = max(1, len(side.node_ids))
        background_us = self.constants.background_cost_us_per_s * side.tick_s
        if background_us > 0:
            for i, node_id in enumerate(side.node_ids):
                first_s = side.tick_s * i / count
                self._every(first_s, side.tick_s, partial(self._background, node_id, background_us))
        observer_costs = self.constants.metrics_cost_us + self.constants.observer_sample_cost_us
        if side.sample_s > 0 and observer_costs > 0:
            self._every(side.sample_s, side.sample_s, partial(self._sample, side.node_ids))

    def _every(self, first_s: float, period_s: float, job: Callable[[], None]) -> None:
        def again(_event: Any) -> None:
            job()
            self.env.timeout(period_s).callbacks.append(again)

        self.env.timeout(first_s).callbacks.append(again)

    def _background(self, node_id: str, cost_us: float) -> None:
        if self._is_up(node_id):
            self._side_job(node_id, cost_us)

    def _sample(self, node_ids: Sequence[str]) -> None:
        """The observer asks every up node for its ``/metrics``; each renders them."""
        c = self.constants
        for node_id in node_ids:
            if self._is_up(node_id):
                self._side_job(OBSERVER, c.observer_sample_cost_us)
                self._side_job(node_id, c.metrics_cost_us)

    def crashed(self, node_id: str) -> None:
        """Its process is gone: the work its loop had queued with it."""
        self.servers.idle(node_id)

    def finish(self) -> PostStats:
        """The stats, with the service model's totals."""
        stats = self.stats
        servers = self.servers
        stats.busy_s, stats.waited_s = servers.busy_s, servers.waited_s
        stats.observer_s = servers.busy_of.get(OBSERVER, 0.0)
        stats.core_waited_s = servers.core_waited_s
        stats.longest_job_s = max(
            (s for node, s in servers.longest_of.items() if node != OBSERVER), default=0.0
        )
        stats.commits = self.commits.commits
        return stats

    def _sent(self, src: str, dst: str, peer: _Peer, _event: Any) -> None:
        self._arm(src, dst, peer, peer.policy.on_sent(self.env.now * 1000, len(peer.queue)))

    def _blocked(self, fate: Fate, count: int) -> None:
        if fate is Fate.PARTITIONED:
            self.traffic.partitioned += count
        else:
            self.traffic.unreachable += count


_MEMBER_KINDS = frozenset(("push", "ack", "hb"))  # messages whose third field is members


def carried_counts(data: bytes) -> tuple[int, int]:
    """(versions, membership entries) an encoded message carries, read without building
    them: a ``push``'s or a ``sync``'s versions (fourth field), a ``push``'s, an
    ``ack``'s or a heartbeat's members (third field)."""
    kind = message_kind(data)
    if kind not in _MEMBER_KINDS and kind != "sync":
        return 0, 0
    _, message = msgspec.msgpack.decode(data, type=tuple[int, list[msgspec.Raw]])
    versions = 0
    if kind in ("push", "sync"):
        versions = len(msgspec.msgpack.decode(message[3], type=list[msgspec.Raw]))
    members = 0
    if kind in _MEMBER_KINDS:
        members = len(msgspec.msgpack.decode(message[2], type=list[msgspec.Raw]))
    return versions, members
