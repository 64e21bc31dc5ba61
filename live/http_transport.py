"""A lean httpx transport for node-to-node HTTP: keep-alive HTTP/1.1 on asyncio streams.

Why: httpx's default transport (httpcore + h11, pure Python) costs about 1.3 ms of CPU per
request here, ten times what serving the request costs. Gossip and forwarding send one
request per batch per peer, so that cost lands straight on replication latency. This
transport speaks just what a node needs from its peers (HTTP/1.1, ``Content-Length`` or
chunked responses, keep-alive) in a few system calls, and plugs into the same
``httpx.AsyncClient``: callers keep httpx's API and errors, tests keep ``MockTransport``.

Bounded: at most ``max_connections_per_host`` requests in flight per host (callers wait),
``max_idle_per_host`` idle connections kept, responses larger than ``max_body_bytes``
refused. A request on a reused connection that finds it closed by the server (keep-alive
race) is retried once on a fresh connection; nothing else is retried.

TLS: given an ``ssl_context`` the transport speaks ``https://`` only (and without one,
``http://`` only), so a TLS node never sends a peer anything in plaintext, whatever URL a
peer announced. Connections are TLS from the first byte and pooled like plain ones, so a
handshake is paid once per connection, not per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time

import httpx

from rumordb.live.nodelay import set_nodelay

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
_HOP_HEADERS = frozenset({b"transfer-encoding", b"connection", b"keep-alive"})


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic()

    def close(self) -> None:
        self.writer.close()


class _StaleConnection(Exception):
    """A reused connection was closed by the server before it answered."""


class PooledTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        *,
        max_connections_per_host: int = 64,
        max_idle_per_host: int = 16,
        idle_expiry_s: float = 30.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._ssl = ssl_context
        self.scheme = "https" if ssl_context is not None else "http"
        self.default_port = 443 if ssl_context is not None else 80
        self._max_connections = max_connections_per_host
        self._max_idle = max_idle_per_host
        self._idle_expiry_s = idle_expiry_s
        self._max_body = max_body_bytes
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._slots: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._busy: set[_Connection] = set()
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        self.check_scheme(url.scheme, request)
        timeouts = request.extensions.get("timeout", {})
        body = await request.aread()
        status, headers, content = await self.round_trip(
            (url.host, url.port or self.default_port),
            _request_head(request),
            body,
            connect_s=timeouts.get("connect") or 5.0,
            read_s=timeouts.get("read") or 30.0,
            request=request,
        )
        return httpx.Response(status, headers=headers, content=content)

    def check_scheme(self, scheme: str, request: httpx.Request | None = None) -> None:
        if scheme != self.scheme:
            raise httpx.UnsupportedProtocol(
                f"this transport speaks {self.scheme}:// only, not {scheme}://", request=request
            )

    async def round_trip(
        self,
        host_key: tuple[str, int],
        head: bytes,
        body: bytes,
        *,
        connect_s: float,
        read_s: float,
        request: httpx.Request | None = None,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """One request whose head is already encoded: the path the gossip client takes.

        Raises httpx's errors (``ConnectError``, ``ReadTimeout``, ...), as a request
        through ``httpx.AsyncClient`` would. ``request`` only names the request in them.
        """
        slots = self._slots.get(host_key)
        if slots is None:
            slots = self._slots[host_key] = asyncio.Semaphore(self._max_connections)
        head_only = request is not None and request.method == "HEAD"
        async with slots:
            for _ in range(2):
                connection, reused = self._checkout(host_key), True
                if connection is None:
                    connection, reused = await self._connect(host_key, connect_s, request), False
                self._busy.add(connection)
                try:
                    status, headers, content, keep = await self._exchange(
                        connection, head, body, read_s, request, reused, head_only
                    )
                except _StaleConnection:
                    connection.close()
                    continue
                except BaseException:
                    connection.close()
                    raise
                finally:
                    self._busy.discard(connection)
                self._checkin(host_key, connection, keep)
                return status, headers, content
        raise httpx.RemoteProtocolError("the server closed the connection", request=request)

    async def aclose(self) -> None:
        self._closed = True
        connections = [c for idle in self._idle.values() for c in idle] + list(self._busy)
        self._idle.clear()
        for connection in connections:
            connection.close()
        for connection in connections:
            with contextlib.suppress(OSError, RuntimeError):
                await connection.writer.wait_closed()

    # --- the pool ----------------------------------------------------------------------
    def _checkout(self, host_key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(host_key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if now - connection.idle_since < self._idle_expiry_s and not connection.reader.at_eof():
                return connection
            connection.close()
        return None

    def _checkin(self, host_key: tuple[str, int], connection: _Connection, keep: bool) -> None:
        idle = self._idle.setdefault(host_key, [])
        if not keep or self._closed or len(idle) >= self._max_idle:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    async def _connect(
        self, host_key: tuple[str, int], timeout_s: float, request: httpx.Request | None
    ) -> _Connection:
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_connection(
                    *host_key,
                    ssl=self._ssl,
                    server_hostname=host_key[0] if self._ssl is not None else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"connect to {host_key} timed out", request=request
            ) from None
        except OSError as exc:  # ssl.SSLError included: a refused certificate
            raise httpx.ConnectError(f"connect to {host_key}: {exc}", request=request) from None
        set_nodelay(writer.transport)
        return _Connection(reader, writer)

    # --- one exchange --------------------------------------------------------------------
    async def _exchange(
        self,
        connection: _Connection,
        head: bytes,
        body: bytes,
        timeout_s: float,
        request: httpx.Request | None,
        reused: bool,
        head_only: bool = False,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        try:
            async with asyncio.timeout(timeout_s):
                connection.writer.write(head + body if len(body) < 65536 else head)
                if len(body) >= 65536:
                    connection.writer.write(body)
                status_line = await connection.reader.readline()
                if not status_line:
                    if reused:
                        raise _StaleConnection
                    raise httpx.RemoteProtocolError("no response", request=request)
                status = _status(status_line, request)
                headers, length, chunked, keep = await self._read_headers(connection, request)
                if status in (204, 304) or status < 200 or head_only:
                    content = b""  # no body, whatever the headers say
                else:
                    content = await self._read_body(connection, length, chunked, request)
                    if length is None and not chunked:
                        keep = False  # the body ended with the connection
        except TimeoutError:
            raise httpx.ReadTimeout("the peer did not answer in time", request=request) from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            # OSError: ConnectionError, and ssl.SSLError (a peer that refused our certificate)
            if reused and isinstance(exc, ConnectionError):
                raise _StaleConnection from None
            raise httpx.ReadError(f"connection broken: {exc!r}", request=request) from None
        return status, headers, content, keep

    async def _read_headers(
        self, connection: _Connection, request: httpx.Request | None
    ) -> tuple[list[tuple[bytes, bytes]], int | None, bool, bool]:
        headers: list[tuple[bytes, bytes]] = []
        length: int | None = None
        chunked = False
        keep = True
        for _ in range(256):
            line = await connection.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                return headers, length, chunked, keep
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip()
            if name == b"content-length":
                length = _int(value, request)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                keep = b"close" not in value.lower()
            if name not in _HOP_HEADERS:
                headers.append((name, value))
        raise httpx.RemoteProtocolError("too many response headers", request=request)

    async def _read_body(
        self,
        connection: _Connection,
        length: int | None,
        chunked: bool,
        request: httpx.Request | None,
    ) -> bytes:
        reader = connection.reader
        if chunked:
            parts: list[bytes] = []
            size = 0
            while True:
                chunk_size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                if chunk_size == 0:
                    await reader.readline()
                    return b"".join(parts)
                size += chunk_size
                if size > self._max_body:
                    raise httpx.RemoteProtocolError("response too large", request=request)
                parts.append(await reader.readexactly(chunk_size))
                await reader.readline()
        if length is None:
            data = await reader.read(self._max_body + 1)
        else:
            if length > self._max_body:
                raise httpx.RemoteProtocolError("response too large", request=request)
            data = await reader.readexactly(length) if length else b""
        if len(data) > self._max_body:
            raise httpx.RemoteProtocolError("response too large", request=request)
        return data


def _request_head(request: httpx.Request) -> bytes:
    lines = [request.method.encode() + b" " + request.url.raw_path + b" HTTP/1.1"]
    lines.extend(name + b": " + value for name, value in request.headers.raw)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _status(line: bytes, request: httpx.Request | None) -> int:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise httpx.RemoteProtocolError(f"malformed status line {line[:80]!r}", request=request)
    return _int(parts[1], request)


def _int(value: bytes, request: httpx.Request | None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise httpx.RemoteProtocolError(f"not a number: {value[:40]!r}", request=request) from None
    if number < 0:
        raise httpx.RemoteProtocolError("negative length", request=request)
    return number
