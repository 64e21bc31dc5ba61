"""The ``/kv`` hot path: parse a client request, hand it to the runner, answer its result.

Why raw ASGI: FastAPI's per-request dependency injection and pydantic cost about three
quarters of what uvicorn can serve. This handler reads the few headers it needs in one
pass over ``scope["headers"]``, checks the API key through the key store's cache, and
answers with pre-encoded bytes; it never builds a ``Request``.

One path per request: ``_dispatch`` parses (the key checked once, by ``core.check_key``:
414 too long, 400 otherwise), calls the runner (``write``, ``read``, ``list_keys``), and
one function per kind of answer maps every result the runner can return to a ``Reply``.
No protocol decision is made here: where to read, whom to ask, what a listing gathers
come from the core through the runner. A bad input raises ``HttpError`` (4xx).

Warm reads (``live.read_cache``): a plain ``GET``/``HEAD`` of a key whose last answer the
core marked as depending only on the stored version (``Local.token``) is answered from
that answer's rendered headers and value while the node still stores the same version;
it is authenticated like any request (``Gate.check_asgi``) and counted as ``kv_get``.
Anything else (a query, an escaped key, a stopped node, a changed version) goes the whole way.

Value size is enforced while the body streams in (``live.asgi.read_body``): a declared
or accumulated size above ``max_value_bytes`` answers 413 at once.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import NamedTuple
from urllib.parse import parse_qsl, unquote_to_bytes

import msgspec

from rumordb.core import (
    InvalidContext,
    InvalidKey,
    Local,
    Record,
    WriteCommand,
    WriteResult,
    WriteStatus,
    check_key,
    decode_context,
    encode_context,
)
from rumordb.core.context import Context
from rumordb.core.hlc import pack, physical_ms
from rumordb.core.keyring import RESERVED_PREFIX, is_reserved
from rumordb.core.record import is_expired
from rumordb.core.vclock import VClock
from rumordb.live.asgi import (
    JSON_TYPE,
    Headers,
    Receive,
    Reply,
    Scope,
    Send,
    error_reply,
    json_reply,
    read_body,
    send_reply,
)
from rumordb.live.auth import Gate, Role
from rumordb.live.bulk import Bulk, is_msgpack, ttl_ms_of
from rumordb.live.errors import HttpError
from rumordb.live.forward import FORWARDED_HEADER, Forwarded, Unforwarded
from rumordb.live.metrics import LoopCounter, LoopHistogram, Metrics
from rumordb.live.read_cache import ReadCache, WarmRead
from rumordb.live.runner import NotStored, ReadAnswer, Runner, WriteAnswer
from rumordb.live.watch import stream

DEFAULT_CONTENT_TYPE = "application/octet-stream"
# A Content-Type is stored and replicated with its value and sent back as a header: it
# is bounded (RFC 6838 media types fit in far less) and must be printable ASCII.
MAX_CONTENT_TYPE_BYTES = 255
_CONTENT_TYPE_CHARS = re.compile(rb"^[\x20-\x7e\t]*$")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
CONTEXT_CACHE_MAX = 65_536
_FORWARDED = FORWARDED_HEADER.encode()
_json_encode = msgspec.json.Encoder().encode
_READ_HEADERS = frozenset(
    (b"x-api-key", b"authorization", b"content-type", b"content-length", b"if-match", _FORWARDED)
)
# Answers given often enough to build once (replies are never mutated once built).
_FORBIDDEN = error_reply(HttpError(403, "forbidden", "a reader key cannot write; use an admin key"))
_UNAVAILABLE = error_reply(HttpError(503, "unavailable", "the node is starting or stopping"))
# Refusals before the stored version is looked at (core.bounds, core.clock_watch).
_REFUSED = {
    WriteStatus.CONTEXT_AHEAD: error_reply(
        HttpError(
            400,
            "invalid_context",
            "the If-Match context carries a clock beyond this node's clock skew bound",
        )
    ),
    WriteStatus.CONTEXT_TOO_WIDE: error_reply(
        HttpError(
            400,
            "invalid_context",
            "the If-Match context names more nodes than this cluster has ever had",
        )
    ),
    WriteStatus.CLOCK_AHEAD: error_reply(
        HttpError(
            503,
            "clock_skew",
            "this node's clock is ahead of its peers' beyond the skew bound: its writes "
            "would be refused by them; write to another node (see /health)",
            ((b"retry-after", b"5"),),
        )
    ),
}


class KVRequest:
    """What the handler needs from one request, read in one pass over the headers.

    No ``__slots__``: the fields a request does not send keep their class defaults
    (immutable), so a plain GET stores only what it has (the miss path's cost)."""

    body = b""
    content_type: bytes | None = None  # checked by _content_type on writes only
    content_types = 0
    content_length: bytes | None = None
    if_match: bytes | None = None
    forwarded = False
    # The credentials too (``live.auth.Gate.check_credentials``): ASGI header names are
    # lower-case, and a second Authorization or X-API-Key is remembered, never dropped.
    authorization: bytes | None = None
    api_key: bytes | None = None
    credentials_duplicated = False

    def __init__(self, scope: Scope) -> None:
        # What forwarding relays (``live.forward.Relay``): this object is that relay.
        self.method: str = scope["method"]
        self.scope = scope  # path and query are read from it only when a request is relayed
        self.headers: Headers = scope["headers"]
        for name, value in self.headers:
            if name not in _READ_HEADERS:  # host, user-agent, accept...: one test each
                continue
            if name == b"x-api-key":
                if self.api_key is not None:
                    self.credentials_duplicated = True
                self.api_key = value
            elif name == b"authorization":
                if self.authorization is not None:
                    self.credentials_duplicated = True
                self.authorization = value
            elif name == b"content-type":
                self.content_type = value
                self.content_types += 1
            elif name == b"content-length":
                self.content_length = value
            elif name == b"if-match":
                self.if_match = value
            elif name == _FORWARDED:
                self.forwarded = True

    @property
    def path(self) -> bytes:
        """The raw path, percent-encoding kept."""
        raw: bytes | None = self.scope.get("raw_path")
        return raw or self.scope["path"].encode()

    @property
    def query(self) -> bytes:
        raw: bytes = self.scope.get("query_string", b"")
        return raw


class KVHandler:
    """ASGI app for ``/kv`` and ``/kv/{key}``."""

    def __init__(
        self,
        runner: Runner,
        gate: Gate,
        metrics: Metrics,
        max_value_bytes: int,
        max_key_bytes: int,
    ) -> None:
        self.runner = runner
        self.gate = gate
        self.metrics = metrics
        self.max_value_bytes = max_value_bytes
        self.max_key_bytes = max_key_bytes
        # key -> the version answered last (its hlc, clock, context): a read gets a fresh
        # copy of the stored record (core.record_table), so equal versions are found by
        # value; an HLC and a clock name one version, so they name its context.
        self._contexts: dict[str, _Version] = {}
        self._reads = ReadCache()  # answers of plain reads, kept while their version is
        self._warm_meter: tuple[LoopCounter, LoopHistogram] | None = None
        self.bulk = Bulk(runner, max_value_bytes, max_key_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method = scope["method"]
        head = method == "HEAD"  # answered like GET, without the body (RFC 9110 9.3.2)
        if head:
            method = "GET"
        key = scope["path"][4:]  # as ``_key`` reads it; only checked keys are ever kept
        warm = self._reads.get(key) if method == "GET" else None
        if (  # kept, the node still stores its version (``live.read_cache``), a plain read
            warm is not None
            and warm.token is self.runner.version_token(key)
            and self._plain_read(scope)
        ):
            try:  # a key that can read this one: the gate is the same as on the full path
                self.gate.check_asgi(scope["headers"], scope.get("client"))
            except HttpError as refused:
                refusal = error_reply(refused)
                await send_reply(send, refusal, head=head)
                self.metrics.observe_request("kv", refusal.status, time.perf_counter() - started)
                return
        else:
            try:
                route, reply = await self._dispatch(scope, receive, method, send)
            except HttpError as exc:
                route, reply = "kv", error_reply(exc)
                if scope["path"] in ("/kv", "/kv/") and method == "GET":
                    route = "kv_list"
            except Exception:  # a bug: the boundary answers 500; count it here, let it go
                listing = scope["path"] in ("/kv", "/kv/") and method == "GET"
                self.metrics.observe_request(
                    "kv_list" if listing else "kv", 500, time.perf_counter() - started
                )
                raise
            if reply is None:  # a watch stream, answered as it went
                return
            if not isinstance(reply, WarmRead):
                await send_reply(send, reply, head=head)
                self.metrics.observe_request(route, reply.status, time.perf_counter() - started)
                return
            warm = reply  # a value read here (kept or not): sent as a kept answer is
        # A rendered read (``live.read_cache.WarmRead``), counted as ``kv_get`` 200 as
        # ``observe_request`` would.
        start = {"type": "http.response.start", "status": 200, "headers": [*warm.headers]}
        await send(start)
        await send({"type": "http.response.body", "body": b"" if head else warm.body})
        count, latency = self._warm_meter or self._meter()
        count.value += 1
        latency.observe(time.perf_counter() - started)

    def _meter(self) -> tuple[LoopCounter, LoopHistogram]:
        """What a warm read counts, as ``observe_request("kv_get", 200, ...)`` would (made
        at the first warm read: a slow read answered 200 before, so nothing new shows)."""
        self._warm_meter = self.metrics.request_meter("kv_get", 200)
        return self._warm_meter

    def _plain_read(self, scope: Scope) -> bool:
        """Whether a kept answer may answer this read: a running node, no query string,
        no percent-escapes (such a key or query is parsed the whole way)."""
        if scope.get("query_string") or not self.runner.running:
            return False
        raw_path: bytes | None = scope.get("raw_path")
        return raw_path is None or b"%" not in raw_path

    async def _dispatch(
        self, scope: Scope, receive: Receive, method: str, send: Send
    ) -> tuple[str, Reply | WarmRead | None]:
        request = KVRequest(scope)
        try:  # the one gate of every route (duplicates 400, failures 401/429)
            role = self.gate.check_credentials(
                request.authorization,
                request.api_key,
                request.credentials_duplicated,
                (scope.get("client") or (None,))[0],
            )
        except HttpError as refused:
            return "kv", error_reply(refused)
        listing = scope["path"] in ("/kv", "/kv/")
        if not self.runner.running and not (
            self.runner.loading and method == "GET" and not listing
        ):  # while the start-up load runs, single-key reads are served (``live.runner``)
            return "kv", _UNAVAILABLE
        if listing and scope["method"] == "GET":  # HEAD: no stream
            query = _query(scope)
            if _flag(query.get("watch"), "watch"):  # a reader key suffices
                await self._watch(query, scope, receive, send)
                return "kv_watch", None
        if listing and method in ("GET", "POST"):
            return await self._bulk(scope, receive, request, role)
        if method == "GET":
            key = self._key(scope)
            meta = False
            if scope.get("query_string"):
                meta = _flag(_query(scope).get("meta"), "meta")
            read = await self.runner.read(key, request, meta=meta)
            if meta:
                return "kv_meta", self._meta_reply(key, read)
            return "kv_get", self._read_reply(key, read)
        if method not in ("PUT", "POST", "DELETE"):
            raise HttpError(
                405,
                "method_not_allowed",
                f"{method} is not allowed on /kv/{{key}}",
                ((b"allow", b"GET, HEAD, PUT, POST, DELETE"),),
            )
        route = "kv_" + method.lower()
        if role is not Role.ADMIN:
            return route, _FORBIDDEN
        command = await self._command(scope, receive, request)
        answer = await self.runner.write(command, request)
        self._reads.forget(command.key)  # its kept answer is dead: free it (and its version)
        return route, self._write_reply(command, answer)

    # --- parsing -------------------------------------------------------------------
    async def _command(self, scope: Scope, receive: Receive, request: KVRequest) -> WriteCommand:
        """The write a PUT, POST or DELETE asks for, its body read whole (and bounded)."""
        key = self._key(scope)
        context = _context(request.if_match)
        method = request.method
        content_type = DEFAULT_CONTENT_TYPE
        if method != "DELETE":
            # A Content-Type seen before was checked then (one given: the common case).
            known = _KNOWN_TYPES.get(request.content_type) if request.content_types == 1 else None
            content_type = known or _content_type(request.content_type, request.content_types)
            request.body = await read_body(receive, self.max_value_bytes, request.content_length)
        ttl_ms = _ttl_ms(_query(scope).get("ttl"), method) if scope.get("query_string") else 0
        return WriteCommand(
            key,
            request.body,
            content_type,
            context,
            create=method == "POST",
            delete=method == "DELETE",
            # Forwarded here: ours to coordinate even if our ring view disagrees with the
            # forwarder's (views differ briefly while membership changes): never bounce it.
            coordinate=request.forwarded,
            ttl_ms=ttl_ms,
        )

    def _key(self, scope: Scope) -> str:
        raw_path: bytes | None = scope.get("raw_path")
        if raw_path is not None and b"%" in raw_path:
            try:
                key = unquote_to_bytes(raw_path.split(b"?", 1)[0][4:]).decode("utf-8")
            except UnicodeDecodeError:
                raise HttpError(400, "invalid_key", "a key must be valid UTF-8") from None
        else:
            key = scope["path"][4:]
        try:
            check_key(key, self.max_key_bytes)
        except InvalidKey as exc:
            if exc.too_long:
                raise HttpError(414, "key_too_long", str(exc)) from None
            raise HttpError(400, "invalid_key", str(exc)) from None
        if is_reserved(key):  # the keyring's keyspace: reachable only through /admin/keys
            detail = f"keys starting with {RESERVED_PREFIX!r} are reserved for the cluster"
            raise HttpError(403, "reserved_key", detail)
        return key

    async def _watch(
        self, query: dict[str, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Stream the changes applied here to keys starting with ``prefix`` (``live.watch``)."""
        prefix = query.get("prefix", "")
        hub = self.runner.watch
        watcher = hub.open(prefix, query.get("from") or None)  # 400/410/503 before streaming
        await stream(hub, watcher, self.runner.node_id, send, receive)

    async def _bulk(
        self, scope: Scope, receive: Receive, request: KVRequest, role: Role
    ) -> tuple[str, Reply]:
        """``GET /kv``: a listing, or an export page; ``POST /kv``: a batch (``live.bulk``)."""
        if request.method == "POST":
            if role is not Role.ADMIN:
                return "kv_batch", _FORBIDDEN
            content_type = _content_type(request.content_type, request.content_types)
            reply = await self.bulk.batch(receive, request, content_type, request.content_length)
            return "kv_batch", reply
        query = _query(scope)
        if not _flag(query.get("export"), "export"):
            return "kv_list", await self._list(scope, request)
        binary = any(n == b"accept" and is_msgpack(v.decode("latin-1")) for n, v in request.headers)
        limit = _limit(query.get("limit"))
        return "kv_export", await self.bulk.export(query, request, binary, limit)

    async def _list(self, scope: Scope, request: KVRequest) -> Reply:
        query = _query(scope)
        prefix, after = query.get("prefix", ""), query.get("after", "")
        limit = _limit(query.get("limit"))
        keys = await self.runner.list_keys(prefix, limit, after, request)
        return json_reply(200, {"keys": keys, "next": keys[-1] if len(keys) == limit else None})

    # --- answers: every result the runner returns, mapped to a reply -----------------
    def _read_reply(self, key: str, answer: ReadAnswer) -> Reply | WarmRead:
        if not isinstance(answer, Local):
            return _relayed(answer)
        record = answer.record
        if record is None:
            return _not_found(f"no value for key {key!r}")
        version = self._version_of(key, record)
        content_type = (b"content-type", record.content_type.encode("latin-1"))
        value = record.value  # rendered once, Content-Length included, as a kept answer is
        length = (b"content-length", str(len(value)).encode())
        headers = [content_type, version.etag, version.context_header, length]
        token = answer.token  # not None: the core says it stays the answer until a write
        if token is not None and self._reads.admit(key, token):  # this version read before
            warm = self._reads.put(key, token, headers, value)
            if warm is not None:
                return warm
        return WarmRead(None, headers, value, 0)  # sent as a kept answer is, but not kept

    def _meta_reply(self, key: str, answer: ReadAnswer) -> Reply:
        if not isinstance(answer, Local):
            return _relayed(answer)
        record, discarded = answer.record, answer.discarded
        if record is None:
            return _not_found(f"this node has never seen key {key!r}")
        context = self._context_of(key, record)
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
            "expires_ms": physical_ms(record.expires) if record.expires else None,
            "expired": is_expired(record, pack(int(self.runner.now() * 1000))),
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

    def _write_reply(self, command: WriteCommand, answer: WriteAnswer) -> Reply:
        if isinstance(answer, WriteResult):  # applied (nearly every write): answered first
            status, record = answer.status, answer.record
            if record is not None and (status is WriteStatus.OK or status is WriteStatus.CREATED):
                return self._written(command, status, record)
        if isinstance(answer, NotStored):
            retry = ((b"retry-after", b"1"),) if answer.error == "overloaded" else ()
            return error_reply(HttpError(503, answer.error, answer.detail, retry))
        if not isinstance(answer, WriteResult):
            return _relayed(answer)
        key, status, record = command.key, answer.status, answer.record
        if status is WriteStatus.EXISTS:
            return error_reply(
                HttpError(409, "exists", f"key {key!r} already has a live value here")
            )
        if status is WriteStatus.PRECONDITION_FAILED:
            detail = "If-Match does not name the current version"
            if record is None:
                detail = f"If-Match names a version, but key {key!r} has none here"
            return error_reply(HttpError(412, "precondition_failed", detail))
        refused = _REFUSED.get(status)
        if refused is not None:
            return refused
        if status is WriteStatus.NOT_FOUND or record is None:
            return _not_found(f"no value for key {key!r}")
        context = self._context_of(key, record)
        etag = [(b"etag", f'"{context}"'.encode())]
        data: dict[str, object] = {"key": key}
        if command.delete:
            data["deleted"] = True
        data |= {"context": context, "hlc": record.hlc, "origin": record.origin}
        return json_reply(201 if status is WriteStatus.CREATED else 200, data, etag)

    def _written(self, command: WriteCommand, status: WriteStatus, record: Record) -> Reply:
        """200 (201: created) with the new version's context, also as its ETag."""
        key = command.key
        version = self._new_version(key, record)
        data: dict[str, object] = {"key": key, "deleted": True} if command.delete else {"key": key}
        data["context"] = version.context
        data["hlc"] = record.hlc
        data["origin"] = record.origin
        code = 201 if status is WriteStatus.CREATED else 200
        return Reply(code, [JSON_TYPE, version.etag], _json_encode(data))

    def _context_of(self, key: str, record: Record) -> str:
        return self._version_of(key, record).context

    def _version_of(self, key: str, record: Record) -> _Version:
        cached = self._contexts.get(key)
        if cached is not None and cached.hlc == record.hlc and cached.clock == record.clock:
            return cached
        return self._new_version(key, record)

    def _new_version(self, key: str, record: Record) -> _Version:
        """``_version_of`` a version not answered yet (a write's: no look-up first)."""
        context = encode_context(record.clock, record.hlc)
        if len(self._contexts) >= CONTEXT_CACHE_MAX:
            self._contexts.clear()
        version = self._contexts[key] = _Version(
            record.hlc,
            record.clock,
            context,
            (b"etag", f'"{context}"'.encode()),
            (b"x-rumor-context", context.encode()),
        )
        return version


class _Version(NamedTuple):
    """The version of a key answered last, with its context and header pairs built once."""

    hlc: int
    clock: VClock
    context: str
    etag: tuple[bytes, bytes]
    context_header: tuple[bytes, bytes]


def _relayed(answer: Forwarded | Unforwarded) -> Reply:
    if isinstance(answer, Forwarded):
        return Reply(answer.status, answer.headers, answer.body)
    if answer.twice:
        detail = "this node does not own the key and will not forward twice"
        return error_reply(HttpError(503, "not_owner", detail))
    detail = f"no owner answered: {', '.join(answer.owners)}"
    return error_reply(HttpError(503, "owners_unavailable", detail))


def _not_found(detail: str) -> Reply:
    return error_reply(HttpError(404, "not_found", detail))


def _query(scope: Scope) -> dict[str, str]:
    raw: bytes = scope.get("query_string", b"")
    if not raw:
        return {}
    try:  # strict: a percent-escape that is not UTF-8 is refused, never replaced by U+FFFD
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise HttpError(400, "bad_request", "the query string is not valid UTF-8") from None
    query = dict(pairs)
    if len(query) != len(pairs):
        raise HttpError(400, "bad_request", "a query parameter is given more than once")
    return query


def _content_type(raw: bytes | None, given: int) -> str:
    """The Content-Type a write stores: bounded, printable ASCII, given at most once."""
    if given > 1:
        raise HttpError(400, "invalid_content_type", "Content-Type is given more than once")
    if raw is None or raw == b"":
        return DEFAULT_CONTENT_TYPE
    if len(raw) > MAX_CONTENT_TYPE_BYTES:
        detail = f"Content-Type is at most {MAX_CONTENT_TYPE_BYTES} bytes"
        raise HttpError(400, "invalid_content_type", detail)
    if not _CONTENT_TYPE_CHARS.match(raw):
        detail = "Content-Type must be printable ASCII (no control characters)"
        raise HttpError(400, "invalid_content_type", detail)
    content_type = raw.decode("ascii")
    if len(_KNOWN_TYPES) >= MAX_KNOWN_TYPES:  # bounded: a client sending many types
        _KNOWN_TYPES.clear()
    _KNOWN_TYPES[raw] = content_type
    return content_type


# Content-Type header values that passed ``_content_type`` -> what it returned for them.
MAX_KNOWN_TYPES = 256
_KNOWN_TYPES: dict[bytes | None, str] = {}


_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no", "")


def _flag(text: str | None, name: str) -> bool:
    """A boolean query parameter; anything but true/1/yes or false/0/no is a 400, not a
    silent "no" (``watch=ture`` would otherwise answer a listing)."""
    if text is None:
        return False
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise HttpError(400, "bad_request", f"{name} must be true or false")


def _ttl_ms(text: str | None, method: str) -> int:
    """``ttl=SECONDS`` (a whole number, 1 to ``MAX_TTL_S``) in milliseconds; 0 without."""
    if text is None:
        return 0
    if method == "DELETE":
        raise HttpError(400, "bad_request", "ttl applies to PUT and POST, not DELETE")
    return ttl_ms_of(int(text) if text.isascii() and text.isdigit() else 0)  # 0: refused


def _limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        raise HttpError(400, "bad_request", "limit must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise HttpError(400, "bad_request", f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _context(if_match: bytes | None) -> Context | None:
    if if_match is None:
        return None
    try:
        return decode_context(if_match.decode("latin-1"))
    except InvalidContext as exc:
        raise HttpError(400, "invalid_context", str(exc)) from None
