"""Prometheus metrics of one live node, in a registry of its own.

Each app gets its own ``CollectorRegistry`` (never the process-global one), so tests can
build several apps in one process. Request-path metrics are updated inline through
pre-bound label children (a dict lookup, no label parsing per request); everything the
core already counts (keys, tombstones, members, anti-entropy sessions, LWW overwrites) is
read from the node when ``/metrics`` is scraped, so the hot path pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from core import Node

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LAG_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class NodeCollector(Collector):
    """Reads the core's counters and the member table at scrape time."""

    def __init__(
        self, node_fn: Callable[[], Node | None], discovery_rejected_fn: Callable[[], int]
    ) -> None:
        self._node_fn = node_fn
        self._discovery_rejected_fn = discovery_rejected_fn

    def collect(self) -> Iterator[Metric]:
        yield _counter(
            "rumor_discovery_rejected",
            "Discovery datagrams dropped: unsigned, mis-signed, replayed or malformed.",
            self._discovery_rejected_fn(),
        )
        node = self._node_fn()
        if node is None:
            return
        live, tombstones = node.key_count()
        yield _gauge("rumor_keys", "Live keys held by this node.", live)
        yield _gauge("rumor_tombstones", "Tombstones held by this node.", tombstones)
        members = GaugeMetricFamily("rumor_members", "Members by state.", labels=["state"])
        counts: dict[str, int] = {"alive": 0, "suspect": 0, "dead": 0, "left": 0}
        for member in node.membership.members() if hasattr(node.membership, "members") else []:
            counts[member.state.value] = counts.get(member.state.value, 0) + 1
        for state, count in counts.items():
            members.add_metric([state], count)
        yield members
        c = node.counters
        yield _counter(
            "rumor_anti_entropy_sessions", "Anti-entropy sessions started.", c.anti_entropy_sessions
        )
        yield _counter(
            "rumor_anti_entropy_keys_sent",
            "Records sent by anti-entropy.",
            c.anti_entropy_keys_sent,
        )
        yield _counter(
            "rumor_lww_concurrent_overwrites",
            "Concurrent versions decided by last-writer-wins.",
            c.lww_overwrites,
        )
        yield _counter("rumor_updates_applied", "Versions applied from peers.", c.updates_applied)
        yield _counter("rumor_updates_stale", "Stale versions ignored.", c.updates_stale)
        yield _counter("rumor_tombstones_purged", "Tombstones purged.", c.tombstones_purged)
        yield _counter("rumor_message_decode_errors", "Undecodable messages.", c.decode_errors)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class Metrics:
    """The metrics of one node; ``render()`` is the body of ``GET /metrics``."""

    def __init__(
        self,
        node_fn: Callable[[], Node | None] = lambda: None,
        discovery_rejected_fn: Callable[[], int] = lambda: 0,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = Counter(
            "rumor_http_requests",
            "HTTP requests by route and status.",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "rumor_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.gossip_messages = Counter(
            "rumor_gossip_messages", "Node-to-node messages.", ["direction"], registry=r
        )
        self.gossip_bytes = Counter(
            "rumor_gossip_bytes", "Node-to-node bytes (sealed frames).", ["direction"], registry=r
        )
        self.gossip_dropped = Counter(
            "rumor_gossip_dropped",
            "Outgoing messages dropped, by reason (overflow, fault, error).",
            ["reason"],
            registry=r,
        )
        self.unauthenticated = Counter(
            "rumor_unauthenticated_dropped",
            "Node-to-node messages dropped because they were not authentic.",
            ["channel"],
            registry=r,
        )
        self.replication_lag = Histogram(
            "rumor_replication_lag_seconds",
            "Time from a version's creation (its HLC) to its arrival at this node.",
            buckets=LAG_BUCKETS_S,
            registry=r,
        )
        self.forwarded = Counter(
            "rumor_forwarded_requests", "Requests forwarded to an owner.", ["outcome"], registry=r
        )
        r.register(NodeCollector(node_fn, discovery_rejected_fn))
        self._request_children: dict[tuple[str, int], Counter] = {}
        self._latency_children: dict[str, Histogram] = {}
        self.messages_in = self.gossip_messages.labels("in")
        self.messages_out = self.gossip_messages.labels("out")
        self.bytes_in = self.gossip_bytes.labels("in")
        self.bytes_out = self.gossip_bytes.labels("out")

    def observe_request(self, route: str, status: int, elapsed_s: float) -> None:
        child = self._request_children.get((route, status))
        if child is None:
            child = self._request_children[(route, status)] = self.requests.labels(route, status)
        child.inc()
        hist = self._latency_children.get(route)
        if hist is None:
            hist = self._latency_children[route] = self.latency.labels(route)
        hist.observe(elapsed_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
