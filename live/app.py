"""The HTTP face of a live node: FastAPI for docs, admin and cluster endpoints.

The ``/kv`` hot path is a raw ASGI handler (``live.kv``), and ``POST /gossip`` (replication
traffic) another; ``HotRoutes`` hands them their requests inside the app's middleware
stack, so they pay no dependency injection or pydantic. They are documented in the
OpenAPI schema by hand (``live.openapi``) so ``/docs`` still shows every endpoint.

Errors are translated once, by ``live.errors``: every route raises ``HttpError`` (or lets
a bug escape), and the boundary at the top of the stack answers ``{"error", "detail"}``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from rumordb.live.admin import add_member_routes
from rumordb.live.asgi import Reply, read_body, send_reply
from rumordb.live.auth import Gate, KeyStore, Role
from rumordb.live.errors import ErrorBoundary, HttpError, answer_exception, translate
from rumordb.live.faults import FaultError, parse_request
from rumordb.live.gossip_client import Envelope, EnvelopeError, open_envelope, seal_envelope
from rumordb.live.keyring import ClusterKeyring, add_keyring_routes
from rumordb.live.kv import KVHandler
from rumordb.live.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from rumordb.live.openapi import AUTH_STATUSES, SECURITY, document, errors
from rumordb.live.runner import Runner
from rumordb.live.settings import Settings
from rumordb.live.storage import StorageError
from rumordb.live.tls import peer_transport
from rumordb.live.wire import AuthError, StaleFrame

log = structlog.get_logger("rumor.app")

MAX_GOSSIP_BYTES = 64 * 1024 * 1024
MAX_FAULTS_BYTES = 64 * 1024


class HotRoutes:
    """Routes the two hot paths to their raw ASGI handlers, everything else to FastAPI.

    It sits inside the app's middleware stack, under the error boundary and any user
    middleware, so ``/kv`` and ``/gossip`` get the same error translation as every other
    route; only FastAPI's own per-request layers (exception handlers, exit stack,
    dependency injection), which ``/kv`` and ``/gossip`` do not use and which cost as
    much as the handler itself, are left to the routes that need them.
    """

    def __init__(self, kv: ASGIApp, gossip: ASGIApp, fastapi: ASGIApp) -> None:
        self.kv = kv
        self.gossip = gossip
        self.fastapi = fastapi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/kv/") or path == "/kv":
                await self.kv(scope, receive, send)
                return
            if path == "/gossip":
                await self.gossip(scope, receive, send)
                return
        await self.fastapi(scope, receive, send)


class NodeApp(FastAPI):
    """FastAPI with one middleware stack for every route: the boundary, then the routes.

    ``error boundary -> user middleware -> HotRoutes -> (/kv | /gossip | FastAPI layers
    -> router)``. Starlette's ``ServerErrorMiddleware`` is replaced by the boundary (the
    one translator); FastAPI's inner layers are kept for its own routes.
    """

    kv_handler: ASGIApp | None = None
    gossip_handler: ASGIApp | None = None
    _telemetry_on: bool | None = None
    _kv_direct: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kv = self._kv_direct
        if kv is not None and scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/kv/") or path == "/kv":  # the boundary and HotRoutes, folded
                if self.root_path:
                    scope["root_path"] = self.root_path
                scope["app"] = self
                try:
                    await kv(scope, receive, send)
                except Exception as exc:
                    await answer_exception(exc, scope, send)
                return
        # FastAPI asks OpenTelemetry on every request whether telemetry is on (environment
        # look-ups that cost as much as the whole /kv handler): ask once, at the first
        # request. Either way every request then runs through the one middleware stack.
        telemetry_on = self._telemetry_on
        if telemetry_on is None:
            telemetry = getattr(self, "_native_telemetry", None)
            telemetry_on = self._telemetry_on = bool(telemetry and telemetry.enabled())
        if telemetry_on or scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        if self.root_path:
            scope["root_path"] = self.root_path
        scope["app"] = self
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        # With no user middleware (and no telemetry), later ``/kv`` requests skip the
        # boundary and HotRoutes layers: ``_kv`` does what they would, in one layer. Set
        # here, not where the stack is built: a server's lifespan (uvicorn's) builds it
        # first, through Starlette, and the fold was then never switched on.
        self._kv_direct = None if self.user_middleware else self.kv_handler
        await self.middleware_stack(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        assert self.kv_handler is not None and self.gossip_handler is not None
        handlers: dict[Any, Any] = {HTTPException: _reraise, RequestValidationError: _reraise}
        inner: ASGIApp = ExceptionMiddleware(
            AsyncExitStackMiddleware(self.router), handlers=handlers, debug=self.debug
        )
        app: ASGIApp = HotRoutes(self.kv_handler, self.gossip_handler, inner)
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return ErrorBoundary(app)


async def _reraise(request: Request, exc: Exception) -> Response:
    """FastAPI's own errors go to the boundary too, so they are answered the same way."""
    raise translate(exc, request.url.path)


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
    keyring = ClusterKeyring(runner)
    gate = Gate.from_settings(keystore, settings, runner.metrics, keyring=keyring)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runner.start()
        try:
            yield
        finally:
            await runner.stop()

    app = NodeApp(
        title="RumorDB node",
        version="0.1.0",
        description="A peer-to-peer, eventually consistent key-value store node.",
        lifespan=lifespan,
        docs_url=None,  # live.openapi serves /docs and /redoc with local assets
        redoc_url=None,
    )
    app.state.runner = runner
    app.state.keystore = keystore
    app.state.gate = gate
    kv = KVHandler(
        runner,
        gate,
        runner.metrics,
        settings.max_value_bytes,
        settings.max_key_bytes,
    )
    app.state.kv = kv
    gossip = GossipHandler(runner)
    app.kv_handler, app.gossip_handler = kv, gossip
    _add_ops_routes(app, runner, gate)
    add_member_routes(app, runner, _require(gate, Role.ADMIN))
    add_keyring_routes(app, keyring, Depends(_require(gate, Role.ADMIN)))
    if settings.allow_faults:
        _add_fault_routes(app, runner, gate)
    document(app, settings.max_key_bytes, settings.max_value_bytes)
    return app


def _require(gate: Gate, needed: Role) -> Callable[[Request], Awaitable[Role]]:
    async def check(request: Request) -> Role:
        # One gate for every route: duplicate credentials 400, failures 401/429 (HttpError).
        role = gate.check(request.headers.raw, request.client.host if request.client else None)
        if needed is Role.ADMIN and role is not Role.ADMIN:
            raise HttpError(403, "forbidden", "this needs an admin key")
        return role

    return check


def _add_ops_routes(app: FastAPI, runner: Runner, gate: Gate) -> None:
    reader = Depends(_require(gate, Role.READER))

    @app.get("/health", tags=["operations"], summary="Liveness of this process (no auth)")
    async def health() -> dict[str, Any]:
        if not runner.running:  # "ok" only once every stored record is loaded
            starting = {"status": "starting", "node_id": runner.node_id}
            return starting | ({"detail": runner.readiness()[1]} if runner.loading else {})
        problems = runner.problems()  # storage that cannot persist, a clock out of bound
        if problems:
            return {"status": "degraded", "node_id": runner.node_id, "problems": problems}
        return {"status": "ok", "node_id": runner.node_id}

    @app.get(
        "/heartbeat",
        tags=["cluster"],
        summary="Answer a liveness probe (no auth)",
        responses=errors(503),
    )
    async def heartbeat() -> dict[str, Any]:
        if not runner.running:
            raise HttpError(503, "unavailable", "the node is starting or stopping")
        me = runner.view.me()
        return {"node_id": runner.node_id, "incarnation": me.incarnation, "heartbeat": me.heartbeat}

    @app.get(
        "/cluster",
        tags=["cluster"],
        summary="This node's view of the cluster: members, states, ownership",
        dependencies=[reader],
        responses=errors(*AUTH_STATUSES, 503),
        openapi_extra={"security": SECURITY},
    )
    async def cluster() -> dict[str, Any]:
        if not runner.running:
            raise HttpError(503, "unavailable", "the node is starting or stopping")
        view = runner.cluster_view()
        view["discovery_rejected"] = runner.discovery_rejected
        return view

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics (text format)",
        dependencies=[reader],
        response_class=Response,
        responses=errors(*AUTH_STATUSES) | {200: {"content": {"text/plain": {}}}},
        openapi_extra={"security": SECURITY},
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


ADMIN_ERRORS = errors(*AUTH_STATUSES, 403)


def _add_fault_routes(app: FastAPI, runner: Runner, gate: Gate) -> None:
    admin = Depends(_require(gate, Role.ADMIN))

    @app.get(
        "/faults",
        tags=["faults"],
        summary="Faults in force",
        dependencies=[admin],
        responses=ADMIN_ERRORS,
        openapi_extra={"security": SECURITY},
    )
    async def get_faults() -> dict[str, Any]:
        return runner.faults.describe()

    @app.post(
        "/faults",
        tags=["faults"],
        summary="Add faults (merged into the current ones)",
        dependencies=[admin],
        responses=ADMIN_ERRORS | errors(413),
        openapi_extra=FAULTS_BODY | {"security": SECURITY},
    )
    async def post_faults(request: Request) -> dict[str, Any]:
        body = await read_body(
            request.receive,
            MAX_FAULTS_BYTES,
            request.headers.get("content-length", "").encode() or None,
            too_large=("too_large", "a faults body"),
        )
        try:
            fault_request = parse_request(body)
        except FaultError as exc:
            raise HttpError(400, "invalid_faults", str(exc)) from None
        runner.faults.apply(fault_request)
        log.info("faults_changed", faults=runner.faults.describe())
        return runner.faults.describe()

    @app.delete(
        "/faults",
        tags=["faults"],
        summary="Heal every fault",
        dependencies=[admin],
        responses=ADMIN_ERRORS,
        openapi_extra={"security": SECURITY},
    )
    async def delete_faults() -> dict[str, Any]:
        runner.faults.heal()
        log.info("faults_healed")
        return runner.faults.describe()


class GossipHandler:
    """``POST /gossip`` as raw ASGI: open the sealed envelope, apply it, answer with replies.

    Replication traffic: one request per batch per peer. The body is read with a bound
    (413 beyond ``MAX_GOSSIP_BYTES``); every refusal raises ``HttpError`` for the boundary.
    """

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runner = self.runner
        if scope["method"] != "POST":
            raise HttpError(405, "method_not_allowed", "POST /gossip only")
        # A declared Content-Length over the cap is refused before any byte is read; a
        # chunked body is cut as soon as it grows past it. The MAC is checked over the
        # raw frame before any of it is decoded (``live.wire.Signer.open``).
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        body = await read_body(
            receive, MAX_GOSSIP_BYTES, declared, too_large=("too_large", "a gossip body")
        )
        try:
            envelope = open_envelope(runner.signer, body, time.time(), runner.node_id)
        except StaleFrame:  # harden: authentic but late (after a partition): not an attack
            runner.metrics.stale_frames.labels("gossip").inc()
            log.debug("gossip_stale", client=(scope.get("client") or ("?",))[0])
            raise HttpError(401, "stale", "gossip frame outside the freshness window") from None
        except (AuthError, EnvelopeError) as exc:
            runner.metrics.unauthenticated.labels("gossip").inc()
            log.warning(
                "gossip_rejected",
                reason=getattr(exc, "reason", str(exc)),
                client=(scope.get("client") or ("?",))[0],
            )
            raise HttpError(
                401, "unauthenticated", "gossip must be sealed with the cluster secret"
            ) from None
        if not runner.running:
            raise HttpError(503, "unavailable", "the node is starting or stopping")
        if not runner.faults.allow_receive(envelope.sender):
            raise HttpError(503, "blocked", "traffic from this peer is blocked by a fault")
        runner.metrics.messages_in.inc(len(envelope.messages))
        runner.metrics.bytes_in.inc(len(body))
        try:
            replies = await runner.receive(envelope.sender, envelope.messages)
        except StorageError as exc:
            raise HttpError(503, "storage_failed", str(exc)) from None
        if not replies:
            await send_reply(send, Reply(204, [OCTETS], b""))
            return
        reply = Envelope(runner.node_id, replies)
        sealed = seal_envelope(runner.signer, reply, time.time(), envelope.sender)
        runner.metrics.bytes_out.inc(len(sealed))
        runner.metrics.messages_out.inc(len(replies))
        await send_reply(send, Reply(200, [OCTETS], sealed))


OCTETS = (b"content-type", b"application/octet-stream")
