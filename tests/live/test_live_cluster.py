"""Real ``rumor node`` processes on 127.0.0.x: discovery, replication, failure, recovery.

Every cluster finds itself by UDP broadcast discovery only (no seeds), on a discovery
port of its own, and is killed (by PID) at teardown whatever happens.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from rumordb.core import Ring
from rumordb.live.discovery import Announcement, encode_announcement
from rumordb.live.gossip_client import Envelope, seal_envelope
from rumordb.live.wire import BROADCAST, Signer
from tests.live.harness import ADMIN, ADMIN_KEY, READER, SECRET, Cluster, NodeProcess

pytestmark = [pytest.mark.live, pytest.mark.slow]


def metric(cluster: Cluster, node_url: str, name: str) -> float:
    text = cluster.client.get(node_url + "/metrics", headers=READER).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def send_datagram(port: int, payload: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.sendto(payload, ("127.255.255.255", port))


def test_three_nodes_discover_replicate_delete_and_reject_spoofs(
    cluster_factory: Callable[[], Cluster],
) -> None:
    cluster = cluster_factory()
    n1, n2, n3 = (cluster.add(f"n{i}", "--allow-faults") for i in (1, 2, 3))
    cluster.wait_ready()
    cluster.wait_members({"n1", "n2", "n3"})

    assert (
        cluster.put(n1, "greeting", b"hello", **{"content-type": "text/plain"}).status_code == 201
    )
    for node in (n2, n3):
        cluster.wait_value(node, "greeting", b"hello")
        assert cluster.get(node, "greeting").headers["content-type"] == "text/plain"
    assert cluster.client.delete(n2.url + "/kv/greeting", headers=ADMIN).status_code == 200
    for node in (n1, n3):
        cluster.wait_value(node, "greeting", None)

    # Spoofed gossip: unsigned, and signed with another secret. Refused, counted, no effect.
    forged = seal_envelope(
        Signer("not-the-secret"), Envelope("evil", [b"\x00"]), time.time(), n1.node_id
    )
    for body in (b"hello", forged):
        response = cluster.client.post(n1.url + "/gossip", content=body)
        assert response.status_code == 401 and response.json()["error"] == "unauthenticated"
    assert metric(cluster, n1.url, "rumor_unauthenticated_dropped_total") == 2.0

    # Spoofed discovery datagrams: garbage, and a well-formed announcement under a wrong secret.
    fake = encode_announcement(Announcement("evil", "http://127.0.0.9:1", 1))
    send_datagram(cluster.discovery_port, b"garbage")
    send_datagram(
        cluster.discovery_port, Signer("wrong").seal(fake, time.time(), "evil", BROADCAST)
    )
    cluster.poll(
        lambda: metric(cluster, n2.url, "rumor_discovery_rejected_total") >= 2,
        10,
        "discovery rejections counted",
    )
    for node in (n1, n2, n3):
        assert set(cluster.members(node)) == {"n1", "n2", "n3"}

    # Faults: cut n3 off both ways (on n3 alone); writes stop reaching it; heal; converge.
    cut = cluster.client.post(n3.url + "/faults", json={"block": ["n1", "n2"]}, headers=ADMIN)
    assert cut.status_code == 200 and cut.json()["block_to"] == ["n1", "n2"]
    for i in range(5):
        assert cluster.put(n1, f"cut{i}", b"x").status_code == 201
    cluster.wait_value(n2, "cut4", b"x")
    time.sleep(1.5)  # three anti-entropy intervals: nothing may leak through the cut
    assert all(cluster.get(n3, f"cut{i}").status_code == 404 for i in range(5))
    assert cluster.client.delete(n3.url + "/faults", headers=ADMIN).status_code == 200
    for i in range(5):
        cluster.wait_value(n3, f"cut{i}", b"x")


def test_five_nodes_find_each_other_by_discovery(cluster_factory: Callable[[], Cluster]) -> None:
    cluster = cluster_factory()
    nodes = [cluster.add(f"n{i}") for i in range(1, 6)]
    cluster.wait_ready()
    cluster.wait_members({f"n{i}" for i in range(1, 6)})
    assert cluster.put(nodes[4], "five", b"5").status_code == 201
    for node in nodes[:4]:
        cluster.wait_value(node, "five", b"5")


def test_sync_writes_survive_sigkill(cluster_factory: Callable[[], Cluster]) -> None:
    """A lone node (no peers to repair it): acknowledged writes come back from its disk."""
    cluster = cluster_factory()
    node = cluster.add("solo", "--durability", "sync", "--broadcast", "off")
    cluster.wait_ready()
    for i in range(50):
        assert cluster.put(node, f"d{i}", f"v{i}".encode()).status_code == 201
    assert cluster.client.delete(node.url + "/kv/d0", headers=ADMIN).status_code == 200
    node.stop(signal.SIGKILL)
    node.start()
    cluster.wait_ready(node)
    assert cluster.get(node, "d0").status_code == 404
    for i in range(1, 50):
        response = cluster.get(node, f"d{i}")
        assert response.status_code == 200 and response.content == f"v{i}".encode()
    beat = cluster.client.get(node.url + "/heartbeat").json()
    assert beat["incarnation"] == 2  # bumped at every start


def test_killed_node_is_marked_dead_then_catches_up_and_a_newcomer_gets_everything(
    cluster_factory: Callable[[], Cluster],
) -> None:
    cluster = cluster_factory()
    n1, n2, n3 = (cluster.add(f"n{i}") for i in (1, 2, 3))
    cluster.wait_ready()
    cluster.wait_members({"n1", "n2", "n3"})

    n3.stop(signal.SIGKILL)
    for observer in (n1, n2):
        cluster.wait_state(observer, {"n3"}, "dead", timeout_s=20)
    for i in range(20):
        assert cluster.put(n1, f"while-dead-{i}", b"w").status_code == 201
    n3.start()
    cluster.wait_ready(n3)
    for i in range(20):
        cluster.wait_value(n3, f"while-dead-{i}", b"w")
    cluster.wait_members({"n1", "n2", "n3"})
    assert {m["id"]: m["incarnation"] for m in _view(cluster, n1)["members"]}["n3"] == 2

    # A 4th node joins while a client keeps writing: afterwards it holds every acked write.
    acked: list[str] = []
    stop = threading.Event()

    def workload() -> None:
        i = 0
        while not stop.is_set() and i < 2000:
            target = (n1, n2, n3)[i % 3]
            if cluster.put(target, f"load-{i}", b"L").status_code in (200, 201):
                acked.append(f"load-{i}")
            i += 1

    writer = threading.Thread(target=workload)
    writer.start()
    try:
        n4 = cluster.add("n4")
        cluster.wait_ready(n4)
        cluster.wait_members({"n1", "n2", "n3", "n4"})
        time.sleep(0.5)
    finally:
        stop.set()
        writer.join()
    assert len(acked) > 20
    cluster.poll(lambda: _view(cluster, n4)["keys"] >= len(acked) + 20, 20, "n4 to hold every key")
    for key in acked[:: max(1, len(acked) // 50)]:
        assert cluster.get(n4, key).status_code == 200


def _view(cluster: Cluster, node: NodeProcess) -> dict[str, Any]:
    view: dict[str, Any] = cluster.client.get(node.url + "/cluster", headers=READER).json()
    return view


def test_sharded_keys_live_on_exactly_their_owners(cluster_factory: Callable[[], Cluster]) -> None:
    cluster = cluster_factory()
    nodes = [cluster.add(f"n{i}", "--sharding", "--replicas", "2") for i in range(1, 5)]
    ids = {n.node_id for n in nodes}
    cluster.wait_ready()
    cluster.wait_members(ids)
    keys = [f"shard-{i}" for i in range(40)]
    for i, key in enumerate(keys):
        response = cluster.put(nodes[i % 4], key, key.encode())
        assert response.status_code == 201, response.text
    for key in keys:
        for node in nodes:
            response = cluster.get(node, key)
            assert response.status_code == 200 and response.content == key.encode()
    ring = Ring(sorted(ids))
    expected = {node_id: 0 for node_id in ids}
    for key in keys:
        for owner in ring.owners(key, 2):
            expected[owner] += 1
    cluster.poll(
        lambda: {n.node_id: _view(cluster, n)["keys"] for n in nodes} == expected,
        15,
        f"per-node key counts {expected}",
    )
    listing = cluster.client.get(nodes[0].url + "/kv?limit=1000", headers=READER).json()
    assert listing["keys"] == sorted(keys)
    ownership = _view(cluster, nodes[0])["ownership"]
    assert isinstance(ownership, dict) and set(ownership) == ids

    # An owner dies: its keys stay readable and writable through the others (the other
    # owner answers, a hint holds the second copy); back, it gets its copies handed over.
    n4 = nodes[3]
    n4.stop(signal.SIGKILL)
    cluster.wait_state(nodes[0], {"n4"}, "dead", timeout_s=20)
    more = [f"hinted-{i}" for i in range(20)]
    for i, key in enumerate(more):
        response = cluster.put(nodes[i % 3], key, key.encode())
        assert response.status_code == 201, response.text
    for key in keys + more:
        response = cluster.get(nodes[len(key) % 3], key)
        assert response.status_code == 200 and response.content == key.encode()
    n4.start()
    cluster.wait_ready(n4)
    for key in more:
        for owner in ring.owners(key, 2):
            expected[owner] += 1
    cluster.poll(
        lambda: {n.node_id: _view(cluster, n)["keys"] for n in nodes} == expected,
        30,
        f"per-node key counts {expected} after the hand-off",
    )


def test_unsigned_gossip_is_refused_even_with_a_valid_envelope(
    cluster_factory: Callable[[], Cluster],
) -> None:
    """The only door is the seal: a right-shaped but re-sealed (replayed) frame is refused."""
    cluster = cluster_factory()
    node = cluster.add("r1", "--broadcast", "off")
    cluster.wait_ready()
    sealed = seal_envelope(Signer(SECRET), Envelope("peer", []), time.time(), node.node_id)
    assert cluster.client.post(node.url + "/gossip", content=sealed).status_code == 204
    replay = cluster.client.post(node.url + "/gossip", content=sealed)
    assert replay.status_code == 401
    # An authentic frame that arrives late (a retransmission after a long partition) is
    # counted apart: it must not trip an alert on unauthenticated gossip.
    late = seal_envelope(Signer(SECRET), Envelope("peer", []), time.time() - 300, node.node_id)
    stale = cluster.client.post(node.url + "/gossip", content=late)
    assert stale.status_code == 401 and stale.json()["error"] == "stale"
    assert metric(cluster, node.url, "rumor_stale_frames_dropped_total") == 1.0
    assert metric(cluster, node.url, "rumor_unauthenticated_dropped_total") == 1.0  # the replay


def test_sigterm_stops_cleanly_and_flushes_batch_writes(
    cluster_factory: Callable[[], Cluster],
) -> None:
    """``batch`` acknowledges before the commit; a clean stop must still commit everything."""
    cluster = cluster_factory()
    node = cluster.add("flush", "--durability", "batch", "--broadcast", "off")
    cluster.wait_ready()
    for i in range(100):
        assert cluster.put(node, f"b{i}", b"x").status_code == 201
    code = node.stop(signal.SIGTERM)
    assert code in (0, -signal.SIGTERM), node.logs()[-2000:]
    assert '"node_stopped"' in node.logs()
    node.start()
    cluster.wait_ready(node)
    assert _view(cluster, node)["keys"] == 100


def test_a_real_node_refuses_duplicate_credentials_and_throttles_guessing(
    cluster_factory: Callable[[], Cluster],
) -> None:
    cluster = cluster_factory()
    node = cluster.add("g1", "--broadcast", "off", "--auth-failure-burst", "3")
    cluster.wait_ready()
    twice = [("Authorization", f"Bearer {ADMIN_KEY}"), ("Authorization", "Bearer other")]
    for path in ("/kv/k", "/cluster"):
        duplicate = cluster.client.get(node.url + path, headers=twice)
        assert duplicate.status_code == 400, duplicate.text
        assert duplicate.json()["error"] == "duplicate_credentials"
    guesses = [
        cluster.client.get(node.url + "/kv/k", headers={"X-API-Key": f"guess-{i}"})
        for i in range(4)
    ]
    assert [r.status_code for r in guesses] == [401, 401, 401, 429]
    assert guesses[-1].json()["error"] == "too_many_failures"
    assert int(guesses[-1].headers["retry-after"]) >= 1
    # Even the right key waits now: otherwise throttling would not slow a guesser down.
    assert cluster.client.get(node.url + "/cluster", headers=ADMIN).status_code == 429
    assert "auth_failed" in node.log_path.read_text()


def test_a_node_starts_despite_a_stored_version_that_does_not_decode(
    cluster_factory: Callable[[], Cluster],
) -> None:
    import sqlite3

    from rumordb.live.storage import Storage

    cluster = cluster_factory()
    node = cluster.add("c1", "--broadcast", "off")
    cluster.wait_ready()
    for key in ("good", "bad"):
        assert cluster.put(node, key, b"v").status_code == 201
    node.stop(signal.SIGTERM)
    Storage.open(node.data_dir, "sync").close_sync()  # folds the log into ``records``
    with sqlite3.connect(node.data_dir / "rumor.sqlite3") as db:
        db.execute("UPDATE records SET record = x'9301' WHERE key = 'bad'")
    node.start()
    cluster.wait_ready(node)
    assert cluster.get(node, "good").content == b"v"
    assert cluster.get(node, "bad").status_code == 404
    assert metric(cluster, node.url, "rumor_storage_corrupt_skipped_total") == 1.0
    assert "stored_record_skipped" in node.logs()
    assert cluster.put(node, "after", b"w").status_code == 201
