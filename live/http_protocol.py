"""The server's HTTP/1.1 protocol with the edge's bounds: head size, deadlines, connections.

uvicorn's httptools protocol parses whatever arrives: a request head has no size limit
(httptools keeps growing a header value until its line ends, so one 16 MiB header was
read whole), a client that sends half a head or half a body and stalls keeps its
connection forever (uvicorn times out only idle keep-alive connections, and only after a
first response), and uvicorn's own answers are text/plain. ``BoundedHttpToolsProtocol``
is that protocol with these rules (``EdgeLimits``, set from the node's settings):

* a request head (request line and headers) larger than ``max_head_bytes`` answers
  431 and the connection closes: a head still incomplete is measured after each read
  from the socket, so at most one read (uvloop reads up to 256 KiB) is buffered beyond
  the limit, and a head that ended within one read is measured when it ends;
* a head must arrive whole within ``head_timeout_s`` of its first byte (of the
  connection's opening, for its first request), and a body within ``body_timeout_s``
  of the end of its head; otherwise 408 and the connection closes (slowloris);
* beyond ``max_connections`` open connections, a new connection's request answers 503
  (with ``Retry-After``) and the connection closes;
* a request httptools cannot parse answers 400 (``invalid_http``).

Every one of these answers is the node's JSON error, ``{"error", "detail"}``, with
``Connection: close``. An answer is written only when no other response is under way on
the connection (a pipelined request's predecessor); otherwise the connection just closes.

uvicorn's keep-alive timeout (an idle connection closes silently after
``timeout_keep_alive``) is kept, as one more part of the same deadline.

Why one lazy deadline per connection (``_due_at``) instead of a timer per part: arming
and cancelling event-loop timers three times per request (head, body, keep-alive) cost
about a third of what the whole protocol costs a small GET. A request now only writes
the deadline's time; the connection's one timer, started when it opens and cancelled
when it closes, wakes at most every ``min(head, body, keep-alive)`` seconds, and then
either fires (the deadline has passed) or sleeps until the deadline (or that minimum,
when there is none). It never wakes late: a deadline armed later is at least that
minimum away, and the timer never sleeps longer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

import structlog
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from rumordb.live.errors import error_body
from rumordb.live.nodelay import set_nodelay

log = structlog.get_logger("rumor.http")

DEFAULT_MAX_HEAD_BYTES = 16 * 1024
DEFAULT_HEAD_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_MAX_CONNECTIONS = 1024


@dataclass(frozen=True)
class EdgeLimits:
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES
    head_timeout_s: float = DEFAULT_HEAD_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS


def error_response(status: int, error: str, detail: str, extra: bytes = b"") -> bytes:
    """A whole HTTP/1.1 error response (JSON body, ``Connection: close``) as bytes."""
    body = error_body(error, detail)
    return b"".join(
        (
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            extra,
            b"connection: close\r\n\r\n",
            body,
        )
    )


_OVER_CAPACITY = error_body("over_capacity", "too many connections to this node; retry later")


async def over_capacity(scope: Any, receive: Any, send: Any) -> None:
    """The ASGI app of a connection beyond the cap: 503, then the connection closes."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_OVER_CAPACITY)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": _OVER_CAPACITY})


class HeadRefused(Exception):
    """Raised from a parser callback to stop parsing a head that was just refused."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``limits`` (a subclass per node sets them)."""

    limits: ClassVar[EdgeLimits] = EdgeLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The deadline: when (loop time) and for which part ("head", "body", "idle"); None
        # when the app holds the request (it answers at its own pace).
        self._due_at: float | None = None
        self._part = "head"
        self._timer: asyncio.TimerHandle | None = None
        limits = self.limits
        self._delays_s = {
            "head": limits.head_timeout_s,
            "body": limits.body_timeout_s,
            "idle": float(self.timeout_keep_alive),
        }
        self._max_sleep_s = max(min(self._delays_s.values()), 0.001)  # the timer's longest
        self._in_head = False
        self._head_bytes = 0  # of the current head, in reads that were all head
        self._heads = 0
        self._received = 0  # bytes read on this connection
        self._read_size = 0  # bytes of the latest read
        self._head_began_at = 0  # _received before the read the current head began in

    # --- the connection ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)  # a response in two writes must not wait for an ACK
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.app = over_capacity
        # Until its first head is whole; uvicorn itself never times out a silent connection.
        self._arm(self.limits.head_timeout_s, "head")
        self._timer = self.loop.call_at(self.loop.time() + self._max_sleep_s, self._wake)

    def connection_lost(self, exc: Exception | None) -> None:
        self._due_at = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        heads = self._heads
        self._read_size = size = len(data)
        self._received += size
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        if self._heads == heads:  # this whole read was head: no head ended within it
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head_bytes:
                detail = f"the request head is at most {self.limits.max_head_bytes} bytes"
                self._refuse(431, "headers_too_large", detail, in_body=False)

    def send_400_response(self, msg: str) -> None:
        if self.transport.is_closing():  # the parser stopped because we refused the head
            return
        log.debug("invalid_http", client=self.client, reason=msg)
        self._refuse(400, "invalid_http", "the request is not valid HTTP/1.1", in_body=False)

    # --- parser callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0
        self._head_began_at = self._received - self._read_size
        # ``_arm``, inline here and below: three calls per request were ~15% of this class
        self._due_at, self._part = self.loop.time() + self.limits.head_timeout_s, "head"

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads += 1
        # The head is at most every byte read since the read it began in: count it exactly
        # only when that bound is over the limit (a small head costs one subtraction).
        if self._received - self._head_began_at > self.limits.max_head_bytes:
            self._check_head_size()
        super().on_headers_complete()
        # ``_arm``, inline; disarmed when the message ends
        self._due_at, self._part = self.loop.time() + self.limits.body_timeout_s, "body"

    def _check_head_size(self) -> None:
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_head_bytes:  # a head that arrived in one read
            detail = f"the request head is at most {self.limits.max_head_bytes} bytes"
            self._refuse(431, "headers_too_large", detail, in_body=False)
            raise HeadRefused(detail)  # stops the parser: no request reaches the app

    def on_message_complete(self) -> None:
        self._due_at = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        # uvicorn's, with its keep-alive timer replaced by the "idle" part of the deadline
        # (armed only between requests: a pipelined head keeps its own deadline).
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self._due_at is None:  # ``_arm``, inline
            self._due_at, self._part = self.loop.time() + self.timeout_keep_alive, "idle"

    # --- the deadline and refusals -------------------------------------------------------
    def _arm(self, delay_s: float, part: str) -> None:
        self._due_at = self.loop.time() + delay_s
        self._part = part

    def _wake(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        due_at, now = self._due_at, self.loop.time()
        if due_at is None or now < due_at:
            wake_at = now + self._max_sleep_s
            if due_at is not None and due_at < wake_at:
                wake_at = due_at
            self._timer = self.loop.call_at(wake_at, self._wake)
            return
        self._due_at = None
        self._expired(self._part, self._delays_s[self._part])

    def _expired(self, part: str, delay_s: float) -> None:
        if part == "idle":  # uvicorn's keep-alive timeout: close, no answer
            self.transport.close()
            return
        log.debug("request_timeout", client=self.client, part=part)
        detail = f"the request {part} did not arrive within {delay_s:g} s"
        self._refuse(408, "request_timeout", detail, in_body=part == "body")

    def _refuse(self, status: int, error: str, detail: str, *, in_body: bool) -> None:
        """Answer ``status`` if nothing else is being answered here, then close."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if in_body:  # the current request's own answer, if its app has not started one
            free = cycle is not None and not cycle.response_started
        else:  # a new head: the previous request's answer must be complete
            free = cycle is None or cycle.response_complete
        if free:
            self.transport.write(error_response(status, error, detail))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app reads a disconnect; its answer goes nowhere
            cycle.message_event.set()
        self._due_at = None
        self.transport.close()
