"""The node's HTTP/1.1 edge on a real ``rumor node`` process, over raw loopback sockets.

What only a real server shows: the head-size limit (431 without reading the rest), the
deadlines for a stalled head or body (slowloris, 408), the connection cap (503), a
malformed request line (400), all as JSON errors; and a node that answers normally after
every one of them.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.live.harness import ADMIN_KEY, Cluster, NodeProcess

pytestmark = pytest.mark.live

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


def test_the_node_still_writes_after_all_of_it(node: tuple[Cluster, NodeProcess]) -> None:
    cluster, one = node
    put = cluster.client.put(one.url + "/kv/after", content=b"ok", headers=_admin())
    assert put.status_code == 201
    assert httpx.get(one.url + "/kv/after", headers=_admin(), trust_env=False).content == b"ok"
