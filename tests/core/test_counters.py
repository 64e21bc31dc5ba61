"""Counter deltas: only ticks hand them out, and they add up to the node's totals."""

from __future__ import annotations

from collections import Counter

from rumordb.core import Counters, NodeConfig
from rumordb.core.counters import COUNTER_NAMES, Reported, add_deltas
from tests.core.harness import Cluster


def test_reported_hands_out_only_what_grew_each_time() -> None:
    counters, reported = Counters(), Reported()
    counters.messages_sent, counters.bytes_sent = 3, 120
    assert reported.take_deltas(counters) == {"messages_sent": 3, "bytes_sent": 120}
    assert reported.take_deltas(counters) == {}, "each growth is handed out once"
    counters.messages_sent += 2
    counters.keys_expired += 1
    assert reported.take_deltas(counters) == {"messages_sent": 2, "keys_expired": 1}


def test_add_deltas_sums_into_a_drivers_totals() -> None:
    totals = Counters()
    add_deltas(totals, {"rumor_rounds": 2, "keys_expired": 1})
    add_deltas(totals, {"rumor_rounds": 3})
    assert (totals.rumor_rounds, totals.keys_expired, totals.messages_sent) == (5, 1, 0)


def test_the_deltas_of_every_tick_sum_to_the_nodes_counters() -> None:
    cluster = Cluster(3, seed=4, config=NodeConfig(anti_entropy_interval_ms=300), loss=0.1)
    summed = {nid: Counter[str]() for nid in cluster.ids}
    ticked = 0
    original = {nid: node.tick for nid, node in cluster.nodes.items()}
    for nid, node in cluster.nodes.items():

        def tick(now: float, mono: float | None = None, nid: str = nid) -> object:
            nonlocal ticked
            out = original[nid](now, mono)
            summed[nid].update(out.counter_deltas)
            ticked += bool(out.counter_deltas)
            return out

        node.tick = tick  # type: ignore[method-assign]
    for i in range(40):
        cluster.put(cluster.ids[i % 3], f"k{i % 7}", b"v%d" % i)
        cluster.delete(cluster.ids[(i + 1) % 3], f"k{(i + 3) % 7}")
        cluster.step()
    cluster.run(3.0)
    assert ticked > 10, "ticks report deltas as the counts grow"
    for nid, node in cluster.nodes.items():  # the harness ticks after delivering: all reported
        totals = node.view.counters()
        assert {
            name: getattr(totals, name) for name in COUNTER_NAMES if getattr(totals, name)
        } == dict(summed[nid])
        assert totals.updates_applied > 0 and totals.anti_entropy_sessions > 0


def test_puts_flushes_and_receives_carry_no_deltas() -> None:
    cluster = Cluster(2, seed=1)
    a, b = cluster.nodes["n1"], cluster.nodes["n2"]
    written = a.put("k", b"v", "text/plain", 0.0)
    assert written.output.counter_deltas == {}
    flushed = a.flush(0.0)
    assert flushed.messages and flushed.counter_deltas == {}
    received = b.receive(flushed.messages[0][1], 0.0)
    assert received.counter_deltas == {}
    assert b.view.counters().updates_applied == 1
    assert b.tick(0.01).counter_deltas["updates_applied"] == 1, "the next tick reports it"
