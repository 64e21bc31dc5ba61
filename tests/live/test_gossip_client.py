"""The gossip client over ``httpx.MockTransport``: coalescing, bounds, faults, replies."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest

from rumordb.live.faults import FaultRequest, Faults
from rumordb.live.gossip_client import Envelope, GossipClient, open_envelope, seal_envelope
from rumordb.live.metrics import Metrics
from rumordb.live.wire import Signer
from tests.live.harness import eventually

pytestmark = pytest.mark.anyio
SECRET = "gossip-test-secret"


class Peer:
    """A fake peer: opens what it receives, answers with scripted replies."""

    def __init__(self, reply: list[bytes] | None = None, status: int = 200) -> None:
        self.signer = Signer(SECRET)
        self.envelopes: list[Envelope] = []
        self.reply = reply
        self.status = status
        self.gate: anyio.Event | None = None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/gossip"
        envelope = open_envelope(self.signer, await request.aread(), time.time(), "peer")
        self.envelopes.append(envelope)
        if self.gate is not None:
            await self.gate.wait()
        if self.reply is None or self.status != 200:
            return httpx.Response(self.status if self.status != 200 else 204)
        body = seal_envelope(self.signer, Envelope("peer", self.reply), time.time(), "me")
        return httpx.Response(200, content=body)


def make_client(
    peer: Peer | None,
    faults: Faults | None = None,
    queue_max: int = 1024,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    url: str = "http://peer:1",
) -> tuple[GossipClient, list[tuple[str, list[bytes]]], Metrics]:
    """A client whose only peer is ``peer`` at ``url``: a fake one, or a real transport."""
    replies: list[tuple[str, list[bytes]]] = []

    async def on_reply(sender: str, payloads: list[bytes]) -> None:
        replies.append((sender, payloads))

    metrics = Metrics()
    client = GossipClient(
        "me",
        Signer(SECRET),
        lambda member: url if member == "peer" else None,
        on_reply,
        metrics,
        faults or Faults(),
        transport=transport or httpx.MockTransport(peer.handle),  # type: ignore[union-attr]
        queue_max=queue_max,
    )
    return client, replies, metrics


async def test_messages_queued_while_a_post_is_in_flight_share_the_next_post() -> None:
    peer = Peer()
    peer.gate = anyio.Event()
    client, _, _ = make_client(peer)
    try:
        client.send("peer", b"first")

        async def first_arrived() -> bool:
            return len(peer.envelopes) == 1

        await eventually(first_arrived, 2.0, 0.001)
        for i in range(10):
            client.send("peer", f"m{i}".encode())
        peer.gate.set()

        async def all_arrived() -> bool:
            return sum(len(e.messages) for e in peer.envelopes) == 11

        await eventually(all_arrived, 2.0, 0.001)
        assert len(peer.envelopes) == 2  # ten sends, one POST
        assert peer.envelopes[1].sender == "me"
    finally:
        await client.close()


async def test_a_peer_whose_worker_was_cancelled_mid_post_is_posted_to_again() -> None:
    peer = Peer()
    peer.gate = anyio.Event()
    client, _, _ = make_client(peer)
    try:
        client.send("peer", b"first")

        async def first_arrived() -> bool:
            return len(peer.envelopes) == 1

        await eventually(first_arrived, 2.0, 0.001)
        client._workers["peer"].cancel()  # what a stop (or a bug) does to a post under way

        async def worker_gone() -> bool:
            return "peer" not in client._workers

        await eventually(worker_gone, 2.0, 0.001)
        peer.gate.set()
        client.send("peer", b"second")  # the send policy starts afresh, not stuck posting

        async def second_arrived() -> bool:
            return len(peer.envelopes) == 2

        await eventually(second_arrived, 2.0, 0.001)
        assert peer.envelopes[1].messages == [b"second"]
    finally:
        await client.close()


async def test_a_full_queue_drops_its_oldest_and_counts() -> None:
    peer = Peer()
    peer.gate = anyio.Event()
    client, _, _ = make_client(peer, queue_max=3)
    try:
        client.send("peer", b"in-flight")

        async def first_arrived() -> bool:
            return len(peer.envelopes) == 1

        await eventually(first_arrived, 2.0, 0.001)
        for i in range(5):
            client.send("peer", f"m{i}".encode())
        assert client.queued("peer") == 3 and client.dropped == 2
        peer.gate.set()

        async def rest_arrived() -> bool:
            return len(peer.envelopes) == 2

        await eventually(rest_arrived, 2.0, 0.001)
        assert peer.envelopes[1].messages == [b"m2", b"m3", b"m4"]
    finally:
        await client.close()


async def test_replies_go_back_to_the_node() -> None:
    peer = Peer(reply=[b"r1", b"r2"])
    client, replies, metrics = make_client(peer)
    try:
        client.send("peer", b"hello")

        async def replied() -> bool:
            return bool(replies)

        await eventually(replied, 2.0, 0.001)
        assert replies == [("peer", [b"r1", b"r2"])]
        assert metrics.messages_out.value == 1 and metrics.posts_out.value == 1
        assert metrics.messages_in.value == 2
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("sealer", "recipient", "age_s", "counter"),
    [
        ("other", "me", 0.0, "rumor_unauthenticated_dropped_total"),  # not the peer we asked
        ("peer", "someone-else", 0.0, "rumor_unauthenticated_dropped_total"),  # not for us
        ("peer", "me", 120.0, "rumor_stale_frames_dropped_total"),  # authentic but late
    ],
)
async def test_replies_not_from_the_peer_for_us_and_fresh_are_dropped(
    sealer: str, recipient: str, age_s: float, counter: str
) -> None:
    async def handle(request: httpx.Request) -> httpx.Response:
        envelope = Envelope(sealer, [b"r"])
        body = seal_envelope(Signer(SECRET), envelope, time.time() - age_s, recipient)
        return httpx.Response(200, content=body)

    client, replies, metrics = make_client(None, transport=httpx.MockTransport(handle))
    try:
        client.send("peer", b"hello")

        async def dropped() -> bool:
            text = metrics.render().decode()
            return f'{counter}{{channel="gossip_reply"}} 1.0' in text

        await eventually(dropped, 2.0, 0.001)
        assert replies == []
    finally:
        await client.close()


async def test_blocked_or_paused_peers_get_nothing() -> None:
    peer = Peer()
    faults = Faults()
    client, _, _ = make_client(peer, faults)
    try:
        faults.apply(FaultRequest(block_to=["peer"]))
        client.send("peer", b"x")
        await anyio.sleep(0.05)
        faults.heal()
        faults.apply(FaultRequest(pause_gossip=True))
        client.send("peer", b"y")
        await anyio.sleep(0.05)
        assert peer.envelopes == [] and client.dropped == 2
        faults.heal()
        client.send("peer", b"z")

        async def arrived() -> bool:
            return len(peer.envelopes) == 1

        await eventually(arrived, 2.0, 0.001)
    finally:
        await client.close()


async def test_unreachable_or_refusing_peers_are_counted_not_raised() -> None:
    peer = Peer(status=503)
    client, _, _ = make_client(peer)
    try:
        client.send("peer", b"x")
        client.send("nobody", b"y")  # no address known

        async def counted() -> bool:
            return client.dropped == 2

        await eventually(counted, 2.0, 0.001)
    finally:
        await client.close()


def test_fault_loss_is_probabilistic_and_bounded() -> None:
    import random

    faults = Faults(random.Random(7))
    faults.apply(FaultRequest(loss=0.5))
    allowed = sum(faults.allow_send("p") for _ in range(1000))
    assert 400 < allowed < 600
    faults.apply(FaultRequest(loss=1.0))
    assert not any(faults.allow_send("p") for _ in range(100))
    faults.heal()
    assert all(faults.allow_send("p") for _ in range(100)) and not faults.active


async def test_posts_over_the_pooled_transport_are_well_formed_http() -> None:
    """The lean path (pre-encoded head, no httpx objects) against a real socket."""
    import asyncio

    from rumordb.live.http_transport import PooledTransport
    from tests.live.test_http_transport import ScriptedServer

    signer = Signer(SECRET)
    reply = seal_envelope(signer, Envelope("peer", [b"pong"]), time.time(), "me")
    ok = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(reply) + reply
    scripted = ScriptedServer([ok, b"HTTP/1.1 204 No Content\r\n\r\n"])
    scripted.server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    url = scripted.url
    client, replies, metrics = make_client(None, transport=PooledTransport(), url=url)
    try:
        client.send("peer", b"ping")

        async def answered() -> bool:
            return bool(replies)

        await eventually(answered, 2.0, 0.001)
        client.send("peer", b"again")

        async def both_sent() -> bool:
            return len(scripted.requests) == 2 and metrics.posts_out.value == 2

        await eventually(both_sent, 2.0, 0.001)
    finally:
        await client.close()
        scripted.server.close()
        await scripted.server.wait_closed()
    assert replies == [("peer", [b"pong"])]
    assert client.dropped == 0
    for raw, sent in zip(scripted.requests, (b"ping", b"again"), strict=True):
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /gossip HTTP/1.1"
        fields = dict(line.split(b": ", 1) for line in lines[1:])
        assert fields[b"x-rumor-sender"] == b"me"
        assert fields[b"host"] == url.removeprefix("http://").encode()
        assert int(fields[b"content-length"]) == len(body)
        assert open_envelope(signer, body, time.time(), "peer") == Envelope("me", [sent])
    assert scripted.connections == 1  # keep-alive: both posts on one connection


async def test_a_refused_connection_on_the_pooled_transport_is_a_counted_drop() -> None:
    from rumordb.live.http_transport import PooledTransport
    from tests.live.harness import free_tcp_port

    url = f"http://127.0.0.1:{free_tcp_port('127.0.0.1')}"  # nobody listens there
    client, replies, _ = make_client(None, transport=PooledTransport(), url=url)
    try:
        client.send("peer", b"x")

        async def dropped() -> bool:
            return client.dropped == 1

        await eventually(dropped, 2.0, 0.001)
    finally:
        await client.close()
    assert replies == []
