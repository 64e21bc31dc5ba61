"""The loop-only counters and histograms, and the core's counts, as Prometheus reads them."""

from __future__ import annotations

import random

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rumordb.core import DecodeError, Node, Record, encode
from rumordb.core.hlc import pack
from rumordb.core.messages import Push, Update
from rumordb.live.metrics import LAG_BUCKETS_S, LoopHistogram, Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    hist = LoopHistogram((0.001, 0.01, 0.1))
    hist.observe_many([0.001, 0.0011, 0.05, 0.1, 7.0])  # a bound itself falls in its bucket
    hist.observe(0.0)
    assert hist.buckets() == [("0.001", 2), ("0.01", 3), ("0.1", 5), ("+Inf", 6)]
    assert hist.count == 6
    assert abs(hist.sum - 7.1521) < 1e-9


def test_request_and_lag_metrics_parse_as_prometheus_text() -> None:
    metrics = Metrics()
    metrics.observe_request("kv_put", 201, 0.0004)
    metrics.observe_request("kv_put", 201, 0.2)
    metrics.observe_request("kv_get", 404, 0.001)
    metrics.replication_lag.observe_many([0.002, 0.03])
    metrics.messages_in.inc(3)
    metrics.bytes_out.inc(100)
    metrics.posts_out.inc(2)
    found = samples(metrics)
    put = (("route", "kv_put"), ("status", "201"))
    assert found[("rumor_http_requests_total", put)] == 2
    assert found[("rumor_http_requests_total", (("route", "kv_get"), ("status", "404")))] == 1
    route = (("route", "kv_put"),)
    assert found[("rumor_http_request_duration_seconds_count", route)] == 2
    assert found[("rumor_http_request_duration_seconds_bucket", (("le", "0.0005"), *route))] == 1
    assert found[("rumor_http_request_duration_seconds_bucket", (("le", "+Inf"), *route))] == 2
    assert abs(found[("rumor_http_request_duration_seconds_sum", route)] - 0.2004) < 1e-9
    assert found[("rumor_replication_lag_seconds_count", ())] == 2
    assert found[("rumor_replication_lag_seconds_bucket", (("le", "0.0025"),))] == 1
    assert (
        len([k for k in found if k[0] == "rumor_replication_lag_seconds_bucket"])
        == len(LAG_BUCKETS_S) + 1
    )
    assert found[("rumor_gossip_messages_total", (("direction", "in"),))] == 3
    assert found[("rumor_gossip_bytes_total", (("direction", "out"),))] == 100
    assert found[("rumor_gossip_posts_total", ())] == 2


def test_the_core_counts_come_from_the_tick_deltas_the_runner_adds_up() -> None:
    node = Node("a", "mem://a", rng=random.Random(1), now=100.0)
    metrics = Metrics(lambda: node)
    version = Record(b"v", "text/plain", {"b": pack(100_000)}, pack(100_000), "b")
    node.receive(encode(Push("b", [], [Update("k", version)])), 100.0)
    with pytest.raises(DecodeError):
        node.receive(b"\xc1 not msgpack", 100.0)
    assert node.view.counters().updates_applied == 1
    assert samples(metrics)[("rumor_updates_applied_total", ())] == 0, "not ticked yet"
    metrics.count_node(node.tick(100.01).counter_deltas)
    found = samples(metrics)
    assert found[("rumor_updates_applied_total", ())] == 1
    assert found[("rumor_message_decode_errors_total", ())] == 1
    metrics.count_node(node.tick(100.02).counter_deltas)
    assert samples(metrics)[("rumor_updates_applied_total", ())] == 1, "each delta counted once"
