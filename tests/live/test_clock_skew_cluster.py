"""Clocks from outside on real ``rumor node`` processes (127.0.0.x, discovery only).

A node whose clock runs an hour ahead (``--clock-offset-ms``) neither drags its peers'
clocks forward (they drop its versions, counted) nor takes client writes once it hears
them (503, ``/health`` degraded). Forged ``If-Match`` contexts (an HLC of 2^64-1, or
hundreds of unknown nodes) are 400 on every node, and writes go on everywhere, also after
a restart of every node. Every process is killed by PID at teardown.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from rumordb.core import encode_context
from tests.live.harness import ADMIN, Cluster, NodeProcess
from tests.live.test_live_cluster import metric

pytestmark = [pytest.mark.live, pytest.mark.slow]

HOUR_MS = 3_600_000


def physical_ms(hlc: int) -> int:
    return hlc >> 16


def test_a_node_an_hour_ahead_neither_drags_its_peers_nor_takes_writes(
    cluster_factory: Callable[[], Cluster],
) -> None:
    cluster = cluster_factory()
    fast = cluster.add("fast", "--clock-offset-ms", str(HOUR_MS))
    cluster.wait_ready(fast)
    # Alone, it cannot know its clock is wrong: this version is stamped an hour ahead.
    early = cluster.put(fast, "early", b"from the future")
    assert early.status_code == 201, early.text
    n1, n2 = cluster.add("n1"), cluster.add("n2")
    cluster.wait_ready(n1, n2)
    cluster.wait_members({"fast", "n1", "n2"})

    refused = 'rumor_peer_messages_refused_total{reason="clock_ahead"}'
    for node in (n1, n2):  # anti-entropy offered them the early version: dropped, counted
        cluster.poll(lambda node=node: metric(cluster, node.url, refused) > 0, 20.0, "refusal")

    def degraded() -> bool:
        health = cluster.client.get(fast.url + "/health").json()
        return health["status"] == "degraded" and "clock" in " ".join(health["problems"])

    cluster.poll(degraded, 20.0, "the fast node to report its clock")
    assert metric(cluster, fast.url, "rumor_clock_out_of_bound") == 1.0
    assert metric(cluster, fast.url, "rumor_clock_ahead_ms") > HOUR_MS - 60_000
    refused_write = cluster.put(fast, "k", b"refused")
    assert refused_write.status_code == 503 and refused_write.json()["error"] == "clock_skew"

    written = cluster.put(n1, "k", b"now")
    assert written.status_code == 201, written.text
    skew_ms = physical_ms(written.json()["hlc"]) - time.time() * 1000
    assert abs(skew_ms) < 60_000, f"n1's clock was dragged {skew_ms} ms"
    for node in (n2, fast):  # the fast node still takes its peers' versions
        cluster.wait_value(node, "k", b"now")
    for node in (n1, n2):
        assert cluster.get(node, "early").status_code == 404
        assert cluster.client.get(node.url + "/health").json()["status"] == "ok"
        assert metric(cluster, node.url, "rumor_clock_out_of_bound") == 0.0


def forged_contexts(clock: dict[str, int]) -> list[str]:
    ghosts = {f"ghost-{i:03}": 1 for i in range(300)}
    return [encode_context(clock, 2**64 - 1), encode_context({**clock, **ghosts}, 1)]


def write_everywhere(cluster: Cluster, nodes: tuple[NodeProcess, ...], round_: str) -> None:
    for node in nodes:
        response = cluster.put(node, f"{round_}-{node.node_id}", round_.encode())
        assert response.status_code == 201, f"{node.node_id}: {response.text}"
    for node in nodes:
        for other in nodes:
            cluster.wait_value(node, f"{round_}-{other.node_id}", round_.encode())


def test_forged_contexts_are_refused_and_writes_go_on_also_after_a_restart(
    cluster_factory: Callable[[], Cluster],
) -> None:
    cluster = cluster_factory()
    nodes = tuple(cluster.add(f"n{i}", "--durability", "sync") for i in (1, 2, 3))
    cluster.wait_ready()
    cluster.wait_members({"n1", "n2", "n3"})
    first = cluster.put(nodes[0], "target", b"v1")
    assert first.status_code == 201
    for node in nodes:
        cluster.wait_value(node, "target", b"v1")
    meta = cluster.client.get(nodes[0].url + "/kv/target?meta=true", headers=ADMIN).json()
    for node in nodes:
        for context in forged_contexts(meta["clock"]):
            for method in ("PUT", "DELETE"):
                response = cluster.client.request(
                    method,
                    node.url + "/kv/target",
                    content=b"forged" if method == "PUT" else None,
                    headers={**ADMIN, "If-Match": context},
                )
                assert response.status_code == 400, f"{node.node_id} {method}: {response.text}"
                assert response.json()["error"] == "invalid_context"
    write_everywhere(cluster, nodes, "after")
    for node in nodes:
        cluster.wait_value(node, "target", b"v1")
        node.stop(signal.SIGTERM)
        node.start()
    cluster.wait_ready()
    cluster.wait_members({"n1", "n2", "n3"})
    write_everywhere(cluster, nodes, "restarted")
    for node in nodes:
        cluster.wait_value(node, "after-n1", b"after")
