"""Sending core messages to peers: pooled HTTP, one bounded, coalescing queue per peer.

Why a queue per peer: the request path must never wait on the network, and a slow or
dead peer must not hold up the others. ``send`` appends to the peer's queue and returns;
one worker task per peer drains everything queued into a single ``POST /gossip`` (an
``Envelope`` of many messages, HMAC-sealed once), so a burst of messages to one peer costs
one request. A full queue drops its oldest message (counted): every message is either
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

from live.faults import Faults
from live.http_transport import PooledTransport
from live.metrics import Metrics
from live.wire import AuthError, Signer

log = structlog.get_logger("rumor.gossip")

GOSSIP_PATH = "/gossip"
SENDER_HEADER = "x-rumor-sender"
DEFAULT_QUEUE_MAX = 1024  # messages waiting per peer
DEFAULT_BATCH_BYTES = 8 * 1024 * 1024  # payload bytes per POST


class Envelope(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What one ``POST /gossip`` carries (and its reply): encoded core messages."""

    sender: str
    messages: list[bytes]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)


class EnvelopeError(ValueError):
    """A sealed body that is authentic but does not decode as an envelope."""


def seal_envelope(signer: Signer, envelope: Envelope, now: float) -> bytes:
    return signer.seal(_encoder.encode(envelope), now)


def open_envelope(signer: Signer, frame: bytes, now: float) -> Envelope:
    """Raises ``AuthError`` (not authentic) or ``EnvelopeError`` (authentic but malformed)."""
    payload = signer.open(frame, now)
    try:
        return _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EnvelopeError(f"malformed envelope: {exc}") from exc


ReplyHandler = Callable[[str, list[bytes]], Awaitable[None]]


LINGER_S = 0.005


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
        self._queues: dict[str, deque[bytes]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._closed = False
        self.dropped = 0
        self._transport = transport or PooledTransport()
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 1.0))
        self._timeout = timeout.as_dict()
        self.client = httpx.AsyncClient(transport=self._transport, timeout=timeout)

    def send(self, peer: str, payload: bytes) -> None:
        if self._closed or peer == self.node_id:
            return
        queue = self._queues.get(peer)
        if queue is None:
            queue = self._queues[peer] = deque()
        if len(queue) >= self._queue_max:
            queue.popleft()
            self._drop("overflow")
        queue.append(payload)
        if peer not in self._workers:
            self._workers[peer] = asyncio.get_running_loop().create_task(self._drain(peer))

    def queued(self, peer: str) -> int:
        queue = self._queues.get(peer)
        return len(queue) if queue else 0

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

    async def _drain(self, peer: str) -> None:
        try:
            queue = self._queues[peer]
            while queue and not self._closed:
                # Linger a moment so that pushes of a few write batches share one request
                # (Kafka's linger.ms): fewer requests per write, at a millisecond of lag.
                await asyncio.sleep(LINGER_S)
                batch = self._take(peer, queue)
                if not batch:
                    continue
                if self._faults.delay_ms:
                    await asyncio.sleep(self._faults.delay_s())
                await self._post(peer, batch)
        finally:
            self._workers.pop(peer, None)

    def _take(self, peer: str, queue: deque[bytes]) -> list[bytes]:
        batch: list[bytes] = []
        size = 0
        faults = self._faults
        while queue and size < self._batch_bytes:
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
        body = seal_envelope(self._signer, Envelope(self.node_id, batch), time.time())
        # Straight to the transport: the client's auth, redirect and cookie layers cost
        # a tenth of a write's CPU on this path and do nothing for node-to-node posts.
        request = httpx.Request(
            "POST",
            url.rstrip("/") + GOSSIP_PATH,
            content=body,
            headers={SENDER_HEADER: self.node_id, "content-type": "application/octet-stream"},
            extensions={"timeout": self._timeout},
        )
        try:
            response = await self._transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            self._drop("error", len(batch))
            log.debug("gossip_send_failed", peer=peer, error=type(exc).__name__)
            return
        self._metrics.messages_out.inc(len(batch))
        self._metrics.bytes_out.inc(len(body))
        if response.status_code == 200 and response.content:
            await self._deliver_reply(peer, response.content)
        elif response.status_code >= 300:
            self._drop(f"http_{response.status_code}", len(batch))

    async def _deliver_reply(self, peer: str, frame: bytes) -> None:
        try:
            envelope = open_envelope(self._signer, frame, time.time())
        except (AuthError, EnvelopeError):
            self._metrics.unauthenticated.labels("gossip_reply").inc()
            return
        self._metrics.messages_in.inc(len(envelope.messages))
        self._metrics.bytes_in.inc(len(frame))
        if envelope.messages:
            await self._on_reply(envelope.sender, envelope.messages)
