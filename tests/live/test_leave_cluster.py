"""Real node processes on loopback: leave on SIGTERM, `rumor node leave`, `rumor cluster
forget`, no false verdict after SIGSTOP/SIGCONT, and a rolling restart under a set
workload (``live.checker``) with a client that retries on another node."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable

import httpx

from rumordb.live.checker import Status, Workload, classify, wait_identical
from tests.live.harness import ADMIN, ADMIN_KEY, RUMOR, Cluster, NodeProcess


def dead_verdicts(node: NodeProcess, since: int) -> list[dict[str, object]]:
    """The `member_state` log lines of ``node`` (after byte ``since``) that say dead."""
    found = []
    for line in node.logs()[since:].splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "member_state" and event.get("new") == "dead":
            found.append(event)
    return found


def wait_ready(cluster: Cluster, node: NodeProcess, timeout_s: float = 30.0) -> None:
    def ready() -> bool:
        try:
            return cluster.client.get(node.url + "/ready").status_code == 200
        except httpx.HTTPError:
            return False

    cluster.poll(ready, timeout_s, f"{node.node_id} /ready")


def test_a_paused_node_marks_no_healthy_peer_dead_when_it_wakes(
    cluster_factory: Callable[[], Cluster],
) -> None:
    cluster = cluster_factory()
    nodes = [cluster.add(f"n{i}") for i in (1, 2, 3)]
    cluster.wait_ready()
    cluster.wait_members({"n1", "n2", "n3"})
    paused = nodes[0]
    # FAST_TIMERS: suspect after 4 x 250 ms, dead 1 s later; pause for twice that.
    mark = len(paused.logs())
    paused.send(signal.SIGSTOP)
    try:
        cluster.wait_state(nodes[1], {"n1"}, "dead", timeout_s=20)  # it really was silent
        time.sleep(0.5)
    finally:
        paused.send(signal.SIGCONT)
    cluster.wait_state(paused, {"n2", "n3"}, "alive", timeout_s=10)
    cluster.wait_state(nodes[1], {"n1"}, "alive", timeout_s=20)
    false_dead = dead_verdicts(paused, mark)
    print(f"false dead verdicts after SIGSTOP/SIGCONT: {len(false_dead)}")
    assert false_dead == [], false_dead
    assert '"loop_stalled"' in paused.logs()[mark:]


def test_sigterm_leaves_and_forget_removes_a_dead_member(
    cluster_factory: Callable[[], Cluster],
) -> None:
    cluster = cluster_factory()
    nodes = [cluster.add(f"n{i}") for i in (1, 2, 3, 4)]
    cluster.wait_ready()
    cluster.wait_members({"n1", "n2", "n3", "n4"})
    n1, n2, n3, n4 = nodes
    # `rumor node leave` inside the "container": the node's own RUMOR_* settings only.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUMOR_")}
    env.update(RUMOR_HOST=n3.host, RUMOR_PORT=str(n3.port), RUMOR_ADMIN_KEY=ADMIN_KEY)
    done = subprocess.run([RUMOR, "node", "leave"], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "left"
    cluster.wait_state(n1, {"n3"}, "left", timeout_s=10)
    assert cluster.client.get(n3.url + "/ready").status_code == 503
    n3.stop(signal.SIGTERM)

    n2.stop(signal.SIGTERM)  # SIGTERM leaves too: left, never dead
    cluster.wait_state(n1, {"n2"}, "left", timeout_s=10)

    n4.stop(signal.SIGKILL)
    cluster.wait_state(n1, {"n4"}, "dead", timeout_s=20)
    forget = [RUMOR, "cluster", "forget", "--url", n1.url, "--api-key", ADMIN_KEY]
    refused = subprocess.run([*forget, "n1"], capture_output=True, timeout=30)
    assert refused.returncode != 0
    done = subprocess.run([*forget, "n4"], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "n4" not in cluster.members(n1)
    assert cluster.client.post(n1.url + "/admin/forget/n1", headers=ADMIN).status_code == 409


class FailoverTransport(httpx.AsyncBaseTransport):
    """A client that retries on another node: after a refused connection, a connection
    the stopping node closed (a keep-alive race), or a 503 (starting, stopping, leaving).
    A retried write may apply twice: both versions carry the op's value, the later wins."""

    def __init__(self, netlocs: list[str], seed: int = 0) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._netlocs = netlocs
        self._rng = random.Random(seed)
        self.retries = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        order = [request.url.netloc.decode()]
        order += self._rng.sample([n for n in self._netlocs if n != order[0]], len(self._netlocs) - 1)  # fmt: skip
        for i, netloc in enumerate(order):
            host, port = netloc.rsplit(":", 1)
            request.url = request.url.copy_with(host=host, port=int(port))
            request.headers["Host"] = netloc
            last = i == len(order) - 1
            try:
                response = await self._inner.handle_async_request(request)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
                if last:
                    raise
                self.retries += 1
                continue
            if response.status_code == 503 and not last:
                await response.aclose()
                self.retries += 1
                continue
            return response
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self._inner.aclose()


def test_rolling_restart_of_five_nodes_loses_no_acknowledged_write(
    cluster_factory: Callable[[], Cluster],
) -> None:
    cluster = cluster_factory()
    nodes = [cluster.add(f"n{i}") for i in range(1, 6)]
    cluster.wait_ready()
    cluster.wait_members({f"n{i}" for i in range(1, 6)})
    for node in nodes:
        wait_ready(cluster, node)
    urls = [node.url for node in nodes]
    transport = FailoverTransport([f"{n.host}:{n.port}" for n in nodes])
    workload = Workload(
        urls=urls, api_key=ADMIN_KEY, keys=50, rate=40.0, duration_s=600.0,
        delete_ratio=0.1, timeout_s=5.0, seed=7,
    )  # fmt: skip

    async def run() -> tuple[object, float | None]:
        stop = asyncio.Event()
        async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
            writing = asyncio.create_task(workload.run(client, stop))
            await asyncio.sleep(2.0)
            for node in nodes:
                await asyncio.to_thread(node.stop, signal.SIGTERM, 60.0)
                node.start()
                await asyncio.to_thread(wait_ready, cluster, node, 60.0)
            await asyncio.sleep(2.0)
            stop.set()
            history = await writing
            async with httpx.AsyncClient(trust_env=False, timeout=5.0) as reader:
                snap, took_s = await wait_identical(
                    reader, urls, workload.key_names(), workload.prefix, ADMIN_KEY, 60.0
                )
            return classify(history, snap), took_s

    report, took_s = asyncio.run(run())
    not_ok = Counter(
        (op.kind.value, op.http_status, (op.error or "")[:60])
        for op in workload.history
        if op.status is not Status.OK
    )
    print(f"not acknowledged: {dict(not_ok)}")
    summary = report.summary()  # type: ignore[attr-defined]
    print(f"rolling restart of 5 nodes: {summary}, retried on another node: {transport.retries}")
    assert summary["lost"] == 0, (report.lost[:5], report.unexpected[:5])  # type: ignore[attr-defined]
    assert summary["identical"] and took_s is not None
    # A delete of a key that is absent is answered 404: an answer, not a refusal.
    refused = sum(n for (kind, status, _), n in not_ok.items() if (kind, status) != ("delete", 404))
    assert refused == 0, f"a client that retries on another node is refused nothing: {not_ok}"
