"""The simulated network: partitions, loss, latency along graph paths, link faults."""

from __future__ import annotations

import random
from pathlib import Path

from rumordb.sim.network import Fate, Network
from rumordb.sim.scenario import NetworkSpec

IDS = [f"n{i}" for i in range(1, 7)]


def _network(**spec: object) -> Network:
    return Network(NetworkSpec(**spec), IDS, random.Random(1), Path("."))  # type: ignore[arg-type]


def test_partition_blocks_across_groups_only_and_heal_restores() -> None:
    net = _network(latency_ms=5)
    net.partition([["n1", "n2"], ["n3"]])
    assert net.fate("n1", "n2") == (Fate.DELIVERED, 0.005)
    assert net.fate("n1", "n3")[0] is Fate.PARTITIONED
    assert net.fate("n4", "n5")[0] is Fate.DELIVERED  # unnamed nodes form one group
    assert net.fate("n4", "n1")[0] is Fate.PARTITIONED
    net.heal()
    assert net.fate("n1", "n3")[0] is Fate.DELIVERED


def test_loss_rate_and_jitter_bounds() -> None:
    net = _network(latency_ms=10, jitter_ms=2, loss=0.3)
    fates = [net.fate("n1", "n2") for _ in range(4000)]
    lost = sum(1 for fate, _ in fates if fate is Fate.LOST)
    assert 0.26 < lost / len(fates) < 0.34
    delays = [d for fate, d in fates if fate is Fate.DELIVERED]
    assert min(delays) >= 0.008 and max(delays) <= 0.012


def test_two_datacentres_pay_the_wan_link_across() -> None:
    net = _network(topology="two_dc", latency_ms=1, wan_latency_ms=50, wan_jitter_ms=0)
    assert net.fate("n2", "n3") == (Fate.DELIVERED, 0.001)  # same datacentre
    # n2 -> n1 (1 ms) -> n4 (50 ms WAN) -> n5 (1 ms)
    assert net.fate("n2", "n5") == (Fate.DELIVERED, 0.052)


def test_link_faults_change_one_pair_or_every_link() -> None:
    net = _network(latency_ms=5)
    net.change_links([["n1", "n2"]], latency_ms=None, jitter_ms=None, loss=1.0)
    assert net.fate("n2", "n1")[0] is Fate.LOST
    assert net.fate("n1", "n3")[0] is Fate.DELIVERED
    net.change_links(None, latency_ms=30, jitter_ms=None, loss=None)
    assert net.fate("n1", "n3") == (Fate.DELIVERED, 0.03)
    assert net.fate("n1", "n2")[0] is Fate.LOST  # the pair keeps its loss


def test_graph_link_faults_reroute_around_a_slow_edge() -> None:
    net = _network(topology="random_regular", degree=3, latency_ms=1)
    assert net.graph is not None
    a, b = next(iter(net.graph.edges))
    assert net.fate(a, b) == (Fate.DELIVERED, 0.001)
    net.change_links([[a, b]], latency_ms=100, jitter_ms=None, loss=None)
    fate, delay = net.fate(a, b)
    assert fate is Fate.DELIVERED and delay < 0.1  # a detour beats the slow edge


def test_graphml_topology_relabels_nodes_and_reads_link_attributes(tmp_path: Path) -> None:
    import networkx as nx

    graph = nx.path_graph(["a", "b", "c", "d", "e", "f"])
    nx.set_edge_attributes(graph, 2.0, "latency_ms")
    graph.edges["a", "b"]["latency_ms"] = 10.0
    nx.write_graphml(graph, tmp_path / "line.graphml")
    spec = NetworkSpec(topology="graphml", graphml="line.graphml", latency_ms=1)
    net = Network(spec, IDS, random.Random(1), tmp_path)
    # a..f became n1..n6; n1 -> n3 crosses the 10 ms edge and a 2 ms one.
    assert net.fate("n1", "n3") == (Fate.DELIVERED, 0.012)
