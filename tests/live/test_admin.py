"""``live/admin.py`` on in-process clusters: /ready, POST /admin/leave, /admin/forget/{id}."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from rumordb.live.runner import Runner
from rumordb.live.storage import Storage
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
async def cluster(
    tmp_path: Path, n: int, join: bool = True, **overrides: Any
) -> AsyncIterator[tuple[RoutingTransport, list[Runner], list[httpx.AsyncClient]]]:
    transport = RoutingTransport()
    async with contextlib.AsyncExitStack() as stack:
        apps: list[FastAPI] = []
        clients: list[httpx.AsyncClient] = []
        for i in range(n):
            settings = settings_for(tmp_path, f"n{i + 1}", 9101 + i, **overrides)
            app, client = await stack.enter_async_context(running_app(settings, transport))
            transport.add(f"127.0.0.1:{9101 + i}", app)
            apps.append(app)
            clients.append(client)
        runners: list[Runner] = [app.state.runner for app in apps]
        if join:
            for a in runners:
                for b in runners:
                    if a is not b:
                        a.node.join(b.node_id, b.url, b.incarnation, a.now(), mono=a.mono())
        yield transport, runners, clients


def state_of(runner: Runner, member: str) -> str | None:
    info = runner.node.membership.member_info(member)
    return None if info is None else info.state.value


async def test_ready_needs_no_key_and_waits_for_a_peer_then_an_anti_entropy_exchange(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path, 2, join=False, ready_alone_after_s=3600) as (_, runners, clients):
        response = await clients[0].get("/ready")
        assert response.status_code == 503
        assert response.json()["error"] == "not_ready" and "no peer" in response.json()["detail"]
        a, b = runners
        a.node.join(b.node_id, b.url, b.incarnation, a.now(), mono=a.mono())
        b.node.join(a.node_id, a.url, a.incarnation, b.now(), mono=b.mono())

        async def ready() -> bool:
            return (await clients[0].get("/ready")).status_code == 200

        await eventually(ready, 10)
        assert a.view.counters().anti_entropy_completed >= 1


async def test_a_lone_node_is_ready_after_the_grace_period(tmp_path: Path) -> None:
    async with cluster(tmp_path, 1, ready_alone_after_s=0.3) as (_, _, clients):
        assert (await clients[0].get("/ready")).status_code == 503

        async def ready() -> bool:
            return (await clients[0].get("/ready")).status_code == 200

        await eventually(ready, 5)


async def test_leave_needs_admin_and_the_others_mark_the_node_left(tmp_path: Path) -> None:
    async with cluster(tmp_path, 3) as (_, runners, clients):
        assert (await clients[2].post("/admin/leave")).status_code == 401
        assert (await clients[2].post("/admin/leave", headers=READER)).status_code == 403
        response = await clients[2].post("/admin/leave", headers=ADMIN)
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "left" and response.json()["remaining"] == 0
        assert (await clients[2].get("/ready")).status_code == 503

        async def marked_left() -> bool:
            return all(state_of(r, "n3") == "left" for r in runners[:2])

        await eventually(marked_left, 5)


async def test_sharded_leave_hands_every_key_off_before_it_answers(tmp_path: Path) -> None:
    async with cluster(tmp_path, 4, sharding=True, replicas=2) as (_, runners, clients):
        keys = [f"k{i}" for i in range(40)]
        for i, key in enumerate(keys):
            response = await clients[i % 4].put(f"/kv/{key}", content=key.encode(), headers=ADMIN)
            assert response.status_code in (200, 201), response.text
        leaver = runners[3]
        # every copy it owns has reached it (replication runs on after each ack): what
        # it holds is then what the leave must hand off
        its_keys = {key for key in keys if "n4" in leaver.view.owners(key)}
        assert its_keys
        await eventually(lambda: _async(its_keys <= leaver.view.records().keys()), 5)
        held = len(leaver.view.records())
        report = (await clients[3].post("/admin/leave", headers=ADMIN)).json()
        assert report["remaining"] == 0 and report["handed_off"] == held
        assert len(leaver.view.records()) == 0
        for key in keys:
            owners = runners[0].node.owners(key)
            assert "n4" not in owners
            assert all(key in runners[int(o[1:]) - 1].view.records() for o in owners)


async def _async(value: bool) -> bool:
    return value


async def test_forget_refuses_a_live_member_and_removes_a_dead_one(tmp_path: Path) -> None:
    async with cluster(
        tmp_path, 3, probe_interval_ms=50, suspicion_mult=1, leave_on_stop=False
    ) as (transport, runners, clients):
        response = await clients[0].post("/admin/forget/n3", headers=ADMIN)
        assert response.status_code == 409 and response.json()["error"] == "member_active"
        assert (await clients[0].post("/admin/forget/n3", headers=READER)).status_code == 403
        bad = await clients[0].post("/admin/forget/bad%20id", headers=ADMIN)
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_node_id"
        assert (await clients[0].post("/admin/forget/n9", headers=ADMIN)).status_code == 404
        # n3 dies: unreachable, and silent (a block by destination alone lets its own
        # heartbeats keep refuting the others' suspicion).
        transport.blocked.add("127.0.0.1:9103")
        await runners[2].stop()

        async def dead() -> bool:
            return state_of(runners[0], "n3") == "dead"

        await eventually(dead, 10)
        response = await clients[0].post("/admin/forget/n3", headers=ADMIN)
        assert response.status_code == 200 and response.json()["forgotten"] == "n3"
        assert state_of(runners[0], "n3") is None
        members = (await clients[0].get("/cluster", headers=READER)).json()["members"]
        assert "n3" not in {m["id"] for m in members}


async def test_the_purged_version_memory_survives_a_restart(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "p1", 9201, durability="sync", ready_alone_after_s=0)
    async with running_app(settings) as (app, client):
        runner: Runner = app.state.runner
        assert (await client.put("/kv/k", content=b"v", headers=ADMIN)).status_code == 201
        assert (await client.delete("/kv/k", headers=ADMIN)).status_code in (200, 204)

        async def purged() -> bool:
            return "k" in runner.node.replica.tombstones.purged

        await eventually(purged, 10)
        version = runner.node.replica.tombstones.purged["k"]
    storage = Storage.open(settings.data_dir, "sync")
    try:
        assert storage.load_purged() == [("k", version)]
    finally:
        await storage.close()
    async with running_app(settings) as (app, _):
        assert app.state.runner.node.replica.tombstones.purged == {"k": version}
