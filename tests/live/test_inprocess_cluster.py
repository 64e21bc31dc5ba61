"""Several real apps in one process, wired by ``RoutingTransport``: replication, batching,
sharded forwarding and faults over the real gossip client and ``POST /gossip``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from rumordb.live.runner import Runner
from tests.live.harness import (
    ADMIN,
    READER,
    RoutingTransport,
    eventually,
    running_app,
    settings_for,
)

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def in_process_cluster(
    tmp_path: Path, n: int, **overrides: Any
) -> AsyncIterator[tuple[RoutingTransport, list[FastAPI], list[httpx.AsyncClient]]]:
    transport = RoutingTransport()
    async with contextlib.AsyncExitStack() as stack:
        apps: list[FastAPI] = []
        clients: list[httpx.AsyncClient] = []
        for i in range(n):
            settings = settings_for(tmp_path, f"n{i + 1}", 9001 + i, **overrides)
            app, client = await stack.enter_async_context(running_app(settings, transport))
            transport.add(f"127.0.0.1:{9001 + i}", app)
            apps.append(app)
            clients.append(client)
        runners = [runner_of(app) for app in apps]
        for a in runners:
            for b in runners:
                if a is not b:
                    a.node.join(b.node_id, b.url, b.incarnation, a.now(), mono=a.mono())
        yield transport, apps, clients


def runner_of(app: FastAPI) -> Runner:
    runner: Runner = app.state.runner
    return runner


async def test_a_write_replicates_to_every_node(tmp_path: Path) -> None:
    async with in_process_cluster(tmp_path, 3) as (_, _, clients):
        put = await clients[0].put(
            "/kv/k", content=b"v", headers={**ADMIN, "content-type": "text/x"}
        )
        assert put.status_code == 201
        for client in clients[1:]:

            async def arrived(c: httpx.AsyncClient = client) -> bool:
                got = await c.get("/kv/k", headers=READER)
                return got.status_code == 200 and got.content == b"v"

            await eventually(arrived, 5.0)
            got = await client.get("/kv/k", headers=READER)
            assert got.headers["content-type"] == "text/x"
            assert got.headers["etag"] == put.headers["etag"]
        deleted = await clients[1].delete("/kv/k", headers=ADMIN)
        assert deleted.status_code == 200
        for client in (clients[0], clients[2]):

            async def gone(c: httpx.AsyncClient = client) -> bool:
                return (await c.get("/kv/k", headers=READER)).status_code == 404

            await eventually(gone, 5.0)


async def test_concurrent_writes_share_one_commit_and_one_push_per_peer(tmp_path: Path) -> None:
    async with in_process_cluster(tmp_path, 3, gossip_interval_ms=60_000) as (_, apps, clients):
        runner = runner_of(apps[0])
        sent_before = runner.node.counters.messages_sent

        async def put(i: int) -> None:
            response = await clients[0].put(f"/kv/c{i}", content=b"v", headers=ADMIN)
            assert response.status_code == 201

        async with anyio.create_task_group() as group:
            for i in range(50):
                group.start_soon(put, i)
        pushes = runner.node.counters.messages_sent - sent_before
        # 50 writes in a few batches: far fewer pushes than 50 writes x 2 peers.
        assert pushes <= 10, pushes
        other = runner_of(apps[2])

        async def all_there() -> bool:
            return all(other.node.view.get(f"c{i}") is not None for i in range(50))

        await eventually(all_there, 5.0)


async def test_blocked_peer_gets_nothing_until_healed(tmp_path: Path) -> None:
    async with in_process_cluster(tmp_path, 2, allow_faults=True) as (_, apps, clients):
        blocked = await clients[0].post("/faults", json={"block": ["n2"]}, headers=ADMIN)
        assert blocked.status_code == 200
        await clients[0].put("/kv/p", content=b"1", headers=ADMIN)
        await anyio.sleep(0.6)  # a few gossip and anti-entropy rounds (50 / 200 ms)
        assert (await clients[1].get("/kv/p", headers=READER)).status_code == 404
        assert runner_of(apps[0]).gossip.dropped > 0
        assert (await clients[0].delete("/faults", headers=ADMIN)).status_code == 200

        async def healed() -> bool:
            return (await clients[1].get("/kv/p", headers=READER)).status_code == 200

        await eventually(healed, 5.0)


async def test_sharded_requests_are_forwarded_to_an_owner(tmp_path: Path) -> None:
    # Failure detection is not what this tests: on a loaded machine four apps in one event
    # loop miss 100 ms probes, and a listing gathers only from peers thought alive.
    patient = {"sharding": True, "replicas": 2, "suspicion_mult": 50}
    async with in_process_cluster(tmp_path, 4, **patient) as (_, apps, clients):
        runners = [runner_of(app) for app in apps]
        keys = [f"s{i}" for i in range(40)]
        for i, key in enumerate(keys):
            put = await clients[i % 4].put(f"/kv/{key}", content=key.encode(), headers=ADMIN)
            assert put.status_code == 201, put.text
        for key in keys:
            owners = set(runners[0].node.owners(key))
            assert len(owners) == 2
            for client in clients:  # any node answers, by forwarding if it is not an owner
                got = await client.get(f"/kv/{key}", headers=READER)
                assert got.status_code == 200 and got.content == key.encode()

            async def stored_on_owners(k: str = key, o: set[str] = owners) -> bool:
                holders = {r.node_id for r in runners if r.node.view.version(k) is not None}
                return holders == o

            await eventually(stored_on_owners, 5.0)
        listing = (await clients[0].get("/kv?limit=1000", headers=READER)).json()
        assert listing["keys"] == sorted(keys)
        view = (await clients[0].get("/cluster", headers=READER)).json()
        assert view["sharding"] is True
        assert abs(sum(view["ownership"].values()) - 1.0) < 1e-6


async def test_gossip_reply_carries_anti_entropy_back(tmp_path: Path) -> None:
    """A node that missed a write (blocked) catches up by anti-entropy alone."""
    async with in_process_cluster(tmp_path, 2, gossip_interval_ms=60_000) as (
        transport,
        _,
        clients,
    ):
        transport.blocked.add("127.0.0.1:9002")
        await clients[0].put("/kv/ae", content=b"1", headers=ADMIN)
        transport.blocked.clear()

        async def repaired() -> bool:
            return (await clients[1].get("/kv/ae", headers=READER)).status_code == 200

        await eventually(repaired, 5.0)


async def test_a_refuted_incarnation_is_persisted(tmp_path: Path) -> None:
    from rumordb.core import MemberEntry

    async with running_app(settings_for(tmp_path, probe_interval_ms=20)) as (app, _):
        runner = runner_of(app)
        rumour = MemberEntry(runner.node_id, runner.url, runner.incarnation + 5, 0, "dead")
        runner.node.membership.observe(rumour, runner.now())

        async def persisted() -> bool:
            return runner.storage.get_meta("incarnation") == str(runner.incarnation) != "1"

        await eventually(persisted, 5.0)
        assert runner.incarnation == 7  # refuted above the rumour's 6


async def test_clock_offset_shifts_the_hlc_of_this_nodes_writes(tmp_path: Path) -> None:
    """--clock-offset-ms: a node an hour ahead stamps its writes an hour ahead."""
    import time

    hour_ms = 3_600_000
    async with in_process_cluster(tmp_path, 1, clock_offset_ms=hour_ms) as (_, _, clients):
        put = await clients[0].put("/kv/k", content=b"v", headers=ADMIN)
        assert put.status_code == 201
        meta = (await clients[0].get("/kv/k?meta=true", headers=READER)).json()
        skew_ms = meta["hlc_ms"] - time.time() * 1000
        assert abs(skew_ms - hour_ms) < 60_000, skew_ms


async def test_a_node_joins_through_seeds_without_discovery(tmp_path: Path) -> None:
    """--seeds: with broadcast off, n2 finds n1 through its seed URL, and n1 learns of n2."""
    transport = RoutingTransport()
    async with contextlib.AsyncExitStack() as stack:
        first = settings_for(tmp_path, "n1", 9001)
        app1, _ = await stack.enter_async_context(running_app(first, transport))
        transport.add("127.0.0.1:9001", app1)
        second = settings_for(tmp_path, "n2", 9002, seeds=["http://127.0.0.1:9001"])
        app2, client2 = await stack.enter_async_context(running_app(second, transport))
        transport.add("127.0.0.1:9002", app2)

        async def acquainted() -> bool:
            one, two = runner_of(app1).node, runner_of(app2).node
            return one.membership.is_alive("n2") and two.membership.is_alive("n1")

        await eventually(acquainted, 10.0)
        put = await client2.put("/kv/seeded", content=b"yes", headers=ADMIN)
        assert put.status_code == 201

        async def replicated() -> bool:
            return runner_of(app1).node.view.get("seeded") is not None

        await eventually(replicated, 5.0)


async def test_anti_entropy_steps_in_slices_are_carried_on_by_the_tick_loop(
    tmp_path: Path,
) -> None:
    """Keys only anti-entropy can bring (loaded, never pushed), each step cut into slices
    of 4 items: the tick loop carries every step on, and the replicas converge."""
    from rumordb.core import Record

    async with in_process_cluster(tmp_path, 2) as (_, apps, _):
        holder, other = runner_of(apps[0]), runner_of(apps[1])
        for runner in (holder, other):
            runner.node.anti_entropy.slice_items = 4
        records = [(f"only-here/{i}", Record(b"v", "text/plain", {"n1": i + 1}, i + 1, "n1")) for i in range(300)]  # fmt: skip
        holder.node.replica.load_all(records)  # on disk, say: no rumor carries them
        sliced = 0

        async def converged() -> bool:
            nonlocal sliced
            sliced += holder.node.anti_entropy.in_progress() + other.node.anti_entropy.in_progress()
            return all(other.node.view.get(key) is not None for key, _ in records)

        await eventually(converged, 20.0)
        assert sliced > 0, "some steps were seen in slices"
