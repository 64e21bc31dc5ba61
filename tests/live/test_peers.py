"""Meeting peers: announcements joined only while running, seeds contacted until alive."""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pytest

from rumordb.core import Node
from rumordb.live.discovery import Announcement
from rumordb.live.metrics import Metrics
from rumordb.live.peers import Peers
from tests.live.harness import eventually, settings_for

pytestmark = pytest.mark.anyio


def heartbeats(asked: list[str], answers: dict[str, object]) -> httpx.MockTransport:
    """Seeds that answer ``GET /heartbeat`` with ``answers[host]`` (absent: unreachable)."""

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(f"{request.url.host}{request.url.path}")
        if request.url.host not in answers:
            raise httpx.ConnectError("unreachable", request=request)
        return httpx.Response(200, json=answers[request.url.host])

    return httpx.MockTransport(handle)


def peers_of(
    tmp_path: Path, client: httpx.AsyncClient, running: list[bool], seeds: tuple[str, ...] = ()
) -> tuple[Node, Peers]:
    node = Node("t1", "http://127.0.0.1:9001", rng=random.Random(1), now=100.0)
    settings = settings_for(tmp_path, seeds=list(seeds))
    peers = Peers(
        settings, node, "http://127.0.0.1:9001", client=client, running=lambda: running[0],
        now=lambda: 100.0, metrics=Metrics(),
    )  # fmt: skip
    return node, peers


async def test_an_announcement_is_joined_only_while_running_and_never_our_own(
    tmp_path: Path,
) -> None:
    running = [False]
    async with httpx.AsyncClient() as client:
        node, peers = peers_of(tmp_path, client, running)
        peers.on_peer(Announcement("t2", "http://127.0.0.2:9001", 1))
        assert node.view.peers() == [], "not running yet (loading): nobody is met"
        running[0] = True
        peers.on_peer(Announcement("t1", "http://elsewhere:9001", 7))
        peers.on_peer(Announcement("t2", "http://127.0.0.2:9001", 1))
        assert node.view.peers() == ["t2"] and node.view.address("t1") == "http://127.0.0.1:9001"
        assert node.view.address("t2") == "http://127.0.0.2:9001"


async def test_a_seed_is_joined_from_its_heartbeat_and_a_bad_one_is_ignored(
    tmp_path: Path,
) -> None:
    asked: list[str] = []
    answers: dict[str, object] = {
        "good": {"node_id": "t2", "incarnation": 3, "heartbeat": 9},
        "bad": {"node_id": "t3", "incarnation": -1},
    }
    async with httpx.AsyncClient(transport=heartbeats(asked, answers)) as client:
        node, peers = peers_of(tmp_path, client, [True])
        for host in ("bad", "down", "good"):
            await peers.contact_seed(f"http://{host}:9001")
        assert asked == ["bad/heartbeat", "down/heartbeat", "good/heartbeat"]
        assert node.view.peers() == ["t2"] and node.view.address("t2") == "http://good:9001"
        assert {m.id: m.incarnation for m in node.view.members()}["t2"] == 3


async def test_seeds_are_contacted_while_running_and_no_more_once_closed(
    tmp_path: Path,
) -> None:
    asked: list[str] = []
    answers: dict[str, object] = {"127.0.0.2": {"node_id": "t2", "incarnation": 0}}
    async with httpx.AsyncClient(transport=heartbeats(asked, answers)) as client:
        node, peers = peers_of(tmp_path, client, [True], seeds=("http://127.0.0.2:9001",))
        await peers.start(discovery=False)
        text = peers._metrics.render().decode()
        stale = [line for line in text.splitlines() if "stale_frames" in line]
        assert not [line for line in stale if "discovery" in line and not line.startswith("#")]

        async def joined() -> bool:
            return node.view.is_alive("t2")

        await eventually(joined, 5.0)
        await peers.close()
        count = len(asked)
        assert count >= 1 and peers.rejected == 0
        await peers.close()  # closing twice is harmless
        assert len(asked) == count, "the seed loop ended with close"
