"""UDP discovery on loopback: nodes on 127.0.0.x find each other; forgeries are dropped.

Each test uses its own random discovery port, so concurrent runs do not hear each other
(and a stray datagram from another run would fail the MAC check anyway).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NamedTuple

import psutil
import pytest
import uvloop

from rumordb.live.discovery import (
    LOOPBACK_BROADCAST,
    Announcement,
    Discovery,
    announcement_from_heartbeat,
    encode_announcement,
    resolve_broadcast,
    seed_peers,
)
from rumordb.live.wire import BROADCAST, Signer
from tests.live.harness import free_udp_port

SECRET = "discovery test secret"
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def run(main: Coroutine[Any, Any, None], loop: str = "asyncio") -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(main)


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)


def seal(announcement: Announcement, now: float | None = None, secret: str = SECRET) -> bytes:
    """A datagram as ``announcement``'s node would send it."""
    payload = encode_announcement(announcement)
    when = time.time() if now is None else now
    return Signer(secret).seal(payload, when, announcement.node_id, BROADCAST)


def make(node_id: str, host: str, port: int, heard: list[Announcement]) -> Discovery:
    return Discovery(
        node_id=node_id,
        url_fn=lambda: f"http://{host}:8001",
        incarnation_fn=lambda: 1,
        signer=Signer(SECRET),  # one per node, as in real life: replay memory is per receiver
        bind_host=host,
        port=port,
        broadcast_addr=LOOPBACK_BROADCAST,
        interval_ms=100,
        on_peer=heard.append,
    )


async def running(*nodes: Discovery) -> Callable[[], Awaitable[None]]:
    for node in nodes:
        await node.start()

    async def stop() -> None:
        for node in nodes:
            node.close()
        for node in nodes:
            await node.wait_closed()

    return stop


def send_raw(port: int, data: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sender.bind(("127.0.0.9", 0))
        sender.sendto(data, (LOOPBACK_BROADCAST, port))


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_three_nodes_on_loopback_find_each_other(loop: str) -> None:
    port = free_udp_port()
    heard: dict[str, list[Announcement]] = {"n2": [], "n3": [], "n4": []}

    async def scenario() -> None:
        nodes = [make(n, f"127.0.0.{n[1]}", port, heard[n]) for n in heard]
        stop = await running(*nodes)
        try:
            await until(lambda: all(len(node.peers) == 2 for node in nodes))
            for node in nodes:
                others = {n for n in heard if n != node.node_id}
                assert set(node.peers) == others
                assert all(node.peers[n].url == f"http://127.0.0.{n[1]}:8001" for n in others)
                assert node.rejected == 0
        finally:
            await stop()

    run(scenario(), loop)
    assert {a.node_id for a in heard["n2"]} == {"n3", "n4"}


def test_own_announcements_are_ignored() -> None:
    port = free_udp_port()
    heard: list[Announcement] = []

    async def scenario() -> None:
        node = make("solo", "127.0.0.2", port, heard)
        stop = await running(node)
        try:
            await until(lambda: node.ignored_own >= 2)
            assert node.received == 0 and node.peers == {}
        finally:
            await stop()

    run(scenario())
    assert heard == []


def test_datagrams_without_the_secret_are_rejected_and_counted() -> None:
    port = free_udp_port()
    heard: list[Announcement] = []
    forged = Announcement("intruder", "http://127.0.0.66:8001", 1)

    async def scenario() -> None:
        node = make("n2", "127.0.0.2", port, heard)
        stop = await running(node)
        try:
            send_raw(port, seal(forged, secret="wrong secret"))
            send_raw(port, encode_announcement(forged))  # unsigned
            send_raw(port, b"x" * 2000)  # oversized
            await until(lambda: node.rejected == 3)
            await until(lambda: node.ignored_own >= 1)  # the node kept working meanwhile
        finally:
            await stop()

    run(scenario())
    assert heard == []


def test_replayed_announcement_is_rejected() -> None:
    port = free_udp_port()
    heard: list[Announcement] = []
    peer = Announcement("n9", "http://127.0.0.9:8001", 4)
    frame = seal(peer)

    async def scenario() -> None:
        node = make("n2", "127.0.0.2", port, heard)
        stop = await running(node)
        try:
            send_raw(port, frame)
            await until(lambda: node.received == 1)
            send_raw(port, frame)
            await until(lambda: node.rejected == 1)
        finally:
            await stop()

    run(scenario())
    assert heard == [peer]


def test_an_authentic_but_stale_announcement_is_counted_apart() -> None:
    port = free_udp_port()
    heard: list[Announcement] = []
    peer = Announcement("n9", "http://127.0.0.9:8001", 4)

    async def scenario() -> None:
        node = make("n2", "127.0.0.2", port, heard)
        stale: list[int] = []
        node.on_stale = lambda: stale.append(1)
        stop = await running(node)
        try:
            send_raw(port, seal(peer, now=time.time() - 600))  # a paused sender's backlog
            await until(lambda: node.stale == 1 and stale == [1])
            assert node.rejected == 0 and node.received == 0
        finally:
            await stop()

    run(scenario())
    assert heard == []


def test_authentic_but_malformed_announcement_is_rejected() -> None:
    port = free_udp_port()
    heard: list[Announcement] = []
    bad_url = Announcement("n9", "ftp://127.0.0.9", 1)

    async def scenario() -> None:
        node = make("n2", "127.0.0.2", port, heard)
        stop = await running(node)
        try:
            send_raw(port, seal(bad_url))
            send_raw(port, Signer(SECRET).seal(b"\x93\x01\x02\x03", time.time(), "n9", BROADCAST))
            impostor = Announcement("n8", "http://127.0.0.8:8001", 1)  # sealed by n9
            send_raw(
                port,
                Signer(SECRET).seal(encode_announcement(impostor), time.time(), "n9", BROADCAST),
            )
            to_one_node = Signer(SECRET).seal(
                encode_announcement(impostor), time.time(), "n8", "n2"
            )
            send_raw(port, to_one_node)  # gossip framing, not a broadcast
            await until(lambda: node.rejected == 4)
        finally:
            await stop()

    run(scenario())
    assert heard == []


def test_loopback_listener_hears_no_unicast() -> None:
    """Bound to the broadcast address, not 0.0.0.0: datagrams to a host address miss it."""
    port = free_udp_port()
    heard: list[Announcement] = []
    peer = Announcement("n9", "http://127.0.0.9:8001", 1)

    async def scenario() -> None:
        node = make("n2", "127.0.0.2", port, heard)
        stop = await running(node)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                frame = seal(peer)
                sender.sendto(frame, ("127.0.0.1", port))
                sender.sendto(frame, ("127.0.0.2", port))
            await until(lambda: node.ignored_own >= 3)  # several rounds heard meanwhile
            assert node.received == 0 and node.rejected == 0
        finally:
            await stop()

    run(scenario())
    assert heard == []


def test_a_failing_on_peer_does_not_stop_discovery() -> None:
    port = free_udp_port()
    calls: list[str] = []

    def explode(announcement: Announcement) -> None:
        calls.append(announcement.node_id)
        raise RuntimeError("boom")

    async def scenario() -> None:
        a = make("n2", "127.0.0.2", port, [])
        b = make("n3", "127.0.0.3", port, [])
        a.on_peer = explode
        stop = await running(a, b)
        try:
            await until(lambda: len(calls) >= 3)
        finally:
            await stop()

    run(scenario())


# --- resolve_broadcast -------------------------------------------------------------------
class Addr(NamedTuple):
    family: int
    address: str
    netmask: str | None
    broadcast: str | None
    ptp: None = None


class Stats(NamedTuple):
    isup: bool


@pytest.fixture
def interfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    addrs = {
        "lo": [Addr(socket.AF_INET, "127.0.0.1", "255.0.0.0", None)],
        "eth0": [Addr(socket.AF_INET, "10.1.2.3", "255.255.255.0", "10.1.2.255")],
        "eth1": [Addr(socket.AF_INET, "192.168.7.9", "255.255.0.0", "255.255.255.255")],
        "tun0": [Addr(socket.AF_INET, "172.16.0.5", "255.255.255.255", None)],
        "down0": [Addr(socket.AF_INET, "10.9.9.9", "255.255.255.0", "10.9.9.255")],
    }
    stats = {name: Stats(name != "down0") for name in addrs}
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: addrs)
    monkeypatch.setattr(psutil, "net_if_stats", lambda: stats)


@pytest.mark.parametrize(
    ("host", "setting", "expected"),
    [
        ("127.0.0.1", "auto", "127.255.255.255"),
        ("127.0.0.4", "auto", "127.255.255.255"),
        ("localhost", "auto", "127.255.255.255"),
        ("127.0.0.2", "off", None),
        ("0.0.0.0", "off", None),
        ("127.0.0.2", "127.0.0.255", "127.0.0.255"),
        ("0.0.0.0", "255.255.255.255", "255.255.255.255"),  # only when asked for
        ("0.0.0.0", "auto", "10.1.2.255"),  # the first interface that is up, not loopback
        ("10.1.2.3", "auto", "10.1.2.255"),
        ("192.168.7.9", "auto", "192.168.255.255"),  # psutil says 255.255.255.255: recomputed
        ("172.16.0.5", "auto", None),  # a /32 has no broadcast address
        ("::1", "auto", None),
    ],
)
def test_resolve_broadcast(interfaces: None, host: str, setting: str, expected: str | None) -> None:
    assert resolve_broadcast(host, setting) == expected


def test_resolve_broadcast_refuses_a_foreign_host(interfaces: None) -> None:
    with pytest.raises(ValueError, match="not an address of this machine"):
        resolve_broadcast("10.200.0.1", "auto")


def test_resolve_broadcast_refuses_junk(interfaces: None) -> None:
    with pytest.raises(ValueError):
        resolve_broadcast("127.0.0.1", "everyone")


def test_unspecified_host_without_interfaces_falls_back_to_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lo = {"lo": [Addr(socket.AF_INET, "127.0.0.1", "255.0.0.0", None)]}
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: lo)
    monkeypatch.setattr(psutil, "net_if_stats", lambda: {"lo": Stats(True)})
    assert resolve_broadcast("0.0.0.0", "auto") == LOOPBACK_BROADCAST


# --- seeds ---------------------------------------------------------------------------
def test_seed_peers_are_normalized_deduplicated_and_exclude_ourselves() -> None:
    seeds = ["127.0.0.2:8001", "http://127.0.0.3:8001/", "http://127.0.0.2:8001", "127.0.0.1:8001"]
    assert seed_peers(seeds, "http://127.0.0.1:8001") == [
        "http://127.0.0.2:8001",
        "http://127.0.0.3:8001",
    ]


def test_heartbeat_becomes_an_announcement() -> None:
    body = {"node_id": "n3", "incarnation": 2, "heartbeat": 17}
    assert announcement_from_heartbeat("http://127.0.0.3:8001/", body) == Announcement(
        "n3", "http://127.0.0.3:8001", 2
    )


@pytest.mark.parametrize(
    "body",
    [[], {"node_id": "n3"}, {"node_id": 3, "incarnation": 1}, {"node_id": "a b", "incarnation": 1}],
)
def test_malformed_heartbeat_is_refused(body: Any) -> None:
    with pytest.raises(ValueError):
        announcement_from_heartbeat("http://127.0.0.3:8001", body)
