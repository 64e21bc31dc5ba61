"""TCP_NODELAY: the node's server protocols and its peer transport turn Nagle off.

asyncio and uvloop set the option on their own transports, so each test first turns it
off on a real loopback TCP socket and checks that our code turns it back on.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from rumordb.cli.node_cmd import http_protocol
from rumordb.live.http_transport import PooledTransport
from rumordb.live.nodelay import set_nodelay

pytestmark = pytest.mark.anyio


def nodelay(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


@pytest.fixture
def nagled() -> Iterator[socket.socket]:
    """The server end of a loopback TCP connection, with Nagle on."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    assert not nodelay(server)
    yield server
    server.close()
    client.close()


class SocketTransport:
    """Just enough of an ``asyncio.Transport`` over a real socket for ``connection_made``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        info = {"socket": self.sock, "sockname": self.sock.getsockname(),
                "peername": self.sock.getpeername()}  # fmt: skip
        return info.get(name, default)

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        return None

    def close(self) -> None:
        return None


async def app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("no request is sent")


@pytest.mark.parametrize("tls", [False, True])
async def test_the_server_protocols_turn_nagle_off(nagled: socket.socket, tls: bool) -> None:
    settings = SimpleNamespace(
        max_head_bytes=8192, head_timeout_ms=5000, body_timeout_ms=5000, max_connections=10
    )
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH) if tls else None
    protocol = http_protocol(settings, server_ssl)  # what ``rumor node`` serves with
    config = uvicorn.Config(app, log_config=None)
    config.load()
    served = protocol(config, ServerState(), {})
    served.connection_made(SocketTransport(nagled))
    try:
        assert nodelay(nagled)
    finally:
        served.connection_lost(None)


async def test_set_nodelay_leaves_a_unix_socket_alone() -> None:
    left, right = socket.socketpair()
    with left, right:
        set_nodelay(SocketTransport(left))  # would raise on AF_UNIX


async def test_the_peer_transport_turns_nagle_off_on_its_connections() -> None:
    connected: list[socket.socket] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()  # until the client closes the connection
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    real_open = asyncio.open_connection

    async def open_nagled(*args: Any, **kwargs: Any) -> Any:
        reader, writer = await real_open(*args, **kwargs)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        connected.append(sock)
        return reader, writer

    transport = PooledTransport()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(asyncio, "open_connection", open_nagled)
            import httpx

            async with httpx.AsyncClient(transport=transport) as client:
                answer = await client.get(f"http://127.0.0.1:{port}/health")
                assert answer.status_code == 200 and connected and nodelay(connected[0])
    finally:
        server.close()
        await server.wait_closed()
