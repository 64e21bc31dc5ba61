"""Node-to-node authentication over the real apps: frames bound to their recipient, stale
frames told apart from forgeries, and a rolling rotation of the cluster secret."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from rumordb.live.gossip_client import Envelope, seal_envelope
from rumordb.live.runner import Runner
from rumordb.live.wire import Signer
from tests.live.harness import (
    ADMIN,
    READER,
    SECRET,
    RoutingTransport,
    eventually,
    running_app,
    settings_for,
)

pytestmark = pytest.mark.anyio
OLD = "old-" + secrets.token_urlsafe(24)
NEW = "new-" + secrets.token_urlsafe(24)


def metric(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return 0.0


async def test_a_frame_sealed_for_another_node_is_refused(tmp_path: Path) -> None:
    async with running_app(settings_for(tmp_path, "n3")) as (_, http):
        for_n2 = seal_envelope(Signer(SECRET), Envelope("n1", []), time.time(), "n2")
        refused = await http.post("/gossip", content=for_n2)
        assert refused.status_code == 401 and refused.json()["error"] == "unauthenticated"
        for_n3 = seal_envelope(Signer(SECRET), Envelope("n1", []), time.time(), "n3")
        assert (await http.post("/gossip", content=for_n3)).status_code == 204


async def test_an_envelope_claiming_another_sender_than_its_seal_is_refused(
    tmp_path: Path,
) -> None:
    async with running_app(settings_for(tmp_path, "n3")) as (_, http):
        frame = Signer(SECRET).seal(b"\x92\xa2n9\x90", time.time(), "n1", "n3")  # ["n9", []]
        refused = await http.post("/gossip", content=frame)
        assert refused.status_code == 401


async def test_an_authentic_stale_frame_is_counted_apart_from_forgeries(tmp_path: Path) -> None:
    async with running_app(settings_for(tmp_path, "n3")) as (_, http):
        late = seal_envelope(Signer(SECRET), Envelope("n1", []), time.time() - 120, "n3")
        answer = await http.post("/gossip", content=late)
        assert answer.status_code == 401 and answer.json()["error"] == "stale"
        forged = seal_envelope(Signer(NEW), Envelope("n1", []), time.time() - 120, "n3")
        assert (await http.post("/gossip", content=forged)).json()["error"] == "unauthenticated"
        text = (await http.get("/metrics", headers=READER)).text
    assert metric(text, 'rumor_stale_frames_dropped_total{channel="gossip"}') == 1.0
    assert metric(text, 'rumor_unauthenticated_dropped_total{channel="gossip"}') == 1.0


# --- rotation ------------------------------------------------------------------------
STEPS = [(OLD, None), (OLD, NEW), (NEW, OLD), (NEW, None)]  # see live.wire: three restarts


@contextlib.asynccontextmanager
async def mixed_cluster(
    tmp_path: Path, configs: list[tuple[str, str | None]]
) -> AsyncIterator[list[tuple[FastAPI, httpx.AsyncClient]]]:
    transport = RoutingTransport()
    async with contextlib.AsyncExitStack() as stack:
        nodes = []
        for i, (secret, previous) in enumerate(configs):
            settings = settings_for(
                tmp_path,
                f"n{i + 1}",
                9101 + i,
                cluster_secret=secret,
                cluster_secret_previous=previous,
            )
            app, client = await stack.enter_async_context(running_app(settings, transport))
            transport.add(f"127.0.0.1:{9101 + i}", app)
            nodes.append((app, client))
        runners: list[Runner] = [app.state.runner for app, _ in nodes]
        for a in runners:
            for b in runners:
                if a is not b:
                    a.node.join(b.node_id, b.url, b.incarnation, a.now(), mono=a.mono())
        yield nodes


@pytest.mark.parametrize("step", [1, 2, 3])
async def test_a_rolling_secret_rotation_refuses_no_gossip(tmp_path: Path, step: int) -> None:
    """Mid-step: two nodes still in the previous configuration, two restarted."""
    before, after = STEPS[step - 1], STEPS[step]
    async with mixed_cluster(tmp_path, [before, before, after, after]) as nodes:
        for i, (_, writer) in enumerate(nodes):  # every direction: old -> new and new -> old
            put = await writer.put(f"/kv/from-{i}", content=b"v", headers=ADMIN)
            assert put.status_code == 201
        for _, reader in nodes:

            async def has_all(client: httpx.AsyncClient = reader) -> bool:
                for i in range(len(nodes)):
                    if (await client.get(f"/kv/from-{i}", headers=READER)).status_code != 200:
                        return False
                return True

            await eventually(has_all, 10.0)
        for _, client in nodes:
            text = (await client.get("/metrics", headers=READER)).text
            assert "rumor_unauthenticated_dropped_total{" not in text, text
