"""The peer transport over TLS: pooled, host name checked, our CA only, scheme bound."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from rumordb.live import certs
from rumordb.live.http_transport import PooledTransport
from rumordb.live.tls import client_context, server_context
from tests.live.test_http_transport import ScriptedServer

pytestmark = pytest.mark.anyio
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[ScriptedServer, certs.NodeFiles]]:
    files = certs.ensure_node_files(tmp_path, "server", ("127.0.0.1",))
    context = server_context(files.cert, files.key, files.ca, client_auth=True)
    scripted = ScriptedServer([])
    scripted.server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0, ssl=context)
    try:
        yield scripted, files
    finally:
        scripted.server.close()
        await scripted.server.wait_closed()


def https(server: ScriptedServer, host: str = "127.0.0.1") -> str:
    return server.url.replace("http://127.0.0.1", f"https://{host}")


async def test_tls_keep_alive_pays_one_handshake_for_many_requests(
    tls_server: tuple[ScriptedServer, certs.NodeFiles],
) -> None:
    server, files = tls_server
    server.responses = [OK] * 5
    transport = PooledTransport(ssl_context=client_context(files.ca, files.cert, files.key))
    async with httpx.AsyncClient(transport=transport) as client:
        for i in range(5):
            response = await client.post(https(server) + "/gossip", content=f"body{i}".encode())
            assert response.content == b"ok"
    assert server.connections == 1
    assert server.requests[4].endswith(b"\r\n\r\nbody4")


async def test_a_certificate_for_another_host_or_from_another_ca_is_refused(
    tls_server: tuple[ScriptedServer, certs.NodeFiles], tmp_path: Path
) -> None:
    server, files = tls_server
    server.responses = [OK] * 2
    ours = PooledTransport(ssl_context=client_context(files.ca, files.cert, files.key))
    async with httpx.AsyncClient(transport=ours) as client:
        with pytest.raises(httpx.ConnectError, match="certificate"):
            await client.get(https(server, host="localhost") + "/")  # no SAN localhost
    stranger = certs.ensure_node_files(tmp_path / "other", "n1", ("127.0.0.1",))
    foreign = PooledTransport(ssl_context=client_context(stranger.ca, files.cert, files.key))
    async with httpx.AsyncClient(transport=foreign) as client:
        with pytest.raises(httpx.ConnectError, match="certificate"):
            await client.get(https(server) + "/")


async def test_a_server_requiring_client_certificates_refuses_a_bare_client(
    tls_server: tuple[ScriptedServer, certs.NodeFiles],
) -> None:
    server, files = tls_server
    server.responses = [OK]
    bare = PooledTransport(ssl_context=client_context(files.ca))
    async with httpx.AsyncClient(transport=bare, timeout=5.0) as client:
        with pytest.raises(httpx.TransportError):
            await client.get(https(server) + "/")
    assert server.requests == []


async def test_a_tls_transport_speaks_https_only(tmp_path: Path) -> None:
    files = certs.ensure_node_files(tmp_path, "n1")
    transport = PooledTransport(ssl_context=client_context(files.ca))
    async with httpx.AsyncClient(transport=transport, timeout=1.0) as client:
        with pytest.raises(httpx.UnsupportedProtocol):
            await client.get("http://127.0.0.1:9/")  # never in plaintext, whatever a peer says
