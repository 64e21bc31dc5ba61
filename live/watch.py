"""Watch: the changes a node applies, streamed to clients as newline-delimited JSON.

``GET /kv?watch=true&prefix=P[&from=POSITION]`` answers ``application/x-ndjson``: one
JSON object per line. The runner hands every record the core applied (``Output.writes``
of a client batch, a gossip or anti-entropy message, or a tick that expired a TTL) to
``WatchHub.publish``; nothing here polls the store.

Positions. Every applied change gets the next number of a per-node sequence; a position
is ``"<stream>:<seq>"``, where ``stream`` is the node's incarnation (it rises at every
start, so a position from before a restart is recognised). A stream begins with a
``start`` event that gives the position it starts after, and every ``change`` and
``heartbeat`` carries the position to resume from. ``from=POSITION`` resumes strictly
after it, if every change since is still in the replay ring; otherwise the request is
refused with 410 ``position_lost`` (list the keys again, then watch from the position a
new stream gives out).

Bounds. The replay ring keeps at most ``ring_events`` changes and ``ring_bytes`` of
them (each change is encoded once, and shared by every watcher), so a node's memory is
flat however many watchers there are and however slow they are. A watcher is a cursor in
that ring: when it falls more than ``max_lag_events`` behind the newest change (or a
change it has not read leaves the ring) it gets a final ``overflow`` event and is
disconnected; it may resume from the position in that event while the ring holds it.
At most ``max_watchers`` streams are open at once (503 ``too_many_watchers`` beyond).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections import deque
from collections.abc import Iterable
from itertools import islice

import msgspec

from rumordb.core import Record, encode_context
from rumordb.core.hlc import physical_ms
from rumordb.live.asgi import Receive, Send
from rumordb.live.errors import HttpError

HEARTBEAT_S = 15.0  # a quiet stream still says it is alive, and where it is
SEND_TIMEOUT_S = 30.0  # a client that reads nothing for this long is disconnected
TAKE_MAX = 256  # changes written per send: a large backlog goes out in chunks
ENTRY_OVERHEAD_BYTES = 256  # what one ring entry costs besides its key and value

_encode = msgspec.json.Encoder().encode


class _Change:
    """One applied change in the ring; its line is encoded at the first read, then shared."""

    __slots__ = ("_line", "cost", "key", "record", "replicated", "seq")

    def __init__(self, seq: int, key: str, record: Record, replicated: bool) -> None:
        self.seq, self.key, self.record, self.replicated = seq, key, record, replicated
        self.cost = len(key) + len(record.value) + ENTRY_OVERHEAD_BYTES  # held in the ring
        self._line: bytes | None = None

    def line(self, position: str) -> bytes:
        if self._line is None:
            self._line = _encode(change_event(position, self.key, self.record, self.replicated))
            self._line += b"\n"
        return self._line


def change_event(position: str, key: str, record: Record, replicated: bool) -> dict[str, object]:
    """The JSON object of one change (a tombstone has ``value`` and ``encoding`` null)."""
    value: str | None = None
    encoding: str | None = None
    if not record.tombstone:
        try:
            value, encoding = record.value.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            value, encoding = base64.b64encode(record.value).decode("ascii"), "base64"
    return {
        "type": "change",
        "position": position,
        "key": key,
        "value": value,
        "encoding": encoding,
        "tombstone": record.tombstone,
        "content_type": None if record.tombstone else record.content_type,
        "context": encode_context(record.clock, record.hlc),
        "hlc": record.hlc,
        "hlc_ms": physical_ms(record.hlc),
        "origin": record.origin,
        "expires_ms": physical_ms(record.expires) if record.expires else None,
        "replicated": replicated,
    }


class Watcher:
    """One open stream: a cursor in the hub's ring, and what wakes it."""

    __slots__ = ("cursor", "overflowed", "prefix", "wakeup")

    def __init__(self, prefix: str, cursor: int) -> None:
        self.prefix = prefix
        self.cursor = cursor  # the sequence number of the last change it has passed
        self.overflowed = False
        self.wakeup = asyncio.Event()


class WatchHub:
    def __init__(
        self,
        stream: int,
        *,
        ring_events: int = 4096,
        ring_bytes: int = 16 * 1024 * 1024,
        max_lag_events: int = 1024,
        max_watchers: int = 64,
    ) -> None:
        self.stream = stream
        self.ring_events, self.ring_bytes = ring_events, ring_bytes
        self.max_lag_events = min(max_lag_events, ring_events)
        self.max_watchers = max_watchers
        self.seq = 0  # the newest change's number
        self.size_bytes = 0  # what the ring holds, estimated
        self.dropped = 0  # watchers disconnected for falling behind
        self.closing = False  # the node is stopping: every stream ends
        self._ring: deque[_Change] = deque()
        self.watchers: set[Watcher] = set()

    def position(self, seq: int) -> str:
        return f"{self.stream}:{seq}"

    def publish(self, writes: Iterable[tuple[str, Record]], replicated: bool) -> None:
        """Records the node applied, in order: append them to the ring, wake the watchers."""
        ring, seq, size = self._ring, self.seq, self.size_bytes
        for key, record in writes:  # per applied version: keep this loop lean
            seq += 1
            change = _Change(seq, key, record, replicated)
            ring.append(change)
            size += change.cost
        while ring and (len(ring) > self.ring_events or size > self.ring_bytes):
            size -= ring.popleft().cost
        self.seq, self.size_bytes = seq, size
        first = ring[0].seq if ring else self.seq + 1
        for watcher in self.watchers:
            if self.seq - watcher.cursor > self.max_lag_events or watcher.cursor < first - 1:
                watcher.overflowed = True
            watcher.wakeup.set()

    def open(self, prefix: str, resume: str | None) -> Watcher:
        """A new watcher after ``resume`` (a position), else after the newest change."""
        if self.closing:
            raise HttpError(503, "unavailable", "the node is stopping")
        if len(self.watchers) >= self.max_watchers:
            detail = f"{self.max_watchers} watchers are already connected to this node"
            raise HttpError(503, "too_many_watchers", detail, ((b"retry-after", b"1"),))
        cursor = self.seq if resume is None else self._resume_cursor(resume)
        watcher = Watcher(prefix, cursor)
        self.watchers.add(watcher)
        return watcher

    def close(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)

    def close_all(self) -> None:
        """End every stream (the node is stopping: the server waits for open responses)."""
        self.closing = True
        for watcher in self.watchers:
            watcher.wakeup.set()

    def take(self, watcher: Watcher) -> list[bytes]:
        """The lines of the next matching changes after the watcher's cursor (moves it)."""
        ring = self._ring
        if not ring or watcher.cursor >= self.seq:
            return []
        start = watcher.cursor - ring[0].seq + 1
        lines: list[bytes] = []
        prefix = watcher.prefix
        for change in islice(ring, max(0, start), None):
            watcher.cursor = change.seq
            if change.key.startswith(prefix):
                lines.append(change.line(self.position(change.seq)))
                if len(lines) >= TAKE_MAX:
                    break
        return lines

    def _resume_cursor(self, resume: str) -> int:
        stream, _, seq_text = resume.partition(":")
        if not (resume.isascii() and stream.isdigit() and seq_text.isdigit()):
            raise HttpError(400, "bad_request", "from must be a position such as 3:1200")
        seq = int(seq_text)
        if int(stream) != self.stream:
            detail = "the node restarted since that position: list the keys, then watch again"
            raise HttpError(410, "position_lost", detail)
        if seq > self.seq:
            raise HttpError(400, "bad_request", f"position {resume} is ahead of this node")
        first = self._ring[0].seq if self._ring else self.seq + 1
        if seq < first - 1:
            detail = (
                f"changes after {resume} have left the replay ring (it starts after "
                f"{self.position(first - 1)}): list the keys, then watch again"
            )
            raise HttpError(410, "position_lost", detail)
        return seq


async def stream(
    hub: WatchHub, watcher: Watcher, node_id: str, send: Send, receive: Receive
) -> None:
    """Serve one watcher until it disconnects or falls behind (the hub already opened it)."""
    gone = asyncio.Event()
    listener = asyncio.get_running_loop().create_task(
        _until_disconnect(receive, gone, watcher.wakeup)
    )
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/x-ndjson"),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        start = {"type": "start", "position": hub.position(watcher.cursor), "node": node_id}
        await _send_chunk(send, _encode(start) + b"\n")
        await _serve(hub, watcher, send, gone)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(send({"type": "http.response.body", "body": b""}), 1.0)
    finally:
        hub.close(watcher)
        listener.cancel()


async def _serve(hub: WatchHub, watcher: Watcher, send: Send, gone: asyncio.Event) -> None:
    while not gone.is_set() and not hub.closing:
        if watcher.overflowed:
            hub.dropped += 1
            await _overflow(hub, watcher, send)
            return
        lines = hub.take(watcher)
        if lines:
            if not await _send_chunk(send, b"".join(lines)):
                return
            continue
        watcher.wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watcher.wakeup.wait(), HEARTBEAT_S)
        if not watcher.wakeup.is_set() and not gone.is_set():
            beat = {"type": "heartbeat", "position": hub.position(watcher.cursor)}
            if not await _send_chunk(send, _encode(beat) + b"\n"):
                return


async def _overflow(hub: WatchHub, watcher: Watcher, send: Send) -> None:
    event = {
        "type": "overflow",
        "position": hub.position(watcher.cursor),
        "detail": (
            f"this watcher fell more than {hub.max_lag_events} changes behind and is "
            "disconnected; resume from this position while the node still holds it"
        ),
    }
    await _send_chunk(send, _encode(event) + b"\n")


async def _send_chunk(send: Send, data: bytes) -> bool:
    """Send part of the body; False if the client read nothing for ``SEND_TIMEOUT_S``."""
    try:
        await asyncio.wait_for(
            send({"type": "http.response.body", "body": data, "more_body": True}),
            SEND_TIMEOUT_S,
        )
    except (TimeoutError, OSError):
        return False
    return True


async def _until_disconnect(receive: Receive, gone: asyncio.Event, wakeup: asyncio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            wakeup.set()  # a quiet stream notices at once, not at its next heartbeat
            return
