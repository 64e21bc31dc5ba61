"""TCP_NODELAY on every connection the node serves or opens.

Why: with Nagle's algorithm on, a response written in two pieces (uvicorn writes the head,
then the body) holds the second piece back until the first is acknowledged, and the
client delays that ACK: on a link with one-way delay d a response then costs two delays
instead of one. asyncio and uvloop set the option on their TCP transports today; setting
it here (the server protocol ``live.http_protocol``, the peer transport
``live.http_transport``) makes it a property of RumorDB rather than of the loop in use.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any


def set_nodelay(transport: asyncio.BaseTransport | Any) -> None:
    """Turn Nagle off on ``transport``'s socket, if it is a TCP one (not a Unix socket)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
