"""A rolling change of the cluster secret on real node processes, under writes.

The documented procedure (README, Security model) is three rolling restarts: (1) every
node ``--cluster-secret OLD --cluster-secret-previous NEW``, (2) ``--cluster-secret NEW
--cluster-secret-previous OLD``, (3) ``--cluster-secret NEW``. A client writes all along
to the nodes that are up; no gossip frame may be refused (every node's
``rumor_unauthenticated_dropped_total`` stays 0 over each of its lives: read before each
restart, and at the end) and every acknowledged write ends up on every node.
"""

from __future__ import annotations

import itertools
import secrets
import signal
import threading
from collections.abc import Callable

import httpx
import pytest

from tests.live.harness import ADMIN, READER, SECRET, Cluster, NodeProcess

pytestmark = [pytest.mark.live, pytest.mark.slow]

REFUSED = ("rumor_unauthenticated_dropped_total", "rumor_discovery_rejected_total")


def with_secrets(args: list[str], current: str, previous: str | None) -> list[str]:
    """``args`` with ``--cluster-secret current`` and ``--cluster-secret-previous``."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("--cluster-secret", "--cluster-secret-previous"):
            skip = True
            continue
        out.append(arg)
    out += ["--cluster-secret", current]
    return out + (["--cluster-secret-previous", previous] if previous else [])


def refused_count(cluster: Cluster, node: NodeProcess) -> float:
    text = cluster.client.get(node.url + "/metrics", headers=READER).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(REFUSED):
            total += float(line.rsplit(" ", 1)[1])
    return total


def listed(cluster: Cluster, node: NodeProcess, prefix: str) -> set[str]:
    keys: set[str] = set()
    after = ""
    while True:
        query = {"prefix": prefix, "limit": 1000, "after": after}
        page = cluster.client.get(node.url + "/kv", params=query, headers=READER).json()
        keys.update(page["keys"])
        if page["next"] is None:
            return keys
        after = page["next"]


class Writer:
    """Writes distinct keys round-robin to the nodes that are up; remembers the acked ones."""

    def __init__(self, cluster: Cluster, nodes: list[NodeProcess]) -> None:
        self.cluster, self.nodes = cluster, nodes
        self.down: set[str] = set()
        self.acked: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self._client = httpx.Client(timeout=5.0, trust_env=False)

    def run(self) -> None:
        for i in itertools.count():
            if self.stop.is_set():
                break
            node = self.nodes[i % len(self.nodes)]
            if node.node_id in self.down:
                continue
            key = f"rot-{i}"
            try:
                response = self._client.put(f"{node.url}/kv/{key}", content=b"v", headers=ADMIN)
            except httpx.HTTPError:
                continue
            if response.status_code in (200, 201):
                self.acked.append(key)
            self.stop.wait(0.01)
        self._client.close()


def test_a_rolling_secret_change_refuses_no_gossip_and_loses_no_write(
    cluster_factory: Callable[[], Cluster],
) -> None:
    cluster = cluster_factory()
    nodes = [cluster.add(f"n{i}") for i in (1, 2, 3)]
    cluster.wait_ready()
    cluster.wait_members({"n1", "n2", "n3"})
    old, new = SECRET, "secret-" + secrets.token_urlsafe(16)
    phases = [(old, new), (new, old), (new, None)]
    writer = Writer(cluster, nodes)
    writer.thread.start()
    try:
        for current, previous in phases:
            for node in nodes:
                assert refused_count(cluster, node) == 0, f"{node.node_id} refused gossip"
                writer.down.add(node.node_id)
                node.stop(signal.SIGTERM)
                node.args = with_secrets(node.args, current, previous)
                node.start()
                cluster.wait_ready(node)
                writer.down.discard(node.node_id)
                cluster.wait_members({"n1", "n2", "n3"})
    finally:
        writer.stop.set()
        writer.thread.join()
    assert len(writer.acked) > 50
    for node in nodes:
        assert "--cluster-secret-previous" not in node.args
        cluster.poll(
            lambda node=node: set(writer.acked) <= listed(cluster, node, "rot-"),
            30,
            f"every acknowledged write on {node.node_id}",
        )
        assert refused_count(cluster, node) == 0, f"{node.node_id} refused gossip"
