"""Prometheus metrics of one live node, in a registry of its own.

Each app gets its own ``CollectorRegistry`` (never the process-global one), so tests can
build several apps in one process. The node's state (keys, tombstones, members, clock) is
read through its view when ``/metrics`` is scraped; what the core counts (anti-entropy
sessions, LWW overwrites, ...) comes out of each tick's ``Output.counter_deltas``, which
the runner adds up here (``count_node``), so the hot path pays nothing for either.

The hot-path metrics (requests and their latency, gossip messages and bytes, replication
lag, observed once per request or per replicated record) are plain counters and bucket
arrays, exported by a collector at scrape time. They are only ever touched from the
event loop's thread, so they need none of ``prometheus_client``'s per-update locking and
validation, which cost several microseconds per request (measured with py-spy: about 5%
of a write's CPU). Rare events (drops, rejected messages, forwards) keep ordinary
``prometheus_client`` counters.
"""

from __future__ import annotations

import collections
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from rumordb.core.counters import Counters, add_deltas

if TYPE_CHECKING:
    from rumordb.core import Node
    from rumordb.live.storage import StorageStats, StorageUsage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LAG_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class NodeCollector(Collector):
    """Reads the member table at scrape time, and the core's counts the ticks brought."""

    def __init__(
        self,
        node_fn: Callable[[], Node | None],
        discovery_rejected_fn: Callable[[], int],
        storage_fn: Callable[[], StorageStats | None],
        counts: Counters,
        usage_fn: Callable[[], StorageUsage | None] = lambda: None,
    ) -> None:
        self._counts = counts
        self._node_fn = node_fn
        self._discovery_rejected_fn = discovery_rejected_fn
        self._storage_fn = storage_fn
        self._usage_fn = usage_fn

    def collect(self) -> Iterator[Metric]:
        yield _counter(
            "rumor_discovery_rejected",
            "Discovery datagrams dropped: unsigned, mis-signed, replayed or malformed.",
            self._discovery_rejected_fn(),
        )
        stats = self._storage_fn()
        if stats is not None:
            yield _counter(
                "rumor_storage_commits", "SQLite transactions (group commits).", stats.commits
            )
            yield _counter(
                "rumor_storage_records_written", "Records written to disk.", stats.records_written
            )
            yield _counter(
                "rumor_storage_compactions",
                "Folds of the commit log into the keyed records table.",
                stats.compactions,
            )
            yield _counter(
                "rumor_storage_commit_failures",
                "Group commits whose transaction failed (their writes got 503).",
                stats.commit_failures,
            )
            yield _counter(
                "rumor_storage_encode_failures",
                "Writes refused because a record could not be encoded (503).",
                stats.encode_failures,
            )
            yield _gauge(
                "rumor_storage_failing_commits",
                "Consecutive failed commits now (0: this node persists; >0: degraded).",
                stats.failing_commits,
            )
            yield _counter(
                "rumor_storage_corrupt_skipped",
                "Stored records or log rows skipped at start because they did not decode.",
                stats.corrupt_skipped,
            )
            yield _counter(
                "rumor_storage_pages_reclaimed",
                "Free database pages given back to the file system (incremental vacuum).",
                stats.pages_reclaimed,
            )
        yield from _usage_gauges(self._usage_fn())
        node = self._node_fn()
        if node is None:
            return
        view = node.view
        live, tombstones = view.key_count()
        yield _gauge("rumor_keys", "Live keys held by this node.", live)
        yield _gauge("rumor_tombstones", "Tombstones held by this node.", tombstones)
        members = GaugeMetricFamily("rumor_members", "Members by state.", labels=["state"])
        counts: dict[str, int] = {"alive": 0, "suspect": 0, "dead": 0, "left": 0}
        for member in view.members():
            counts[member.state.value] = counts.get(member.state.value, 0) + 1
        for state, count in counts.items():
            members.add_metric([state], count)
        yield members
        c = self._counts  # the deltas of every tick so far (Metrics.count_node)
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
        yield _counter("rumor_keys_expired", "Values whose TTL ran out here.", c.keys_expired)
        yield _counter("rumor_message_decode_errors", "Undecodable messages.", c.decode_errors)
        refused = CounterMetricFamily(
            "rumor_peer_messages_refused",
            "Peer messages dropped whole because an update was out of bounds (core.bounds): "
            "an HLC beyond the clock skew bound, or an invalid key, content type or clock.",
            labels=["reason"],
        )
        refused.add_metric(["clock_ahead"], c.messages_clock_ahead)
        refused.add_metric(["invalid"], c.messages_refused - c.messages_clock_ahead)
        yield refused
        clock = view.clock()
        yield _gauge(
            "rumor_clock_ahead_ms",
            "How far this node's clock is ahead of its peers' (median; negative: behind).",
            clock.ahead_ms,
        )
        yield _gauge(
            "rumor_clock_out_of_bound",
            "1 while this node's clock is beyond the skew bound of most peers' "
            "(ahead: client writes refused 503), else 0.",
            0 if clock.skew.value == "ok" else 1,
        )


def _usage_gauges(usage: StorageUsage | None) -> Iterator[Metric]:
    """The database's size on disk (none in memory mode): what tombstones cost a node."""
    if usage is None:
        return
    yield _gauge("rumor_storage_db_bytes", "Size of the SQLite file on disk.", usage.db_bytes)
    yield _gauge("rumor_storage_wal_bytes", "Size of its write-ahead log.", usage.wal_bytes)
    yield _gauge(
        "rumor_storage_free_bytes",
        "Bytes of free pages inside the file (reused by writes; the excess given back).",
        usage.free_bytes,
    )
    yield _gauge(
        "rumor_storage_rows",
        "Rows of the records table (live keys and tombstones) at the last count.",
        usage.rows,
    )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class LoopCounter:
    """A counter updated from one thread only: an integer addition."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


class LoopHistogram:
    """A histogram updated from one thread only: a bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le is inclusive
        self.sum += value

    def observe_many(self, values: Iterable[float]) -> None:
        """Many values at once: each distinct one bisected once (a replicated batch's
        records share a few write milliseconds, so a few bisects cover a thousand)."""
        bounds, counts = self.bounds, self.counts
        total = 0.0
        for value, times in collections.Counter(values).items():
            counts[bisect_left(bounds, value)] += times
            total += value * times
        self.sum += total

    @property
    def count(self) -> int:
        return sum(self.counts)

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs, ending with ``+Inf``."""
        pairs: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            pairs.append((_le(bound), running))
        return pairs


def _le(bound: float) -> str:
    """A bucket bound as Prometheus writes it: ``+Inf``, ``0.005``, ``1.0``."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


class HotPathCollector(Collector):
    """Exports the loop-only counters and histograms of ``Metrics`` at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        requests = CounterMetricFamily(
            "rumor_http_requests", "HTTP requests by route and status.", labels=["route", "status"]
        )
        for (route, status), counter in sorted(m.request_counts.items()):
            requests.add_metric([route, str(status)], counter.value)
        yield requests
        latency = HistogramMetricFamily(
            "rumor_http_request_duration_seconds",
            "HTTP request latency by route.",
            labels=["route"],
        )
        for route, hist in sorted(m.request_latency.items()):
            latency.add_metric([route], hist.buckets(), hist.sum)
        yield latency
        messages = CounterMetricFamily(
            "rumor_gossip_messages", "Node-to-node messages.", labels=["direction"]
        )
        messages.add_metric(["in"], m.messages_in.value)
        messages.add_metric(["out"], m.messages_out.value)
        yield messages
        gossip_bytes = CounterMetricFamily(
            "rumor_gossip_bytes", "Node-to-node bytes (sealed frames).", labels=["direction"]
        )
        gossip_bytes.add_metric(["in"], m.bytes_in.value)
        gossip_bytes.add_metric(["out"], m.bytes_out.value)
        yield gossip_bytes
        yield _counter("rumor_gossip_posts", "POST /gossip requests sent.", m.posts_out.value)
        lag = HistogramMetricFamily(
            "rumor_replication_lag_seconds",
            "Time from a version's creation (its HLC) to its arrival at this node.",
        )
        lag.add_metric([], m.replication_lag.buckets(), m.replication_lag.sum)
        yield lag


class Metrics:
    """The metrics of one node; ``render()`` is the body of ``GET /metrics``."""

    def __init__(
        self,
        node_fn: Callable[[], Node | None] = lambda: None,
        discovery_rejected_fn: Callable[[], int] = lambda: 0,
        storage_fn: Callable[[], StorageStats | None] = lambda: None,
        usage_fn: Callable[[], StorageUsage | None] = lambda: None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.request_counts: dict[tuple[str, int], LoopCounter] = {}
        self.request_latency: dict[str, LoopHistogram] = {}
        self.messages_in = LoopCounter()
        self.messages_out = LoopCounter()
        self.bytes_in = LoopCounter()
        self.bytes_out = LoopCounter()
        self.posts_out = LoopCounter()  # each carries many messages (``core.send_policy``)
        self.replication_lag = LoopHistogram(LAG_BUCKETS_S)
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
        self.stale_frames = Counter(
            "rumor_stale_frames_dropped",
            "Authentic node-to-node frames dropped as outside the freshness window "
            "(retransmissions after a partition, a paused node's backlog): not attacks.",
            ["channel"],
            registry=r,
        )
        self.auth_failures = Counter(
            "rumor_auth_failures",
            "Client requests refused 401, by reason (missing or unknown key).",
            ["reason"],
            registry=r,
        )
        self.auth_throttled = Counter(
            "rumor_auth_throttled",
            "Client requests refused 429: their address failed authentication too often.",
            registry=r,
        )
        self.forwarded = Counter(
            "rumor_forwarded_requests", "Requests forwarded to an owner.", ["outcome"], registry=r
        )
        # The core's counts, summed from each tick's Output.counter_deltas: they keep
        # growing across a restart of the node in this process, as Prometheus expects.
        self.node_counts = Counters()
        r.register(
            NodeCollector(node_fn, discovery_rejected_fn, storage_fn, self.node_counts, usage_fn)
        )
        r.register(HotPathCollector(self))

    def observe_request(self, route: str, status: int, elapsed_s: float) -> None:
        counter = self.request_counts.get((route, status))
        if counter is None:
            counter = self.request_counts[(route, status)] = LoopCounter()
        counter.value += 1
        hist = self.request_latency.get(route)
        if hist is None:
            hist = self.request_latency[route] = LoopHistogram(LATENCY_BUCKETS_S)
        hist.observe(elapsed_s)

    def request_meter(self, route: str, status: int) -> tuple[LoopCounter, LoopHistogram]:
        """The count of ``route``'s answers with ``status`` and the route's latencies, made
        on first use (exported from then on): a hot path may keep them and count itself."""
        counter = self.request_counts.get((route, status))
        if counter is None:
            counter = self.request_counts[(route, status)] = LoopCounter()
        hist = self.request_latency.get(route)
        if hist is None:
            hist = self.request_latency[route] = LoopHistogram(LATENCY_BUCKETS_S)
        return counter, hist

    def count_node(self, deltas: Mapping[str, int]) -> None:
        """Add one tick's counter deltas (``Output.counter_deltas``)."""
        if deltas:
            add_deltas(self.node_counts, deltas)

    def render(self) -> bytes:
        return generate_latest(self.registry)
