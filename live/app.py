"""The HTTP face of a live node: FastAPI for docs, admin and cluster endpoints.

The ``/kv`` hot path is a raw ASGI handler (``live.kv``) mounted as plain Starlette routes
ahead of FastAPI's own, so it pays no dependency injection or pydantic; it is documented
in the OpenAPI schema by hand (``KV_OPENAPI``) so ``/docs`` still shows every endpoint.
``POST /gossip`` is a plain Starlette route as well (it carries replication traffic).

Errors are translated once, here: every 4xx/5xx body is ``{"error", "detail"}``, and an
outermost catch-all turns an unexpected exception into a logged 500 JSON answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import httpx
import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rumordb.live.auth import KeyStore, Role
from rumordb.live.faults import FaultError, parse_request
from rumordb.live.forward import Forwarder
from rumordb.live.gossip_client import Envelope, EnvelopeError, open_envelope, seal_envelope
from rumordb.live.kv import KVHandler
from rumordb.live.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from rumordb.live.runner import Runner
from rumordb.live.settings import Settings
from rumordb.live.storage import StorageError
from rumordb.live.tls import peer_transport
from rumordb.live.wire import AuthError

log = structlog.get_logger("rumor.app")

MAX_GOSSIP_BYTES = 64 * 1024 * 1024


class ApiError(Exception):
    """An error answer of a FastAPI route: ``{"error": error, "detail": detail}``."""

    def __init__(
        self, status: int, error: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers


class CatchAll:
    """Outermost guard: an exception that escaped every handler becomes a 500 JSON body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.exception("request_failed", path=scope.get("path"), error=repr(exc))
            if started:
                raise
            response = _error(500, "internal_error", "unexpected server error (logged)")
            await response(scope, receive, send)


class NodeApp(FastAPI):
    """FastAPI, with ``/kv`` requests handed straight to the raw handler.

    The handler is also mounted as ordinary Starlette routes (first in the router); this
    shortcut only skips FastAPI's per-request middleware stack (telemetry, body limit,
    exception and exit-stack middlewares), which costs as much as the handler itself.
    """

    kv_handler: KVHandler | None = None
    gossip_handler: GossipHandler | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.kv_handler and self.gossip_handler:
            path: str = scope["path"]
            if path.startswith("/kv/") or path == "/kv":
                await self.kv_handler(scope, receive, send)
                return
            if path == "/gossip":
                await self.gossip_handler(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _error(
    status: int, error: str, detail: object, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _error_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def create_app(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    discovery: bool = True,
) -> FastAPI:
    """The app of one node; its lifespan starts and stops the runner."""
    # Without an injected transport, peers are reached over HTTPS exactly when TLS is on.
    runner = Runner(settings, transport=transport or peer_transport(settings), discovery=discovery)
    keystore = KeyStore.from_settings(settings)
    holder: dict[str, Forwarder] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runner.start()
        holder["forwarder"] = Forwarder(
            runner.node_id,
            runner.node.address_of,
            runner.metrics,
            transport=transport or peer_transport(settings),
        )
        try:
            yield
        finally:
            await holder.pop("forwarder").close()
            await runner.stop()

    app = NodeApp(
        title="RumorDB node",
        version="0.1.0",
        description="A peer-to-peer, eventually consistent key-value store node.",
        lifespan=lifespan,
    )
    app.state.runner = runner
    app.state.keystore = keystore
    kv = KVHandler(
        runner,
        keystore,
        runner.metrics,
        lambda: holder.get("forwarder"),
        settings.max_value_bytes,
        settings.max_key_bytes,
    )
    app.state.kv = kv
    gossip = GossipHandler(runner)
    app.kv_handler, app.gossip_handler = kv, gossip
    app.router.routes[0:0] = [
        Route("/kv", kv, methods=None, include_in_schema=False),
        Route("/kv/{key:path}", kv, methods=None, include_in_schema=False),
        Route("/gossip", gossip, methods=None, include_in_schema=False),
    ]
    _install_errors(app)
    _add_ops_routes(app, runner, keystore)
    if settings.allow_faults:
        _add_fault_routes(app, runner, keystore)
    _document_raw_routes(app)
    app.add_middleware(CatchAll)
    return app


def _install_errors(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error(exc.status, exc.error, exc.detail, exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, _error_name(exc.status_code), exc.detail, exc.headers)

    async def invalid_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return _error(400, "invalid_request", detail)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)


def _require(keystore: KeyStore, needed: Role) -> Callable[[Request], Awaitable[Role]]:
    async def check(request: Request) -> Role:
        role = keystore.authenticate(request.headers)
        if role is None:
            raise ApiError(
                401, "unauthorized", "missing or unknown API key", {"www-authenticate": "Bearer"}
            )
        if needed is Role.ADMIN and role is not Role.ADMIN:
            raise ApiError(403, "forbidden", "this needs an admin key")
        return role

    return check


def _add_ops_routes(app: FastAPI, runner: Runner, keystore: KeyStore) -> None:
    reader = Depends(_require(keystore, Role.READER))

    @app.get("/health", tags=["operations"], summary="Liveness of this process (no auth)")
    async def health() -> dict[str, Any]:
        return {"status": "ok" if runner.running else "starting", "node_id": runner.node_id}

    @app.get("/heartbeat", tags=["cluster"], summary="Answer a liveness probe (no auth)")
    async def heartbeat() -> dict[str, Any]:
        if not runner.running:
            raise ApiError(503, "unavailable", "the node is starting or stopping")
        me = runner.node.membership.me if hasattr(runner.node.membership, "me") else None
        return {
            "node_id": runner.node_id,
            "incarnation": me.incarnation if me else runner.incarnation,
            "heartbeat": me.heartbeat if me else 0,
        }

    @app.get(
        "/cluster",
        tags=["cluster"],
        summary="This node's view of the cluster: members, states, ownership",
        dependencies=[reader],
    )
    async def cluster() -> dict[str, Any]:
        if not runner.running:
            raise ApiError(503, "unavailable", "the node is starting or stopping")
        view = runner.cluster_view()
        view["discovery_rejected"] = runner.discovery_rejected
        return view

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics (text format)",
        dependencies=[reader],
        response_class=Response,
    )
    async def metrics() -> Response:
        return Response(runner.metrics.render(), media_type=METRICS_CONTENT_TYPE)


FAULTS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "block": {"type": "array", "items": {"type": "string"}},
                        "block_to": {"type": "array", "items": {"type": "string"}},
                        "block_from": {"type": "array", "items": {"type": "string"}},
                        "delay_ms": {"type": "integer", "minimum": 0, "maximum": 60000},
                        "loss": {"type": "number", "minimum": 0, "maximum": 1},
                        "pause_gossip": {"type": "boolean"},
                    },
                }
            }
        },
    }
}


def _add_fault_routes(app: FastAPI, runner: Runner, keystore: KeyStore) -> None:
    admin = Depends(_require(keystore, Role.ADMIN))

    @app.get("/faults", tags=["faults"], summary="Faults in force", dependencies=[admin])
    async def get_faults() -> dict[str, Any]:
        return runner.faults.describe()

    @app.post(
        "/faults",
        tags=["faults"],
        summary="Add faults (merged into the current ones)",
        dependencies=[admin],
        openapi_extra=FAULTS_BODY,
    )
    async def post_faults(request: Request) -> dict[str, Any]:
        body = await request.body()
        try:
            fault_request = parse_request(body)
        except FaultError as exc:
            raise ApiError(400, "invalid_faults", str(exc)) from None
        runner.faults.apply(fault_request)
        log.info("faults_changed", faults=runner.faults.describe())
        return runner.faults.describe()

    @app.delete("/faults", tags=["faults"], summary="Heal every fault", dependencies=[admin])
    async def delete_faults() -> dict[str, Any]:
        runner.faults.heal()
        log.info("faults_healed")
        return runner.faults.describe()


class GossipHandler:
    """``POST /gossip`` as raw ASGI: open the sealed envelope, apply it, answer with replies.

    Replication traffic: one request per batch per peer, so it skips FastAPI's stack like
    ``/kv`` does. The body is read with a bound (413 beyond ``MAX_GOSSIP_BYTES``).
    """

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, body, content_type = await self._handle(scope, receive)
        except Exception as exc:  # a bug, never an input: 500 JSON, logged
            log.exception("gossip_handler_failed", error=repr(exc))
            status, body, content_type = _raw_error(500, "internal_error", "unexpected error")
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, bytes, bytes]:
        runner = self.runner
        if scope["method"] != "POST":
            return _raw_error(405, "method_not_allowed", "POST /gossip only")
        body = await _read_bounded(receive, MAX_GOSSIP_BYTES)
        if body is None:
            return _raw_error(413, "too_large", "gossip body too large")
        try:
            envelope = open_envelope(runner.signer, body, time.time())
        except (AuthError, EnvelopeError) as exc:
            runner.metrics.unauthenticated.labels("gossip").inc()
            log.warning(
                "gossip_rejected",
                reason=getattr(exc, "reason", str(exc)),
                client=(scope.get("client") or ("?",))[0],
            )
            return _raw_error(
                401, "unauthenticated", "gossip must be sealed with the cluster secret"
            )
        if not runner.running:
            return _raw_error(503, "unavailable", "the node is starting or stopping")
        if not runner.faults.allow_receive(envelope.sender):
            return _raw_error(503, "blocked", "traffic from this peer is blocked by a fault")
        runner.metrics.messages_in.inc(len(envelope.messages))
        runner.metrics.bytes_in.inc(len(body))
        try:
            replies = await runner.receive(envelope.sender, envelope.messages)
        except StorageError as exc:
            return _raw_error(503, "storage_failed", str(exc))
        if not replies:
            return 204, b"", b"application/octet-stream"
        sealed = seal_envelope(runner.signer, Envelope(runner.node_id, replies), time.time())
        runner.metrics.bytes_out.inc(len(sealed))
        runner.metrics.messages_out.inc(len(replies))
        return 200, sealed, b"application/octet-stream"


def _raw_error(status: int, error: str, detail: str) -> tuple[int, bytes, bytes]:
    return status, json.dumps({"error": error, "detail": detail}).encode(), b"application/json"


async def _read_bounded(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _kv_doc(summary: str, responses: dict[str, str], **extra: Any) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": ["kv"],
        "summary": summary,
        "security": [{"bearer": []}, {"apiKey": []}],
        "responses": {code: {"description": text} for code, text in responses.items()},
    }
    operation.update(extra)
    return operation


KEY_PARAM = {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "A version context (the ETag) the write must descend from.",
}
RAW_BODY = {
    "requestBody": {
        "required": True,
        "description": "The raw value; its Content-Type is stored with it.",
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    }
}
WRITTEN = "JSON {key, context, hlc, origin}; ETag header"
KV_OPENAPI: dict[str, dict[str, Any]] = {
    "/kv": {
        "get": _kv_doc(
            "List live keys (paginated)",
            {
                "200": "JSON {keys: [...], next: last key or null}",
                "400": "bad limit",
                "401": "no key",
            },
            parameters=[
                {"name": n, "in": "query", "required": False, "schema": {"type": t}}
                for n, t in (("prefix", "string"), ("after", "string"), ("limit", "integer"))
            ],
        )
    },
    "/kv/{key}": {
        "get": _kv_doc(
            "Read a value (raw bytes with its Content-Type), or its version with ?meta=true",
            {"200": "the value; ETag and X-Rumor-Context headers", "404": "absent or deleted"},
            parameters=[
                KEY_PARAM,
                {"name": "meta", "in": "query", "required": False, "schema": {"type": "boolean"}},
            ],
        ),
        "put": _kv_doc(
            "Write a value (upsert)",
            {
                "200": WRITTEN,
                "201": WRITTEN,
                "400": "bad key or context",
                "403": "reader key",
                "412": "If-Match mismatch",
                "413": "value too large",
            },
            parameters=[KEY_PARAM, IF_MATCH],
            **RAW_BODY,
        ),
        "post": _kv_doc(
            "Create a value (409 if a live value exists on this node)",
            {"201": WRITTEN, "409": "exists", "413": "value too large"},
            parameters=[KEY_PARAM, IF_MATCH],
            **RAW_BODY,
        ),
        "delete": _kv_doc(
            "Delete a key (a replicated tombstone)",
            {"200": "JSON {key, deleted: true, context}", "404": "absent", "412": "mismatch"},
            parameters=[KEY_PARAM, IF_MATCH],
        ),
    },
    "/gossip": {
        "post": {
            "tags": ["cluster"],
            "summary": "Node-to-node messages (HMAC-sealed MessagePack envelope)",
            "responses": {
                "200": {"description": "sealed replies"},
                "204": {"description": "no reply"},
                "401": {"description": "not sealed with the cluster secret"},
            },
        }
    },
}


def _document_raw_routes(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schema.setdefault("paths", {}).update(KV_OPENAPI)
            components = schema.setdefault("components", {})
            components.setdefault("securitySchemes", {}).update(
                {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                }
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
