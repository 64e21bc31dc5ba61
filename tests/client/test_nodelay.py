"""The client library's transports send with Nagle off.

Both set it themselves (http.client on Python 3.11, httpcore for httpx): this test keeps
it so if a pinned dependency changes, and checks that no wrapper of ours undoes it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rumordb.api import Request
from rumordb.transport import HttpxTransport, StdlibTransport


class Health(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def node() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[socket.socket]:
    """Every client socket, opened with Nagle on: only the transport can turn it off."""
    sockets: list[socket.socket] = []
    real = socket.create_connection

    def nagled(*args: Any, **kwargs: Any) -> socket.socket:
        sock = real(*args, **kwargs)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        sockets.append(sock)
        return sock

    monkeypatch.setattr(socket, "create_connection", nagled)
    return sockets


@pytest.mark.parametrize("transport", [HttpxTransport, StdlibTransport])
def test_the_client_transports_turn_nagle_off(
    node: str, opened: list[socket.socket], transport: Any
) -> None:
    pool = transport({}, 5.0)
    try:
        answer = pool.send(node, Request("GET", "/health"))
        assert answer.status == 200, answer
        assert opened and all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in opened)
    finally:
        pool.close()
