"""Watch streams on real ``rumor node`` processes: replicated changes, resume, slow readers.

``live/watch.py`` is the ring and the stream; these tests run it behind real HTTP on
loopback: a change written on one node arrives on a watcher of another (replicated), a
stream resumes after the position it gave out (410 once that position has left the
ring), and a watcher that reads nothing is dropped with a final ``overflow`` event while
the node's memory stays flat.
"""

from __future__ import annotations

import asyncio
import json
import queue
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rumordb import AsyncClient, Change, Client, PositionLost, Unreachable
from rumordb.core import Record, hlc
from rumordb.live.errors import HttpError
from rumordb.live.watch import WatchHub
from tests.live.harness import ADMIN_KEY, READER, READER_KEY, RUMOR, Cluster, NodeProcess

pytestmark = [pytest.mark.live, pytest.mark.slow]


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path_factory.mktemp("watch"))
    try:
        for i in (1, 2, 3):
            nodes.add(f"n{i}", "--watch-ring-events", "64")
        nodes.wait_ready()
        nodes.wait_members({"n1", "n2", "n3"})
        yield nodes
    finally:
        nodes.close()


def collect(node: NodeProcess, prefix: str, into: queue.Queue[Change]) -> Client:
    """A reader-key client watching ``node`` on a daemon thread; changes go to ``into``."""
    client = Client(node.url, api_key=READER_KEY)
    changes = client.watch(prefix)

    def pump() -> None:
        try:
            for change in changes:
                into.put(change)
        except Unreachable:  # the cluster stopped at teardown
            return

    threading.Thread(target=pump, daemon=True).start()
    return client


def lines(cluster: Cluster, node: NodeProcess, query: str, count: int) -> list[dict[str, object]]:
    """The first ``count`` events of a raw stream (``GET /kv?watch=true&...``)."""
    events: list[dict[str, object]] = []
    url = node.url + "/kv?watch=true&" + query
    with cluster.client.stream("GET", url, headers=READER) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "application/x-ndjson"
        for line in response.iter_lines():
            events.append(json.loads(line))
            if len(events) == count:
                break
    return events


def test_a_change_on_node_1_arrives_on_a_watcher_of_node_3(trio: Cluster) -> None:
    n1, n3 = trio.nodes["n1"], trio.nodes["n3"]
    arrived: queue.Queue[Change] = queue.Queue()
    collect(n3, "w1/", arrived)
    trio.poll(lambda: trio.client.get(n3.url + "/health").status_code == 200, 5, "n3")
    # The watch thread may still be connecting: write until its first change arrives.
    trio.poll(lambda: _put_then_seen(trio, n1, arrived), 10, "the first change on n3")
    assert trio.put(n1, "other/x", b"not watched").status_code in (200, 201)
    assert trio.client.delete(n1.url + "/kv/w1/a", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200  # fmt: skip
    change = arrived.get(timeout=10)
    while not change.tombstone:  # later copies of the first write, if the poll wrote twice
        change = arrived.get(timeout=10)
    assert change.key == "w1/a" and change.value is None and change.replicated
    assert change.origin == "n1" and change.node == n3.url
    # n3 applied it after n1 wrote it (one machine, one clock) and before it was read here.
    assert change.applied_us is not None
    assert hlc.physical_ms(change.hlc) * 1000 <= change.applied_us <= time.time() * 1e6


def _put_then_seen(cluster: Cluster, node: NodeProcess, arrived: queue.Queue[Change]) -> bool:
    cluster.put(node, "w1/a", b"hello", **{"content-type": "text/plain"})
    try:
        change = arrived.get(timeout=0.5)
    except queue.Empty:
        return False
    assert change.key == "w1/a" and change.value == b"hello" and change.replicated
    assert change.origin == "n1" and change.content_type == "text/plain"
    assert change.position.count(":") == 1
    return True


def test_a_stream_resumes_after_the_position_it_gave_out(trio: Cluster) -> None:
    n2 = trio.nodes["n2"]
    start = lines(trio, n2, "prefix=r/", 1)[0]
    assert start["type"] == "start" and start["node"] == "n2"
    for i in range(3):
        assert trio.put(n2, f"r/{i}", f"v{i}".encode()).status_code in (200, 201)
    events = lines(trio, n2, f"prefix=r/&from={start['position']}", 4)
    assert [e["type"] for e in events] == ["start", "change", "change", "change"]
    assert [e["key"] for e in events[1:]] == ["r/0", "r/1", "r/2"]
    assert [e["replicated"] for e in events[1:]] == [False] * 3
    after_first = lines(trio, n2, f"prefix=r/&from={events[1]['position']}", 3)
    assert [e["key"] for e in after_first[1:]] == ["r/1", "r/2"]


def test_a_position_that_left_the_ring_or_the_node_restart_is_refused(trio: Cluster) -> None:
    n1 = trio.nodes["n1"]
    start = lines(trio, n1, "prefix=gone/", 1)[0]
    for i in range(70):  # the ring keeps 64 changes
        trio.put(n1, f"gone/{i}", b"x")
    stream, _, _ = str(start["position"]).partition(":")
    for position in (start["position"], f"{int(stream) + 1}:0"):
        answer = trio.client.get(n1.url + f"/kv?watch=true&from={position}", headers=READER)
        assert answer.status_code == 410 and answer.json()["error"] == "position_lost"
    answer = trio.client.get(n1.url + "/kv?watch=true&from=nonsense", headers=READER)
    assert answer.status_code == 400
    with Client(n1.url, api_key=READER_KEY) as db, pytest.raises(PositionLost):
        next(db.watch("gone/", position=str(start["position"])))


def rss_bytes(node: NodeProcess) -> int:
    assert node.proc is not None
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_watcher_that_reads_nothing_is_dropped_and_memory_stays_flat(
    cluster_factory: object,
) -> None:
    cluster = cluster_factory()  # type: ignore[operator]
    node = cluster.add(
        "s1", "--durability", "memory", "--watch-max-lag-events", "50",
        "--watch-ring-bytes", "2000000",
    )  # fmt: skip
    cluster.wait_ready()
    value = b"v" * 20_000
    for i in range(200):  # warm up: the store, pools and allocator reach their size
        cluster.put(node, f"slow/{i % 5}", value)
    before = rss_bytes(node)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((node.host, node.port))
    request = (
        f"GET /kv?watch=true&prefix=slow/ HTTP/1.1\r\nHost: x\r\nX-API-Key: {READER_KEY}\r\n\r\n"
    )
    sock.sendall(request.encode())
    try:
        assert b"200" in sock.recv(64)
        for i in range(2_000):  # 40 MB of changes while the watcher reads nothing
            cluster.put(node, f"slow/{i % 5}", value)
        grown = rss_bytes(node) - before
        received = _read_to_end(sock)
    finally:
        sock.close()
    assert grown < 16_000_000, f"the node grew by {grown} bytes"
    last = json.loads(received.rstrip(b"\r\n0").rsplit(b"\n", 1)[-1].split(b"\r\n")[-1])
    assert last["type"] == "overflow" and "behind" in last["detail"]


def _read_to_end(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)
        if b"0\r\n\r\n" in data[-16:]:  # the chunked body's end
            return b"".join(chunks)


def test_async_client_and_rumor_watch_print_changes_as_they_arrive(trio: Cluster) -> None:
    n1, n2 = trio.nodes["n1"], trio.nodes["n2"]

    async def first_change() -> Change:
        async with AsyncClient(n2.url, api_key=READER_KEY) as db:
            changes = db.watch("aw/")
            pending = asyncio.ensure_future(anext(changes))
            for _ in range(100):  # until the stream is open and the write arrives
                trio.put(n1, "aw/k", b"async")
                done, _ = await asyncio.wait({pending}, timeout=0.2)
                if done:
                    await changes.aclose()
                    return pending.result()
            raise AssertionError("no change arrived")

    change = asyncio.run(first_change())
    assert change.key == "aw/k" and change.value == b"async" and change.replicated

    watcher = subprocess.Popen(
        [RUMOR, "watch", "cli/", "--url", n2.url, "--api-key", READER_KEY, "--json"],
        stdout=subprocess.PIPE,
    )
    try:
        assert watcher.stdout is not None
        line = b""
        for _ in range(100):
            trio.put(n1, "cli/k", b"printed")
            ready, _, _ = select.select([watcher.stdout], [], [], 0.2)
            if ready:
                line = watcher.stdout.readline()
                break
        document = json.loads(line)
        assert document["key"] == "cli/k" and document["value"] == "printed"
        assert document["replicated"] is True and document["origin"] == "n1"
    finally:
        watcher.kill()
        watcher.wait(timeout=10)
        if watcher.stdout is not None:
            watcher.stdout.close()


# --- the hub alone (no sockets) --------------------------------------------------------
def _record(value: bytes = b"v", tombstone: bool = False) -> Record:
    return Record(value, "text/plain", {"a": 1}, hlc.pack(1_000), "a", tombstone)


def test_the_hub_gives_each_watcher_its_prefix_in_order() -> None:
    hub = WatchHub(7)
    watcher = hub.open("p/", None)
    hub.publish([("p/1", _record()), ("q/1", _record()), ("p/2", _record(b"\xff"))], False)
    events = [json.loads(line) for line in hub.take(watcher)]
    assert [(e["key"], e["position"]) for e in events] == [("p/1", "7:1"), ("p/2", "7:3")]
    assert events[1]["encoding"] == "base64" and events[1]["value"] == "/w=="
    assert watcher.cursor == 3 and hub.take(watcher) == []


def test_a_change_carries_the_instant_its_batch_was_applied_on_the_nodes_clock() -> None:
    readings = iter([12.5, 99.0])
    hub = WatchHub(1, clock=lambda: next(readings))
    watcher = hub.open("", None)
    hub.publish([("a", _record()), ("b", _record())], True)  # read from the clock
    hub.publish([("c", _record())], False, applied_s=7.25)  # given by the runner
    events = [json.loads(line) for line in hub.take(watcher)]
    assert [e["applied_us"] for e in events] == [12_500_000, 12_500_000, 7_250_000]


def test_the_ring_is_bounded_by_count_and_bytes_and_a_lagging_watcher_overflows() -> None:
    hub = WatchHub(1, ring_events=10, ring_bytes=10 * 1024, max_lag_events=5)
    watcher = hub.open("", None)
    hub.publish([(f"k{i}", _record(b"x" * 2048)) for i in range(4)], True)
    assert not watcher.overflowed and hub.held == 4
    hub.publish([(f"k{i}", _record(b"x" * 2048)) for i in range(4, 8)], True)
    assert hub.size_bytes <= 10 * 1024 and hub.held < 8
    assert watcher.overflowed, "8 changes behind, more than 5"
    with pytest.raises(HttpError) as lost:
        hub.open("", "1:0")
    assert lost.value.status == 410


def test_the_number_of_watchers_is_bounded() -> None:
    hub = WatchHub(1, max_watchers=2)
    first = hub.open("", None)
    hub.open("", None)
    with pytest.raises(HttpError) as refused:
        hub.open("", None)
    assert refused.value.status == 503 and refused.value.error == "too_many_watchers"
    hub.close(first)
    hub.open("", None)


def test_a_stopping_node_ends_its_watch_streams_cleanly(cluster_factory: object) -> None:
    cluster = cluster_factory()  # type: ignore[operator]
    node = cluster.add("e1")
    cluster.wait_ready()
    events = []
    with cluster.client.stream("GET", node.url + "/kv?watch=true", headers=READER) as response:
        lines = response.iter_lines()
        events.append(json.loads(next(lines)))
        node.send(signal.SIGTERM)
        events.extend(json.loads(line) for line in lines)  # a complete body, not a reset
    assert [e["type"] for e in events] == ["start"]
    assert node.stop(timeout_s=30) is not None


def test_batches_trimmed_in_the_middle_still_replay_every_held_change_in_order() -> None:
    """A ring entry is one publish: trimming cuts the oldest one part way, by count."""
    hub = WatchHub(3, ring_events=10, max_lag_events=10)
    for batch in range(4):  # 4 x 4 changes: the first 6 leave the ring
        hub.publish([(f"k{batch}.{i}", _record()) for i in range(4)], batch % 2 == 1)
    assert hub.held == 10 and hub.seq == 16
    with pytest.raises(HttpError):
        hub.open("", "3:5")  # change 6 left the ring
    watcher = hub.open("", "3:6")
    events = [json.loads(line) for line in hub.take(watcher)]
    assert [e["position"] for e in events] == [f"3:{seq}" for seq in range(7, 17)]
    assert events[0]["key"] == "k1.2" and events[0]["replicated"] is True
    assert events[-1]["key"] == "k3.3" and hub.take(watcher) == []
    again = hub.open("k2.", "3:6")  # lines are shared: the same bytes for a second reader
    assert [json.loads(line)["key"] for line in hub.take(again)] == [f"k2.{i}" for i in range(4)]
