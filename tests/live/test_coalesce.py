"""The HTTPS server's coalescing transport: one write per loop turn, bounded, close flushes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from rumordb.live.coalesce import FLUSH_BYTES, CoalescingHttpToolsProtocol, CoalescingTransport

pytestmark = pytest.mark.anyio


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.writes))

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name == "peername" else default


async def test_head_and_body_of_one_turn_leave_as_one_write() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"ok")
    assert inner.writes == [] and transport.get_write_buffer_size() == 40
    await asyncio.sleep(0)
    assert inner.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest passes through


async def test_large_writes_go_out_at_once_and_close_sends_what_is_pending() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"x" * FLUSH_BYTES)  # a large body keeps the real flow control
    assert len(inner.writes) == 1
    transport.write(b"tail")
    transport.close()
    assert inner.writes[-1] == b"tail" and inner.closed
    transport.write(b"late")
    await asyncio.sleep(0)
    assert inner.writes[-1] == b"tail"  # nothing is written to a closed transport


async def answer(scope: dict[str, object], receive: object, send: Any) -> None:
    headers = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_uvicorn_sends_each_response_as_one_write() -> None:
    config = uvicorn.Config(answer, lifespan="off", log_config=None, access_log=False)
    protocol = CoalescingHttpToolsProtocol(config, ServerState(), {})
    inner = RecordingTransport()
    protocol.connection_made(inner)
    for count, path in enumerate((b"/a", b"/b"), start=1):  # one keep-alive connection
        protocol.data_received(b"GET " + path + b" HTTP/1.1\r\nhost: x\r\n\r\n")
        for _ in range(20):
            if len(inner.writes) >= count:
                break
            await asyncio.sleep(0)
    assert len(inner.writes) == 2  # each response: head and body in one write
    assert all(
        w.startswith(b"HTTP/1.1 200 OK\r\n") and w.endswith(b"\r\n\r\nok") for w in inner.writes
    )
    protocol.connection_lost(None)
