"""The node's HTTP/1.1 edge on a real ``rumor node`` process, over raw loopback sockets.

What only a real server shows: the head-size limit (431 without reading the rest), the
deadlines for a stalled head or body (slowloris, 408), the connection cap (503), a
malformed request line (400), all as JSON errors; and a node that answers normally after
every one of them. The deadline's timer rules (one timer per connection, never early,
never late, keep-alive kept) are checked at the end in process, on a manual clock.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.server import ServerState

from rumordb.live.http_protocol import BoundedHttpToolsProtocol, EdgeLimits
from tests.live.harness import ADMIN_KEY, Cluster, NodeProcess

HEAD_TIMEOUT_MS = 800
BODY_TIMEOUT_MS = 800
MAX_CONNECTIONS = 8
AUTH = f"Authorization: Bearer {ADMIN_KEY}\r\n".encode()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, NodeProcess]]:
    cluster = Cluster(tmp_path_factory.mktemp("edge"))
    try:
        one = cluster.add(
            "e1",
            "--broadcast", "off", "--durability", "memory",
            "--head-timeout-ms", str(HEAD_TIMEOUT_MS),
            "--body-timeout-ms", str(BODY_TIMEOUT_MS),
            "--max-connections", str(MAX_CONNECTIONS),
        )  # fmt: skip
        cluster.wait_ready(one)
        yield cluster, one
    finally:
        cluster.close()


def exchange(node: NodeProcess, data: bytes, wait_s: float = 5.0) -> tuple[bytes, float]:
    """Send ``data`` on a new connection; what comes back until the server closes, and when."""
    started = time.monotonic()
    with socket.create_connection((node.host, node.port), timeout=wait_s) as sock:
        with contextlib.suppress(OSError):  # the server closed while we were still sending
            sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks), time.monotonic() - started


def json_error(answer: bytes) -> tuple[int, dict[str, str]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert headers["content-type"] == "application/json", answer
    assert headers["connection"] == "close", answer
    return int(lines[0].split()[1]), json.loads(body)


def still_serves(cluster: Cluster, node: NodeProcess) -> None:
    assert cluster.client.get(node.url + "/health").json()["status"] == "ok"


@pytest.mark.live
@pytest.mark.parametrize(
    "head",
    [
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",  # one read
        b"GET /health?" + b"q" * 40_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 3_000 + b"\r\n",
    ],
    ids=["one-header", "request-line", "many-headers"],
)
def test_a_head_over_the_limit_is_431(node: tuple[Cluster, NodeProcess], head: bytes) -> None:
    cluster, one = node
    answer, _ = exchange(one, head)
    assert json_error(answer) == (431, {"error": "headers_too_large", "detail": _HEAD_DETAIL})
    still_serves(cluster, one)


_HEAD_DETAIL = "the request head is at most 16384 bytes"


@pytest.mark.live
def test_a_huge_head_is_cut_without_reading_it_all(node: tuple[Cluster, NodeProcess]) -> None:
    """16 MiB of one header value: the node answers 431 after the first reads and closes."""
    cluster, one = node
    sent = 0
    with socket.create_connection((one.host, one.port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * 65536
        with pytest.raises(OSError):  # reset or broken pipe: the server stopped reading
            for _ in range(256):
                sock.sendall(chunk)
                sent += len(chunk)
        assert sent < 8 * 1024 * 1024
    still_serves(cluster, one)


@pytest.mark.live
@pytest.mark.parametrize(
    ("data", "part"),
    [
        (b"", "head"),  # connects and says nothing
        (b"GET /health HTTP/1.1\r\nHost: x\r\n", "head"),  # half a head
        (b"PUT /kv/slow HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Length: 10\r\n\r\nabc", "body"),
    ],
    ids=["silent", "half-head", "half-body"],
)
def test_a_stalled_request_is_cut_with_408(
    node: tuple[Cluster, NodeProcess], data: bytes, part: str
) -> None:
    cluster, one = node
    answer, elapsed_s = exchange(one, data)
    status, body = json_error(answer)
    assert (status, body["error"]) == (408, "request_timeout")
    assert part in body["detail"]
    assert elapsed_s < 4.0  # the 0.8 s deadline, not the client's 5 s read timeout
    assert cluster.client.get(one.url + "/kv/slow", headers=_admin()).status_code == 404


@pytest.mark.live
def test_a_slow_trickle_is_cut_by_the_head_deadline(node: tuple[Cluster, NodeProcess]) -> None:
    """Slowloris proper: a byte every 0.1 s is never idle, yet the head deadline cuts it."""
    cluster, one = node
    answer = b""
    with socket.create_connection((one.host, one.port), timeout=5) as sock:
        started = time.monotonic()
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
            if select.select([sock], [], [], 0)[0]:
                answer = sock.recv(65536)
                break
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
        elapsed_s = time.monotonic() - started
    assert json_error(answer)[0] == 408
    assert elapsed_s < 4.0  # 24 s of trickle otherwise
    still_serves(cluster, one)


@pytest.mark.live
@pytest.mark.parametrize(
    "data",
    [b"GARBAGE\r\n\r\n", b"GET /kv/\xff HTTP/1.1\r\nHost: x\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n"],
    ids=["no-request-line", "non-ascii-path", "bad-version"],
)
def test_a_malformed_request_is_a_json_400(node: tuple[Cluster, NodeProcess], data: bytes) -> None:
    cluster, one = node
    answer, _ = exchange(one, data)
    assert json_error(answer) == (
        400,
        {"error": "invalid_http", "detail": "the request is not valid HTTP/1.1"},
    )
    still_serves(cluster, one)


@pytest.mark.live
def test_connections_beyond_the_cap_answer_503(node: tuple[Cluster, NodeProcess]) -> None:
    """Connections that had their answer idle in keep-alive (no deadline): once the cap
    is reached (the test's own HTTP client may hold one too), a new one answers 503."""
    cluster, one = node
    held: list[socket.socket] = []
    answer = b""
    try:
        for _ in range(MAX_CONNECTIONS + 2):
            sock = socket.create_connection((one.host, one.port), timeout=5)
            held.append(sock)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = sock.recv(65536)
            if not answer.startswith(b"HTTP/1.1 200"):
                break
        assert len(held) <= MAX_CONNECTIONS + 1
        status, body = json_error(answer + _rest(held[-1]))
        assert (status, body["error"]) == (503, "over_capacity")
        assert b"retry-after: 1" in answer
    finally:
        for sock in held:
            sock.close()
    _wait(lambda: _serves(one))
    still_serves(cluster, one)


def _rest(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.live
def test_a_gossip_body_over_the_cap_is_413_before_it_is_sent(
    node: tuple[Cluster, NodeProcess],
) -> None:
    """The 413 comes back with no body byte sent: Content-Length alone decided it."""
    _, one = node
    declared = b"POST /gossip HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n"
    with socket.create_connection((one.host, one.port), timeout=5) as sock:
        sock.sendall(declared)
        answer = b""
        while b'"}' not in answer:
            answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b'"error":"too_large"' in answer


@pytest.mark.live
def test_head_answers_like_get_without_a_body(node: tuple[Cluster, NodeProcess]) -> None:
    cluster, one = node
    assert cluster.client.put(one.url + "/kv/h", content=b"12345", headers=_admin()).is_success
    got = cluster.client.head(one.url + "/kv/h", headers=_admin())
    assert (got.status_code, got.content, got.headers["content-length"]) == (200, b"", "5")
    assert got.headers["etag"]
    missing = cluster.client.head(one.url + "/kv/absent", headers=_admin())
    assert (missing.status_code, missing.content) == (404, b"")


def _admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


def _serves(one: NodeProcess) -> bool:
    answer, _ = exchange(one, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    return answer.startswith(b"HTTP/1.1 200")


def _wait(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.live
def test_the_node_still_writes_after_all_of_it(node: tuple[Cluster, NodeProcess]) -> None:
    cluster, one = node
    put = cluster.client.put(one.url + "/kv/after", content=b"ok", headers=_admin())
    assert put.status_code == 201
    assert httpx.get(one.url + "/kv/after", headers=_admin(), trust_env=False).content == b"ok"


# --- the deadline, in process on a manual clock ------------------------------------------
class _Timer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class _ManualLoop:
    """What the protocol asks of its loop: the time, timers, and tasks (never run here)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[_Timer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., None], *args: object) -> _Timer:
        timer = _Timer(when, lambda: callback(*args))
        self.timers.append(timer)
        return timer

    def create_task(self, coro: Any) -> _Task:
        coro.close()  # the app's answer is played by the test (on_response_complete)
        return _Task()

    def advance_to(self, now: float) -> None:
        while due := sorted(
            (t for t in self.timers if not t.cancelled and t.when <= now), key=lambda t: t.when
        ):
            self.timers.remove(due[0])
            self.now = due[0].when
            due[0].callback()
        self.now = now


class _Task:
    def add_done_callback(self, callback: object) -> None:
        pass


class _Transport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope: object, receive: object, send: object) -> None:
    pass


class _Protocol(BoundedHttpToolsProtocol):
    limits = EdgeLimits(head_timeout_s=10.0, body_timeout_s=30.0)


def _connected() -> tuple[_Protocol, _ManualLoop, _Transport]:
    loop = _ManualLoop()
    config = uvicorn.Config(_app, lifespan="off", log_config=None, timeout_keep_alive=75)
    protocol = _Protocol(config, ServerState(), {}, _loop=loop)  # type: ignore[arg-type]
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, loop, transport


def _answered(protocol: _Protocol) -> None:
    """The app's answer completes (what uvicorn's cycle does after the body is sent)."""
    protocol.cycle.response_complete = True
    protocol.on_response_complete()


GET = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


def test_requests_share_the_connection_s_one_timer() -> None:
    """Arming a part writes a time; only the connection's first arm starts a timer."""
    protocol, loop, transport = _connected()
    for i in range(100):
        loop.now = i * 0.01
        protocol.data_received(GET)
        _answered(protocol)
    assert len(loop.timers) == 1 and not transport.closed
    protocol.connection_lost(None)
    assert loop.timers[0].cancelled


def test_an_idle_connection_closes_at_the_keep_alive_timeout_without_an_answer() -> None:
    protocol, loop, transport = _connected()
    loop.now = 5.0
    protocol.data_received(GET)
    _answered(protocol)  # idle from 5 s: closes at 80 s (uvicorn's keep-alive, kept)
    loop.advance_to(79.9)
    assert not transport.closed
    loop.advance_to(80.0)
    assert transport.closed and transport.written == b""


def test_a_head_deadline_moved_later_fires_at_its_own_time() -> None:
    """The timer armed at 0 for 10 s wakes at 10, finds the head begun at 5, sleeps to 15."""
    protocol, loop, transport = _connected()
    loop.now = 5.0
    protocol.data_received(b"GET /health HTTP/1.1\r\nHost")
    loop.advance_to(14.9)
    assert not transport.closed
    loop.advance_to(15.0)
    status, body = json_error(transport.written)
    assert (status, body["error"], transport.closed) == (408, "request_timeout", True)
    assert "head" in body["detail"]


def test_a_body_deadline_fires_after_the_body_timeout_not_the_head_timeout() -> None:
    protocol, loop, transport = _connected()
    loop.now = 1.0
    protocol.data_received(b"PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nabc")
    loop.advance_to(30.9)
    assert not transport.closed
    loop.advance_to(31.0)
    status, body = json_error(transport.written)
    assert (status, "body" in body["detail"]) == (408, True)


def test_no_deadline_runs_while_the_app_holds_the_request() -> None:
    """After the whole request arrived the app answers at its own pace: nothing expires."""
    protocol, loop, transport = _connected()
    protocol.data_received(GET)
    loop.advance_to(1000.0)
    assert not transport.closed
    _answered(protocol)
    loop.advance_to(1075.0)
    assert transport.closed and transport.written == b""
