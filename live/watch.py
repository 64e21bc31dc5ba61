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

Applied instants. Every change carries ``applied_us``: the node's wall clock (the one its
HLCs come from), in Unix microseconds, when the runner applied the change to the node
(a client batch, a peer's post, a tick), before any watcher is woken. It is what a
reader of that node could see from then on, without the stream's own delivery; with the
HLC's ``hlc_ms`` of the write it gives the replication lag to this node (exact when both
nodes share a clock, as the nodes of ``rumor sim compare`` do).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from operator import attrgetter, itemgetter

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


class _Chunk:
    """The changes of one ``publish`` in the ring (one object per batch, not per key);
    each line is encoded at its first read, then shared by every watcher."""

    __slots__ = ("applied_us", "changes", "cost", "first", "lines", "replicated", "start")

    def __init__(
        self, first: int, changes: list[tuple[str, Record]], replicated: bool, applied_us: int
    ) -> None:
        self.first = first  # the sequence number of changes[0]
        self.start = 0  # changes before this index have left the ring
        self.changes, self.replicated = changes, replicated
        self.applied_us = applied_us  # the node's wall clock when they were applied
        self.cost = _cost(changes)  # of the changes from ``start`` on
        self.lines: list[bytes | None] | None = None

    def line(self, index: int, position: str) -> bytes:
        lines = self.lines
        if lines is None:
            lines = self.lines = [None] * len(self.changes)
        line = lines[index]
        if line is None:
            key, record = self.changes[index]
            line = lines[index] = (
                _encode(change_event(position, key, record, self.replicated, self.applied_us))
                + b"\n"
            )
        return line


def _cost(changes: list[tuple[str, Record]]) -> int:
    """What the ring holds for these changes, estimated (key, value, overhead)."""
    # C-level passes (no Python frame per change): every write's batch is published here.
    keys = sum(map(len, map(itemgetter(0), changes)))
    values = sum(map(len, map(_VALUE, map(itemgetter(1), changes))))
    return ENTRY_OVERHEAD_BYTES * len(changes) + keys + values


_VALUE = attrgetter("value")


def change_event(
    position: str, key: str, record: Record, replicated: bool, applied_us: int
) -> dict[str, object]:
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
        "applied_us": applied_us,
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stream = stream
        self._clock = clock  # the node's wall clock, seconds (``applied_us``)
        self.ring_events, self.ring_bytes = ring_events, ring_bytes
        self.max_lag_events = min(max_lag_events, ring_events)
        self.max_watchers = max_watchers
        self.seq = 0  # the newest change's number
        self.size_bytes = 0  # what the ring holds, estimated
        self.dropped = 0  # watchers disconnected for falling behind
        self.closing = False  # the node is stopping: every stream ends
        self._ring: deque[_Chunk] = deque()
        self.watchers: set[Watcher] = set()

    def position(self, seq: int) -> str:
        return f"{self.stream}:{seq}"

    @property
    def held(self) -> int:
        """Changes in the replay ring now."""
        return self.seq - self._first() + 1

    def _first(self) -> int:
        """The sequence number of the oldest change held (``seq + 1``: none)."""
        ring = self._ring
        return ring[0].first + ring[0].start if ring else self.seq + 1

    def publish(
        self,
        writes: Iterable[tuple[str, Record]],
        replicated: bool,
        applied_s: float | None = None,
    ) -> None:
        """Records the node applied, in order: append them to the ring, wake the watchers.
        ``applied_s``: the clock's reading when they were applied (None: now).

        One ring entry per call (a client batch or a peer's push: up to thousands of
        records), so what this costs per record is little more than its size."""
        changes = list(writes)
        if changes:
            at_s = self._clock() if applied_s is None else applied_s
            chunk = _Chunk(self.seq + 1, changes, replicated, round(at_s * 1e6))
            self._ring.append(chunk)
            self.seq += len(changes)
            self.size_bytes += chunk.cost
            self._trim()
        first = self._first()
        for watcher in self.watchers:
            if self.seq - watcher.cursor > self.max_lag_events or watcher.cursor < first - 1:
                watcher.overflowed = True
            watcher.wakeup.set()

    def _trim(self) -> None:
        """Drop the oldest changes beyond ``ring_events`` or ``ring_bytes``."""
        ring = self._ring
        while ring and (self.held > self.ring_events or self.size_bytes > self.ring_bytes):
            oldest = ring[0]
            left = len(oldest.changes) - oldest.start
            if self.size_bytes > self.ring_bytes:
                drop = 1  # by bytes: one at a time (rare: a ring of large values)
            else:
                drop = min(left, self.held - self.ring_events)
            if drop == left:
                ring.popleft()
                self.size_bytes -= oldest.cost
                continue
            gone = _cost(oldest.changes[oldest.start : oldest.start + drop])
            oldest.start += drop
            oldest.cost -= gone
            self.size_bytes -= gone

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
        if not self._ring or watcher.cursor >= self.seq:
            return []
        chunks: list[_Chunk] = []  # from the newest back to the one holding cursor + 1
        for chunk in reversed(self._ring):
            chunks.append(chunk)
            if chunk.first + chunk.start <= watcher.cursor + 1:
                break
        lines: list[bytes] = []
        prefix = watcher.prefix
        for chunk in reversed(chunks):
            start = max(chunk.start, watcher.cursor + 1 - chunk.first)
            for index in range(start, len(chunk.changes)):
                seq = watcher.cursor = chunk.first + index
                if chunk.changes[index][0].startswith(prefix):
                    lines.append(chunk.line(index, self.position(seq)))
                    if len(lines) >= TAKE_MAX:
                        return lines
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
        first = self._first()
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
