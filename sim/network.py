"""The simulated network: a NetworkX graph whose edges carry latency, jitter and loss.

The graph is the *underlay*: gossip picks any member as a peer (as the live node does),
and a message between two nodes travels the lowest-latency path of the graph. Its delay
is the sum of the edges' latencies plus a uniform draw within the summed jitter, and it
survives each edge's loss independently. The complete topology is kept implicit (a
10 000-node complete graph has 5 * 10^7 edges): every pair is one default link, with
per-pair overrides.

With ``[network] posts = true`` messages to one peer are coalesced into posts first
(``sim.posts``, by the live node's ``core.send_policy``); ``post_fate`` decides a post's.

Partitions sit above the links: nodes in different groups cannot reach each other at
all. Nodes not named in any group form one more group together.

All randomness comes from the one ``rng`` handed in, drawn in a fixed order per message,
so a run is reproducible from its seed.
"""

from __future__ import annotations

import enum
import itertools
import random
from dataclasses import dataclass, replace
from pathlib import Path

import networkx as nx

from rumordb.sim.scenario import NetworkSpec


@dataclass(frozen=True, slots=True)
class Link:
    latency_ms: float
    jitter_ms: float
    loss: float


class Fate(enum.Enum):
    DELIVERED = "delivered"
    LOST = "lost"
    PARTITIONED = "partitioned"
    UNREACHABLE = "unreachable"


def build_graph(spec: NetworkSpec, node_ids: list[str], seed: int, base_dir: Path) -> nx.Graph:
    """The topology as a graph over ``node_ids`` with link attributes on every edge."""
    n = len(node_ids)
    default = {"latency_ms": spec.latency_ms, "jitter_ms": spec.jitter_ms, "loss": spec.loss}
    if spec.topology == "complete":
        graph = nx.complete_graph(n)
    elif spec.topology == "random_regular":
        graph = nx.random_regular_graph(spec.degree, n, seed=seed)
    elif spec.topology == "small_world":
        graph = nx.connected_watts_strogatz_graph(n, spec.degree, spec.rewire_p, seed=seed)
    elif spec.topology == "two_dc":
        graph = _two_datacentres(n, spec)
    else:
        return _from_graphml(base_dir / str(spec.graphml), node_ids, default)
    graph = nx.relabel_nodes(graph, dict(enumerate(node_ids)))
    for _, _, attrs in graph.edges(data=True):
        for name, value in default.items():
            attrs.setdefault(name, value)
    return graph


def _two_datacentres(n: int, spec: NetworkSpec) -> nx.Graph:
    """Two cliques (first half, second half) joined by one slow link between their heads."""
    half = n // 2
    graph = nx.complete_graph(half)
    graph.add_edges_from(nx.complete_graph(range(half, n)).edges)
    graph.add_edge(
        0,
        half,
        latency_ms=spec.wan_latency_ms,
        jitter_ms=spec.wan_jitter_ms,
        loss=spec.wan_loss,
    )
    return graph


def _from_graphml(path: Path, node_ids: list[str], default: dict[str, float]) -> nx.Graph:
    loaded = nx.read_graphml(path)
    if loaded.number_of_nodes() != len(node_ids):
        raise ValueError(
            f"network.graphml: {path} has {loaded.number_of_nodes()} nodes, "
            f"cluster.nodes is {len(node_ids)}"
        )
    names = sorted(loaded.nodes, key=str)
    if set(map(str, names)) != set(node_ids):
        # Any labels will do: they become n1..nN in the file's sorted order.
        loaded = nx.relabel_nodes(loaded, {old: node_ids[i] for i, old in enumerate(names)})
    graph = nx.Graph()
    graph.add_nodes_from(node_ids)
    for a, b, attrs in loaded.edges(data=True):
        graph.add_edge(a, b, **{name: float(attrs.get(name, v)) for name, v in default.items()})
    return graph


class Network:
    """Decides each message's fate and delay; holds partitions and per-link changes."""

    def __init__(
        self, spec: NetworkSpec, node_ids: list[str], rng: random.Random, base_dir: Path
    ) -> None:
        self.rng = rng
        self.default = Link(spec.latency_ms, spec.jitter_ms, spec.loss)
        self._implicit = spec.topology == "complete"
        self.graph: nx.Graph | None = None
        if not self._implicit:
            self.graph = build_graph(spec, node_ids, rng.randrange(2**32), base_dir)
        self._overrides: dict[tuple[str, str], Link] = {}  # complete topology only
        self._paths: dict[str, dict[str, Link]] = {}  # source -> target -> path as one link
        self._group: dict[str, int] = {}

    # --- faults ------------------------------------------------------------------------
    def partition(self, groups: list[list[str]]) -> None:
        self._group = {node: i for i, group in enumerate(groups) for node in group}

    def heal(self) -> None:
        self._group = {}

    def change_links(
        self,
        pairs: list[list[str]] | None,
        latency_ms: float | None,
        jitter_ms: float | None,
        loss: float | None,
    ) -> None:
        """Change some links (or, with ``pairs`` None, every link); None keeps a value."""
        changes = {
            name: value
            for name, value in (
                ("latency_ms", latency_ms),
                ("jitter_ms", jitter_ms),
                ("loss", loss),
            )
            if value is not None
        }
        self._paths.clear()
        if self.graph is None:
            if pairs is None:
                self.default = replace(self.default, **changes)
                self._overrides = {k: replace(v, **changes) for k, v in self._overrides.items()}
                return
            for a, b in pairs:
                key = _pair(a, b)
                self._overrides[key] = replace(self._overrides.get(key, self.default), **changes)
            return
        edges = self.graph.edges if pairs is None else [tuple(p) for p in pairs]
        for a, b in edges:
            if not self.graph.has_edge(a, b):
                self.graph.add_edge(a, b, **vars_of(self.default))
            self.graph.edges[a, b].update(changes)

    # --- sending -----------------------------------------------------------------------
    def link(self, src: str, dst: str) -> Link | None:
        """The end-to-end link from ``src`` to ``dst``; None when no path exists."""
        if self._implicit:
            if not self._overrides:
                return self.default
            return self._overrides.get(_pair(src, dst), self.default)
        paths = self._paths.get(src)
        if paths is None:
            paths = self._paths[src] = self._shortest_paths(src)
        return paths.get(dst)

    def fate(self, src: str, dst: str) -> tuple[Fate, float]:
        """Whether a message from ``src`` reaches ``dst``, and after how many seconds."""
        group = self._group
        if group and group.get(src, -1) != group.get(dst, -1):
            return Fate.PARTITIONED, 0.0
        link = self.link(src, dst)
        if link is None:
            return Fate.UNREACHABLE, 0.0
        rng = self.rng
        if link.loss and rng.random() < link.loss:
            return Fate.LOST, 0.0
        delay_ms = link.latency_ms
        if link.jitter_ms:
            delay_ms += (2.0 * rng.random() - 1.0) * link.jitter_ms
        return Fate.DELIVERED, max(0.0, delay_ms) / 1000.0

    def post_fate(self, src: str, dst: str, count: int) -> tuple[Fate, float, list[bool]]:
        """A post of ``count`` messages (``sim.posts``): whether it can go at all, its
        delay, and which messages a lossy link drops. Loss is drawn per message, as the
        live node's loss fault drops messages before they are posted; jitter once."""
        group = self._group
        if group and group.get(src, -1) != group.get(dst, -1):
            return Fate.PARTITIONED, 0.0, []
        link = self.link(src, dst)
        if link is None:
            return Fate.UNREACHABLE, 0.0, []
        rng = self.rng
        lost = [bool(link.loss) and rng.random() < link.loss for _ in range(count)]
        delay_ms = link.latency_ms
        if link.jitter_ms:
            delay_ms += (2.0 * rng.random() - 1.0) * link.jitter_ms
        return Fate.DELIVERED, max(0.0, delay_ms) / 1000.0, lost

    def _shortest_paths(self, src: str) -> dict[str, Link]:
        assert self.graph is not None
        _, paths = nx.single_source_dijkstra(self.graph, src, weight="latency_ms")
        found: dict[str, Link] = {}
        for dst, path in paths.items():
            latency = jitter = 0.0
            survive = 1.0
            for a, b in itertools.pairwise(path):
                attrs = self.graph.edges[a, b]
                latency += attrs["latency_ms"]
                jitter += attrs["jitter_ms"]
                survive *= 1.0 - attrs["loss"]
            found[dst] = Link(latency, jitter, 1.0 - survive)
        return found


def vars_of(link: Link) -> dict[str, float]:
    return {"latency_ms": link.latency_ms, "jitter_ms": link.jitter_ms, "loss": link.loss}


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)
