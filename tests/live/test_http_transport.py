"""The lean node-to-node transport against a scripted HTTP server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from rumordb.live.http_transport import PooledTransport

pytestmark = pytest.mark.anyio
DROP = b"<drop>"


class ScriptedServer:
    """Answers each request with the next scripted raw response; counts connections."""

    def __init__(self, responses: list[bytes]) -> None:
        self.responses = responses
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.responses:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                response = self.responses.pop(0)
                drop = response.endswith(DROP)  # close silently, as a keep-alive timeout does
                writer.write(response.removesuffix(DROP))
                await writer.drain()
                if drop or b"connection: close" in response.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer([])
    scripted.server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    try:
        yield scripted
    finally:
        scripted.server.close()
        await scripted.server.wait_closed()


async def test_keep_alive_reuses_one_connection_for_many_requests(server: ScriptedServer) -> None:
    server.responses = [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"] * 5
    async with httpx.AsyncClient(transport=PooledTransport()) as client:
        for i in range(5):
            response = await client.post(server.url + "/gossip", content=f"body{i}".encode())
            assert response.status_code == 200 and response.content == b"ok"
    assert server.connections == 1
    assert server.requests[3].startswith(b"POST /gossip HTTP/1.1\r\n")
    assert server.requests[3].endswith(b"\r\n\r\nbody3")


async def test_chunked_no_content_and_close_delimited_bodies(server: ScriptedServer) -> None:
    server.responses = [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil-eof",
    ]
    async with httpx.AsyncClient(transport=PooledTransport()) as client:
        first = await client.get(server.url + "/a")
        assert first.content == b"abcde"
        assert (await client.get(server.url + "/b")).status_code == 204
        assert (await client.get(server.url + "/c")).content == b"until-eof"


async def test_a_stale_keep_alive_connection_is_retried_once(server: ScriptedServer) -> None:
    server.responses = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n1" + DROP,
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n2",
    ]
    transport = PooledTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get(server.url + "/")).content == b"1"
        await asyncio.sleep(0.05)  # the server has closed it; the pool does not know yet
        assert (await client.get(server.url + "/")).content == b"2"
    assert server.connections == 2


async def test_errors_are_httpx_errors() -> None:
    async with httpx.AsyncClient(transport=PooledTransport(), timeout=1.0) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("http://127.0.0.1:9/")  # discard port: nothing listens
        with pytest.raises(httpx.UnsupportedProtocol):
            await client.get("https://127.0.0.1:9/")


async def test_oversized_and_malformed_responses_are_refused(server: ScriptedServer) -> None:
    server.responses = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 100,
        b"garbage\r\n\r\n",
    ]
    async with httpx.AsyncClient(transport=PooledTransport(max_body_bytes=10)) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url + "/big")
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url + "/bad")
