"""Sending core messages to peers: pooled HTTP, one bounded, coalescing queue per peer.

Why a queue per peer: the request path must never wait on the network, and a slow or
dead peer must not hold up the others. ``send`` appends to the peer's queue and returns;
one worker task per peer drains everything queued into a single ``POST /gossip`` (an
``Envelope`` of many messages, HMAC-sealed once), so a burst of messages to one peer costs
one request. When each post leaves (linger, coalescing, one in flight) is decided by
``core.send_policy``, the rule the simulator's network model follows too. A full queue drops its oldest message (counted): every message is either
resent by the next gossip round or repaired by anti-entropy, so loss costs latency, never
data. The peer answers with its own envelope of replies (anti-entropy steps, acks), which
go straight back into the node through ``on_reply``.

The httpx transport is injectable: tests pass ``httpx.MockTransport`` or an
``ASGITransport`` on a real app, so the whole path runs without sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable

import httpx
import msgspec
import structlog

from rumordb.core.send_policy import MAX_POST_BYTES, PeerSendPolicy, Phase, has_room
from rumordb.live.faults import Faults
from rumordb.live.http_transport import PooledTransport
from rumordb.live.metrics import Metrics
from rumordb.live.wire import AuthError, Signer, StaleFrame

log = structlog.get_logger("rumor.gossip")

GOSSIP_PATH = "/gossip"
SENDER_HEADER = "x-rumor-sender"
DEFAULT_QUEUE_MAX = 1024  # messages waiting per peer
DEFAULT_BATCH_BYTES = MAX_POST_BYTES  # payload bytes per POST


class Envelope(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What one ``POST /gossip`` carries (and its reply): encoded core messages."""

    sender: str
    messages: list[bytes]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)


class EnvelopeError(ValueError):
    """A sealed body that is authentic but does not decode as an envelope."""


def seal_envelope(signer: Signer, envelope: Envelope, now: float, recipient: str) -> bytes:
    """``envelope`` sealed for ``recipient`` only (the seal names sender and recipient)."""
    return signer.seal(_encoder.encode(envelope), now, envelope.sender, recipient)


def open_envelope(signer: Signer, frame: bytes, now: float, recipient: str) -> Envelope:
    """The envelope of a frame sealed for ``recipient``.

    Raises ``AuthError`` (not authentic, not for us; ``StaleFrame`` if authentic but
    outside the freshness window) or ``EnvelopeError`` (authentic but malformed, or
    claiming another sender than the seal names).
    """
    opened = signer.open(frame, now, recipient)
    try:
        envelope = _decoder.decode(opened.payload)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"malformed envelope: {exc}") from exc
    if envelope.sender != opened.sender:
        raise EnvelopeError("the envelope names another sender than its seal")
    return envelope


ReplyHandler = Callable[[str, list[bytes]], Awaitable[None]]


def post_head(url: httpx.URL, node_id: str) -> bytes:
    """The head of a ``POST /gossip`` to ``url`` up to the Content-Length value."""
    return (
        b"POST " + url.raw_path + b" HTTP/1.1\r\n"
        b"host: " + url.netloc + b"\r\n"
        b"content-type: application/octet-stream\r\n"
        + SENDER_HEADER.encode()
        + b": "
        + node_id.encode()
        + b"\r\n"
        b"content-length: "
    )


class GossipClient:
    """Delivers ``(peer, payload)`` pairs; never blocks the caller."""

    def __init__(
        self,
        node_id: str,
        signer: Signer,
        address_of: Callable[[str], str | None],
        on_reply: ReplyHandler,
        metrics: Metrics,
        faults: Faults,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        queue_max: int = DEFAULT_QUEUE_MAX,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.node_id = node_id
        self._signer = signer
        self._address_of = address_of
        self._on_reply = on_reply
        self._metrics = metrics
        self._faults = faults
        self._queue_max = queue_max
        self._batch_bytes = batch_bytes
        self._clock = clock
        self._mono = mono  # the send policy's clock (tests pass a fake one, with ``sleep``)
        self._sleep = sleep
        self._queues: dict[str, deque[bytes]] = {}
        self._policies: dict[str, PeerSendPolicy] = {}  # told of every message queued
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._closed = False
        self.dropped = 0
        self._transport = transport or PooledTransport()
        self._targets: dict[str, tuple[tuple[str, int], bytes]] = {}
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 1.0))
        self._timeout = timeout.as_dict()
        self._connect_s = min(timeout_s, 1.0)
        self._read_s = timeout_s
        self.client = httpx.AsyncClient(transport=self._transport, timeout=timeout)

    def send(self, peer: str, payload: bytes) -> None:
        if self._closed or peer == self.node_id:
            return
        queue = self._queues.get(peer)
        if queue is None:
            queue = self._queues[peer] = deque()
            self._policies[peer] = PeerSendPolicy()
        if len(queue) >= self._queue_max:
            queue.popleft()
            self._drop("overflow")
        queue.append(payload)
        due_ms = self._policies[peer].on_enqueue(self._mono() * 1000)
        if due_ms is not None:  # the peer was idle: a worker posts at ``due_ms``
            self._workers[peer] = asyncio.get_running_loop().create_task(self._drain(peer, due_ms))

    def queued(self, peer: str) -> int:
        queue = self._queues.get(peer)
        return len(queue) if queue else 0

    async def flush(self, timeout_s: float) -> None:
        """Wait, at most ``timeout_s``, until what is queued was posted (a leaving node)."""
        workers = list(self._workers.values())
        if workers:
            await asyncio.wait(workers, timeout=timeout_s)

    async def close(self) -> None:
        self._closed = True
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        await self.client.aclose()

    def _drop(self, reason: str, count: int = 1) -> None:
        self.dropped += count
        self._metrics.gossip_dropped.labels(reason).inc(count)

    async def _drain(self, peer: str, first_due_ms: float) -> None:
        policy = self._policies[peer]
        due_ms: float | None = first_due_ms
        try:
            queue = self._queues[peer]
            while due_ms is not None and not self._closed:
                await self._sleep(max(0.0, due_ms / 1000 - self._mono()))
                batch = self._take(peer, queue)
                policy.on_due(sum(map(len, batch)))
                if batch:
                    if self._faults.delay_ms:
                        await self._sleep(self._faults.delay_s())
                    await self._post(peer, batch)
                due_ms = policy.on_sent(self._mono() * 1000, len(queue))
        finally:
            self._workers.pop(peer, None)
            if policy.phase is not Phase.IDLE:  # cancelled, or a bug: the next send restarts
                self._policies[peer] = PeerSendPolicy(last_post_ms=policy.last_post_ms)

    def _take(self, peer: str, queue: deque[bytes]) -> list[bytes]:
        batch: list[bytes] = []
        size = 0
        faults = self._faults
        while queue and has_room(size, self._batch_bytes):
            payload = queue.popleft()
            if faults.active and not faults.allow_send(peer):
                self._drop("fault")
                continue
            batch.append(payload)
            size += len(payload)
        return batch

    async def _post(self, peer: str, batch: list[bytes]) -> None:
        url = self._address_of(peer)
        if not url:
            self._drop("no_address", len(batch))
            return
        body = seal_envelope(self._signer, Envelope(self.node_id, batch), time.time(), peer)
        try:
            status, content = await self._round_trip(url, body)
        except httpx.HTTPError as exc:
            self._drop("error", len(batch))
            log.debug("gossip_send_failed", peer=peer, error=type(exc).__name__)
            return
        self._metrics.posts_out.inc()
        self._metrics.messages_out.inc(len(batch))
        self._metrics.bytes_out.inc(len(body))
        if status == 200 and content:
            await self._deliver_reply(peer, content)
        elif status >= 300:
            self._drop(f"http_{status}", len(batch))

    async def _round_trip(self, url: str, body: bytes) -> tuple[int, bytes]:
        transport = self._transport
        if isinstance(transport, PooledTransport):
            # The lean path: the request head is encoded once per peer address, and no
            # httpx Request/Response objects are built (a tenth of a write's CPU here).
            target = self._targets.get(url)
            if target is None:
                target = self._targets[url] = self._target(url)
            host_key, head = target
            status, _, content = await transport.round_trip(
                host_key,
                head + str(len(body)).encode() + b"\r\n\r\n",
                body,
                connect_s=self._connect_s,
                read_s=self._read_s,
            )
            return status, content
        request = httpx.Request(
            "POST",
            url.rstrip("/") + GOSSIP_PATH,
            content=body,
            headers={SENDER_HEADER: self.node_id, "content-type": "application/octet-stream"},
            extensions={"timeout": self._timeout},
        )
        response = await transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response.status_code, response.content

    def _target(self, url: str) -> tuple[tuple[str, int], bytes]:
        """``(host, port)`` and the request head up to the Content-Length value."""
        parsed = httpx.URL(url.rstrip("/") + GOSSIP_PATH)
        assert isinstance(self._transport, PooledTransport)
        self._transport.check_scheme(parsed.scheme)  # https:// exactly when TLS is on
        port = parsed.port or self._transport.default_port
        head = post_head(parsed, self.node_id)
        return (parsed.host, port), head

    async def _deliver_reply(self, peer: str, frame: bytes) -> None:
        try:
            envelope = open_envelope(self._signer, frame, time.time(), self.node_id)
            if envelope.sender != peer:
                raise EnvelopeError(f"a reply from {peer} sealed by another node")
        except StaleFrame:  # authentic, but late: not a security event
            self._metrics.stale_frames.labels("gossip_reply").inc()
            log.debug("gossip_reply_stale", peer=peer)
            return
        except (AuthError, EnvelopeError):
            self._metrics.unauthenticated.labels("gossip_reply").inc()
            return
        self._metrics.messages_in.inc(len(envelope.messages))
        self._metrics.bytes_in.inc(len(frame))
        if envelope.messages:
            await self._on_reply(envelope.sender, envelope.messages)
