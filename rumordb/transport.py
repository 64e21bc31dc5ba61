"""The I/O seam: send one ``Request`` to one node, get a ``Response`` or a ``Failure``.

A transport never raises for a network problem; it returns a ``Failure`` saying whether
the request left this process (``sent``), which is what the retry rules need. Three:

* ``HttpxTransport`` / ``AsyncHttpxTransport``: httpx connection pools (the defaults of
  ``Client`` and ``AsyncClient``);
* ``StdlibTransport``: ``http.client``, one kept-alive connection per node. It needs no
  import of httpx (about 60 ms of start-up on a 2-core VM), so short-lived processes such
  as the ``rumor`` command answer in milliseconds.

TLS: ``tls_context(verify, cert)`` builds the ``ssl.SSLContext`` every transport uses for
``https://`` nodes: ``verify`` True (system CAs), False (no verification: tests only),
or the path of a CA bundle; ``cert`` a PEM file with the client certificate and key, or
a ``(cert_file, key_file)`` pair, for mutual TLS.
"""

from __future__ import annotations

import http.client
import select
import ssl
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from rumordb.api import Request, Response
from rumordb.retry import Failure

if TYPE_CHECKING:
    import httpx

MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # far above any node's --max-value-bytes

Cert = str | tuple[str, str] | None


def tls_context(verify: bool | str = True, cert: Cert = None) -> ssl.SSLContext:
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif verify is True:
        context = ssl.create_default_context()
    else:
        context = ssl.create_default_context(cafile=verify)
    if isinstance(cert, tuple):
        context.load_cert_chain(cert[0], cert[1])
    elif cert is not None:
        context.load_cert_chain(cert)
    return context


class SyncTransport(Protocol):
    def send(self, node: str, request: Request) -> Response | Failure: ...
    def close(self) -> None: ...


class AsyncTransport(Protocol):
    async def send(self, node: str, request: Request) -> Response | Failure: ...
    async def close(self) -> None: ...


def _headers(request: Request, base: dict[str, str]) -> dict[str, str]:
    return {**base, **dict(request.headers)}


class StdlibTransport:
    """``http.client`` with one kept-alive connection per node (not thread-safe)."""

    def __init__(
        self,
        headers: dict[str, str],
        timeout_s: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._headers = headers
        self._timeout_s = timeout_s
        self._tls = tls
        self._connections: dict[str, tuple[http.client.HTTPConnection, str]] = {}

    def _connection(self, node: str) -> tuple[http.client.HTTPConnection, str]:
        found = self._connections.get(node)
        if found is not None and found[0].sock is not None and _closed_by_peer(found[0].sock):
            self._drop(node)  # the node closed an idle connection: never send into it
            found = None
        if found is None:
            parts = urlsplit(node)
            if parts.scheme == "https":
                connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                    parts.hostname or "", parts.port, timeout=self._timeout_s,
                    context=self._tls or tls_context(),
                )  # fmt: skip
            else:
                connection = http.client.HTTPConnection(
                    parts.hostname or "", parts.port, timeout=self._timeout_s
                )
            found = (connection, parts.path.rstrip("/"))
            self._connections[node] = found
        return found

    def send(self, node: str, request: Request) -> Response | Failure:
        connection, prefix = self._connection(node)
        try:
            if connection.sock is None:
                connection.connect()
        except OSError as exc:
            self._drop(node)
            return Failure(node, sent=False, reason=str(exc) or type(exc).__name__)
        try:
            connection.request(
                request.method, prefix + request.target, request.body or None,
                _headers(request, self._headers),
            )  # fmt: skip
            answer = connection.getresponse()
            body = answer.read(MAX_RESPONSE_BYTES + 1)
        except (OSError, http.client.HTTPException) as exc:
            self._drop(node)
            return Failure(node, sent=True, reason=str(exc) or type(exc).__name__)
        if len(body) > MAX_RESPONSE_BYTES:
            self._drop(node)
            return Failure(node, sent=True, reason=f"answer above {MAX_RESPONSE_BYTES} bytes")
        if answer.will_close:
            self._drop(node)
        headers = {name.lower(): value for name, value in answer.getheaders()}
        return Response(answer.status, headers, body, node)

    def _drop(self, node: str) -> None:
        found = self._connections.pop(node, None)
        if found is not None:
            found[0].close()

    def close(self) -> None:
        for node in list(self._connections):
            self._drop(node)


def _closed_by_peer(sock: Any) -> bool:
    """A kept-alive socket that is readable before we sent anything was closed (EOF)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _httpx_failure(node: str, exc: Exception) -> Failure:
    import httpx

    # Connect errors and pool timeouts happen before a byte of the request is written.
    not_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    return Failure(node, sent=not not_sent, reason=str(exc) or type(exc).__name__)


def _httpx_options(headers: dict[str, str], timeout_s: float, tls: ssl.SSLContext | None) -> Any:
    # trust_env=False: a proxy from the environment must never carry cluster traffic.
    return {"headers": headers, "timeout": timeout_s, "trust_env": False, "verify": tls or True}


def _import_httpx() -> Any:
    import sys

    # httpx/__init__ imports its own command line (click, rich, pygments: ~40 ms) when
    # they are installed; the client never needs it, so keep that import from happening.
    if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
        sys.modules["httpx._main"] = None  # type: ignore[assignment]
        try:
            import httpx
        finally:
            if sys.modules.get("httpx._main", 0) is None:
                del sys.modules["httpx._main"]
    import httpx

    return httpx


class HttpxTransport:
    """An ``httpx.Client`` pool (thread-safe)."""

    def __init__(
        self, headers: dict[str, str], timeout_s: float, tls: ssl.SSLContext | None = None
    ) -> None:
        self.client: httpx.Client = _import_httpx().Client(
            **_httpx_options(headers, timeout_s, tls)
        )

    def send(self, node: str, request: Request) -> Response | Failure:
        import httpx

        try:
            answer = self.client.request(
                request.method, node + request.target,
                content=request.body or None, headers=dict(request.headers),
            )  # fmt: skip
        except httpx.TransportError as exc:
            return _httpx_failure(node, exc)
        return Response(answer.status_code, dict(answer.headers), answer.content, node)

    def close(self) -> None:
        self.client.close()


class AsyncHttpxTransport:
    """An ``httpx.AsyncClient`` pool."""

    def __init__(
        self, headers: dict[str, str], timeout_s: float, tls: ssl.SSLContext | None = None
    ) -> None:
        self.client: httpx.AsyncClient = _import_httpx().AsyncClient(
            **_httpx_options(headers, timeout_s, tls)
        )

    async def send(self, node: str, request: Request) -> Response | Failure:
        import httpx

        try:
            answer = await self.client.request(
                request.method, node + request.target,
                content=request.body or None, headers=dict(request.headers),
            )  # fmt: skip
        except httpx.TransportError as exc:
            return _httpx_failure(node, exc)
        return Response(answer.status_code, dict(answer.headers), answer.content, node)

    async def close(self) -> None:
        await self.client.aclose()
