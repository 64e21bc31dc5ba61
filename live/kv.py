"""The ``/kv`` hot path: a raw ASGI handler mounted in the FastAPI app.

Why raw ASGI: FastAPI's per-request dependency injection and pydantic cost about three
quarters of what uvicorn can serve. This handler reads the few headers it needs in one
pass over ``scope["headers"]``, checks the API key through the key store's cache, and
answers with pre-encoded bytes; it never builds a ``Request``. Every handler returns a
``Reply`` (status, headers, body) and ``__call__`` sends it, so an unexpected exception
can always still become a 500 JSON body (logged) — but every bad input is a 4xx first.

Value size is enforced while the body streams in: a declared or accumulated size above
``max_value_bytes`` answers 413 at once, without reading the rest.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

import msgspec
import structlog

from rumordb.core import Record, WriteStatus, decode_context, encode_context
from rumordb.core.context import Context
from rumordb.core.errors import InvalidContext, InvalidKey
from rumordb.core.hlc import physical_ms
from rumordb.core.keys import check_key
from rumordb.live.auth import KeyStore, Role
from rumordb.live.forward import FORWARDED_HEADER, Forwarder
from rumordb.live.metrics import Metrics
from rumordb.live.runner import Overloaded, Runner, WriteOp

log = structlog.get_logger("rumor.kv")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

DEFAULT_CONTENT_TYPE = "application/octet-stream"
JSON_TYPE = (b"content-type", b"application/json")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
CONTEXT_CACHE_MAX = 65_536
_FORWARDED = FORWARDED_HEADER.encode()
_json = msgspec.json.Encoder()


class Reply(msgspec.Struct, gc=False):
    status: int
    headers: Headers
    body: bytes


class BadRequest(Exception):
    """A client error found while parsing; becomes a JSON error reply."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


def error_reply(status: int, error: str, detail: str, extra: Headers | None = None) -> Reply:
    body = _json.encode({"error": error, "detail": detail})
    return Reply(status, [JSON_TYPE, *(extra or [])], body)


def json_reply(status: int, data: object, extra: Headers | None = None) -> Reply:
    return Reply(status, [JSON_TYPE, *(extra or [])], _json.encode(data))


class KVRequest:
    """What the handler needs from one request, read in one pass over the headers."""

    __slots__ = (
        "api_key",
        "authorization",
        "content_length",
        "content_type",
        "forwarded",
        "if_match",
        "raw",
    )

    def __init__(self, headers: Headers) -> None:
        self.raw = headers
        self.api_key: str | None = None
        self.authorization: str | None = None
        self.content_type = DEFAULT_CONTENT_TYPE
        self.content_length: bytes | None = None
        self.if_match: bytes | None = None
        self.forwarded = False
        for name, value in headers:
            if name == b"authorization":
                self.authorization = value.decode("latin-1")
            elif name == b"x-api-key":
                self.api_key = value.decode("latin-1").strip() or None
            elif name == b"content-type":
                self.content_type = value.decode("latin-1") or DEFAULT_CONTENT_TYPE
            elif name == b"content-length":
                self.content_length = value
            elif name == b"if-match":
                self.if_match = value
            elif name == _FORWARDED:
                self.forwarded = True
        if self.authorization is not None:  # as live.auth.presented_key: it wins, or fails
            scheme, _, token = self.authorization.strip().partition(" ")
            token = token.strip()
            ok = scheme.lower() == "bearer" and token and " " not in token
            self.api_key = token if ok else None


class KVHandler:
    """ASGI app for ``/kv`` and ``/kv/{key}``."""

    def __init__(
        self,
        runner: Runner,
        keystore: KeyStore,
        metrics: Metrics,
        forwarder: Callable[[], Forwarder | None],
        max_value_bytes: int,
        max_key_bytes: int,
    ) -> None:
        self.runner = runner
        self.keystore = keystore
        self.metrics = metrics
        self._forwarder = forwarder
        self.max_value_bytes = max_value_bytes
        self.max_key_bytes = max_key_bytes
        self._contexts: dict[str, tuple[Record, str]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method = scope["method"]
        route = "kv_list" if scope["path"] in ("/kv", "/kv/") and method == "GET" else "kv"
        try:
            route, reply = await self._dispatch(scope, receive, method)
        except BadRequest as exc:
            reply = error_reply(exc.status, exc.error, exc.detail)
        except Exception as exc:  # a bug, never an input: answer 500 JSON and log it
            log.exception("kv_handler_failed", path=scope.get("path"), error=repr(exc))
            reply = error_reply(500, "internal_error", "unexpected server error (logged)")
        headers = reply.headers
        headers.append((b"content-length", str(len(reply.body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
        self.metrics.observe_request(route, reply.status, time.perf_counter() - started)

    async def _dispatch(self, scope: Scope, receive: Receive, method: str) -> tuple[str, Reply]:
        request = KVRequest(scope["headers"])
        role = self.keystore.role_for(request.api_key) if request.api_key else None
        if role is None:
            return "kv", error_reply(
                401,
                "unauthorized",
                "missing or unknown API key (Authorization: Bearer <key> or X-API-Key)",
                [(b"www-authenticate", b"Bearer")],
            )
        if not self.runner.running:
            return "kv", _unavailable()
        path: str = scope["path"]
        if path in ("/kv", "/kv/") and method == "GET":
            return "kv_list", await self._list(scope, request)
        if method == "GET":
            key = self._key(scope)
            if _query(scope).get("meta", "").lower() in ("true", "1", "yes"):
                return "kv_meta", await self._meta(scope, request, key)
            return "kv_get", await self._get(scope, request, key)
        if method not in ("PUT", "POST", "DELETE"):
            return "kv", error_reply(
                405,
                "method_not_allowed",
                f"{method} is not allowed on /kv/{{key}}",
                [(b"allow", b"GET, PUT, POST, DELETE")],
            )
        route = "kv_" + method.lower()
        if role is not Role.ADMIN:
            return route, error_reply(
                403, "forbidden", "a reader key cannot write; use an admin key"
            )
        key = self._key(scope)
        context = _context(request.if_match)
        if method == "DELETE":
            return route, await self._write(scope, request, key, b"", context, delete=True)
        body = await self._body(receive, request)
        return route, await self._write(scope, request, key, body, context, create=method == "POST")

    # --- parsing -------------------------------------------------------------------
    def _key(self, scope: Scope) -> str:
        raw_path: bytes | None = scope.get("raw_path")
        if raw_path is not None and b"%" in raw_path:
            try:
                key = unquote_to_bytes(raw_path.split(b"?", 1)[0][4:]).decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(400, "invalid_key", "a key must be valid UTF-8") from None
        else:
            key = scope["path"][4:]
        if len(key.encode("utf-8", "surrogatepass")) > self.max_key_bytes:
            raise BadRequest(
                414, "key_too_long", f"a key is at most {self.max_key_bytes} bytes of UTF-8"
            )
        try:
            check_key(key, self.max_key_bytes)
        except InvalidKey as exc:
            raise BadRequest(400, "invalid_key", str(exc)) from None
        return key

    async def _body(self, receive: Receive, request: KVRequest) -> bytes:
        limit = self.max_value_bytes
        if request.content_length is not None:
            try:
                declared = int(request.content_length)
            except ValueError:
                raise BadRequest(400, "bad_request", "Content-Length is not a number") from None
            if declared > limit:
                raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest(400, "bad_request", "the client went away mid-body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # --- reads ---------------------------------------------------------------------
    async def _elsewhere(self, scope: Scope, request: KVRequest, key: str) -> Reply | None:
        """None when this node serves ``key``; else the answer: unavailable, or an owner's."""
        if not self.runner.running:
            return _unavailable()
        owners = self.runner.node.route(key)
        if owners is not None:
            return await self._forward(scope, request, owners, b"")
        return None

    async def _get(self, scope: Scope, request: KVRequest, key: str) -> Reply:
        if (answer := await self._elsewhere(scope, request, key)) is not None:
            return answer
        runner = self.runner
        node = runner.node
        record = node.view.get(key)
        if record is None:
            if (
                runner.settings.sharding
                and not request.forwarded
                and node.view.version(key) is None
            ):
                # A new owner may not hold the key yet while ranges move: ask the others.
                others = [m for m in node.owners(key) if m != runner.node_id]
                answer = await self._forward(scope, request, others, b"")
                if answer.status == 200:
                    return answer
            return error_reply(404, "not_found", f"no value for key {key!r}")
        context = self._context_of(key, record)
        etag = f'"{context}"'.encode()
        headers: Headers = [
            (b"content-type", record.content_type.encode("latin-1")),
            (b"etag", etag),
            (b"x-rumor-context", context.encode()),
        ]
        return Reply(200, headers, record.value)

    async def _meta(self, scope: Scope, request: KVRequest, key: str) -> Reply:
        if (answer := await self._elsewhere(scope, request, key)) is not None:
            return answer
        node = self.runner.node
        record = node.view.version(key)
        if record is None:
            return error_reply(404, "not_found", f"this node has never seen key {key!r}")
        context = self._context_of(key, record)
        discarded = node.view.discarded(key)
        data = {
            "key": key,
            "content_type": record.content_type,
            "size": len(record.value),
            "value_sha256": hashlib.sha256(record.value).hexdigest(),
            "clock": record.clock,
            "hlc": record.hlc,
            "hlc_ms": physical_ms(record.hlc),
            "origin": record.origin,
            "tombstone": record.tombstone,
            "context": context,
            "discarded": None
            if discarded is None
            else {
                "value_sha256": discarded.value_sha256,
                "clock": discarded.clock,
                "hlc": discarded.hlc,
                "origin": discarded.origin,
                "tombstone": discarded.tombstone,
            },
            "node": self.runner.node_id,
        }
        return json_reply(200, data, [(b"etag", f'"{context}"'.encode())])

    async def _list(self, scope: Scope, request: KVRequest) -> Reply:
        query = _query(scope)
        prefix, after = query.get("prefix", ""), query.get("after", "")
        limit = _limit(query.get("limit"))
        runner = self.runner
        if not runner.running:
            return _unavailable()
        keys = runner.node.view.list_keys(prefix, limit, after)
        if runner.settings.sharding and not request.forwarded:
            keys = await self._gather(scope, request, keys, limit)
        return json_reply(200, {"keys": keys, "next": keys[-1] if len(keys) == limit else None})

    async def _gather(
        self, scope: Scope, request: KVRequest, local: list[str], limit: int
    ) -> list[str]:
        """Sharded listing: merge every live member's page (each holds only its ranges)."""
        forwarder = self._forwarder()
        if forwarder is None:
            return local
        node = self.runner.node
        path_qs = "/kv?" + scope.get("query_string", b"").decode("latin-1")
        found = set(local)
        peers = node.view.peers()
        answers = await asyncio.gather(
            *(forwarder.get_json(p, path_qs, request.raw) for p in peers)
        )
        for answer in answers:
            if isinstance(answer, dict) and isinstance(answer.get("keys"), list):
                found.update(k for k in answer["keys"] if isinstance(k, str))
        return sorted(found)[:limit]

    def _context_of(self, key: str, record: Record) -> str:
        cached = self._contexts.get(key)
        if cached is not None and cached[0] is record:
            return cached[1]
        context = encode_context(record.clock, record.hlc)
        if len(self._contexts) >= CONTEXT_CACHE_MAX:
            self._contexts.clear()
        self._contexts[key] = (record, context)
        return context

    # --- writes --------------------------------------------------------------------
    async def _write(
        self,
        scope: Scope,
        request: KVRequest,
        key: str,
        body: bytes,
        context: Context | None,
        *,
        create: bool = False,
        delete: bool = False,
    ) -> Reply:
        runner = self.runner
        if not runner.running:
            return _unavailable()
        # A forwarded write is ours to coordinate even if our ring view disagrees with the
        # forwarder's (views differ briefly while membership changes): never bounce it.
        owners = None if request.forwarded else runner.node.route(key)
        if owners is not None:
            return await self._forward(scope, request, owners, body)
        op = WriteOp(
            key,
            body,
            request.content_type,
            context,
            create=create,
            delete=delete,
            coordinate=request.forwarded,
        )
        try:
            await runner.submit(op)
        except Overloaded as exc:
            return error_reply(503, "overloaded", str(exc), [(b"retry-after", b"1")])
        result = op.result
        if op.error is not None or result is None:
            if isinstance(op.error, InvalidKey):
                return error_reply(400, "invalid_key", str(op.error))
            return error_reply(503, "unavailable", f"the write was not stored: {op.error}")
        status = result.status
        if status is WriteStatus.NOT_OWNER:
            return await self._forward(scope, request, list(result.owners), body)
        record = result.record
        if status is WriteStatus.EXISTS:
            return error_reply(409, "exists", f"key {key!r} already has a live value here")
        if status is WriteStatus.PRECONDITION_FAILED:
            return error_reply(
                412, "precondition_failed", "If-Match does not name the current version"
            )
        if status is WriteStatus.NOT_FOUND or record is None:
            return error_reply(404, "not_found", f"no value for key {key!r}")
        context_text = self._context_of(key, record)
        etag = [(b"etag", f'"{context_text}"'.encode())]
        if delete:
            data = {"key": key, "deleted": True, "context": context_text}
            data |= {"hlc": record.hlc, "origin": record.origin}
            return json_reply(200, data, etag)
        data = {"key": key, "context": context_text, "hlc": record.hlc, "origin": record.origin}
        return json_reply(201 if status is WriteStatus.CREATED else 200, data, etag)

    async def _forward(
        self, scope: Scope, request: KVRequest, owners: list[str], body: bytes
    ) -> Reply:
        forwarder = self._forwarder()
        if request.forwarded or forwarder is None:
            return error_reply(
                503, "not_owner", "this node does not own the key and will not forward twice"
            )
        path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        path_qs = path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        answer = await forwarder.forward(owners, scope["method"], path_qs, request.raw, body)
        if answer is None:
            return error_reply(503, "owners_unavailable", f"no owner answered: {', '.join(owners)}")
        return Reply(answer.status, answer.headers, answer.body)


def _query(scope: Scope) -> dict[str, str]:
    raw: bytes = scope.get("query_string", b"")
    if not raw:
        return {}
    try:
        return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(400, "bad_request", "the query string is not valid UTF-8") from None


def _limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        raise BadRequest(400, "bad_request", "limit must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(400, "bad_request", f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _context(if_match: bytes | None) -> Context | None:
    if if_match is None:
        return None
    try:
        return decode_context(if_match.decode("latin-1"))
    except InvalidContext as exc:
        raise BadRequest(400, "invalid_context", str(exc)) from None


def _too_large(limit: int) -> BadRequest:
    return BadRequest(413, "value_too_large", f"a value is at most {limit} bytes")


def _unavailable() -> Reply:
    return error_reply(503, "unavailable", "the node is starting or stopping")
