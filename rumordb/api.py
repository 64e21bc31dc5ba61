"""A node's HTTP API as plain data: one function builds each request, one parses each answer.

No I/O here: ``Client`` and ``AsyncClient`` send what these functions build, so both
speak exactly the same protocol. Records are NamedTuples, not dataclasses: a command line
tool defines them at every start, and a NamedTuple class is about six times cheaper to
create. A ``Request`` says whether it is *idempotent*, i.e. safe
to send again when it is unknown whether the first attempt reached the node (see
``rumordb.retry``).

Keys are percent-encoded whole (``/`` included), so any valid key round-trips; ``.`` and
``..`` are sent as ``%2E`` and ``%2E%2E``, which HTTP libraries do not collapse as dot
segments (the node decodes them back).

>>> key_path("a/b c")
'/kv/a%2Fb%20c'
>>> key_path("..")
'/kv/%2E%2E'
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

from rumordb.errors import InvalidKey, ResponseError, error_from
from rumordb.types import (
    Change,
    Deleted,
    Exported,
    ItemResult,
    KeyPage,
    Op,
    Value,
    Version,
    Written,
)

PAGE_MAX = 1000  # the node's largest listing page
TTL_MAX_S = 365 * 24 * 3600  # the node's longest TTL (``rumordb.core.record.MAX_TTL_S``)
BATCH_MAX_ITEMS = 1000  # the node's limits on POST /kv (live.bulk)
BATCH_MAX_BYTES = 4 * 1024 * 1024
MSGPACK_TYPE = "application/msgpack"
_ITEM_OVERHEAD_BYTES = 64  # MessagePack field names and framing of one batch item
TEXT_TYPE = "text/plain; charset=utf-8"
BYTES_TYPE = "application/octet-stream"
_DOT_SEGMENTS = {".": "%2E", "..": "%2E%2E"}


class Request(NamedTuple):
    method: str
    target: str  # path and query, encoded
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    idempotent: bool = True


class Response(NamedTuple):
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    node: str

    def json(self) -> dict[str, object]:
        document = json.loads(self.body)
        if not isinstance(document, dict):
            raise ValueError(f"{self.node}: expected a JSON object, got {type(document).__name__}")
        return document


def raise_for_error(response: Response) -> Response:
    if response.status >= 400:
        raise error_from(response.status, response.body, response.headers, response.node)
    return response


def key_path(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidKey("a key is a non-empty string")
    try:
        encoded = quote(key, safe="")
    except UnicodeEncodeError:
        raise InvalidKey("a key must be valid UTF-8 text") from None
    return "/kv/" + _DOT_SEGMENTS.get(encoded, encoded)


def quoted_context(context: str) -> str:
    """An ``If-Match`` value: the context as an (unweak) entity tag."""
    return '"' + context.strip().strip('"') + '"'


def encode_value(value: bytes | str, content_type: str | None) -> tuple[bytes, str]:
    """Bytes and their type: text is UTF-8 ``text/plain`` unless told otherwise."""
    if isinstance(value, str):
        return value.encode("utf-8"), content_type or TEXT_TYPE
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), content_type or BYTES_TYPE
    raise TypeError(f"a value is bytes or str, not {type(value).__name__}")


# --- requests ---------------------------------------------------------------------------
def get(key: str) -> Request:
    return Request("GET", key_path(key))


def version(key: str) -> Request:
    return Request("GET", key_path(key) + "?meta=true")


def put(
    key: str,
    value: bytes | str,
    *,
    content_type: str | None = None,
    if_match: str | None = None,
    create: bool = False,
    ttl_s: int | None = None,
) -> Request:
    """An upsert (``PUT``) or a create (``POST``); never idempotent: see ``rumordb.retry``.

    Write options are query parameters, built here in one place: ``ttl_s`` (whole
    seconds, at most ``TTL_MAX_S``) makes the value expire that long after its write.

    >>> put("k", "v", ttl_s=60).target
    '/kv/k?ttl=60'
    """
    body, kind = encode_value(value, content_type)
    headers = [("Content-Type", kind)]
    if if_match is not None:
        headers.append(("If-Match", quoted_context(if_match)))
    method = "POST" if create else "PUT"
    target = key_path(key)
    if ttl_s is not None:
        target += f"?ttl={checked_ttl_s(ttl_s)}"
    return Request(method, target, tuple(headers), body, idempotent=False)


def delete(key: str, *, if_match: str | None = None) -> Request:
    headers = () if if_match is None else (("If-Match", quoted_context(if_match)),)
    return Request("DELETE", key_path(key), headers, idempotent=False)


def list_keys(prefix: str = "", limit: int = 100, after: str | None = None) -> Request:
    if not 1 <= limit <= PAGE_MAX:
        raise ValueError(f"limit must be between 1 and {PAGE_MAX}")
    query: dict[str, str | int] = {"prefix": prefix, "limit": limit}
    if after is not None:
        query["after"] = after
    return Request("GET", "/kv?" + urlencode(query))


def watch(prefix: str = "", position: str | None = None) -> Request:
    """``GET /kv?watch=true``: a stream of changes (``position``: resume after it).

    >>> watch("user/", "3:17").target
    '/kv?watch=true&prefix=user%2F&from=3%3A17'
    """
    query = {"watch": "true", "prefix": prefix}
    if position is not None:
        query["from"] = position
    return Request("GET", "/kv?" + urlencode(query))


def cluster() -> Request:
    return Request("GET", "/cluster")


def health() -> Request:
    return Request("GET", "/health")


def faults(change: dict[str, object] | None = None, *, heal: bool = False) -> Request:
    """``GET /faults``; with ``change``, ``POST`` it (merged); with ``heal``, ``DELETE``."""
    if heal:
        return Request("DELETE", "/faults")
    if change is None:
        return Request("GET", "/faults")
    body = json.dumps(change).encode()
    return Request("POST", "/faults", (("Content-Type", "application/json"),), body)


def create_api_key(name: str, role: str, expires_in_s: int | None = None) -> Request:
    """``POST /admin/keys``: not idempotent (a second attempt would be a second key)."""
    document: dict[str, object] = {"name": name, "role": role}
    if expires_in_s is not None:
        document["expires_in_s"] = expires_in_s
    body = json.dumps(document).encode()
    headers = (("Content-Type", "application/json"),)
    return Request("POST", "/admin/keys", headers, body, idempotent=False)


def api_keys() -> Request:
    return Request("GET", "/admin/keys")


def revoke_api_key(name: str) -> Request:
    return Request("DELETE", "/admin/keys/" + quote(name, safe=""))


def batch(ops: Sequence[Op]) -> Request:
    """``POST /kv`` with ``ops`` in MessagePack (``live.bulk`` documents the format).

    Idempotent (safe to resend) only when every item is: a restore (``version``) or an
    ``if_changed`` put changes nothing the second time.
    """
    import msgspec

    if len(ops) > BATCH_MAX_ITEMS:
        raise ValueError(f"a batch holds at most {BATCH_MAX_ITEMS} items; see api.chunks")
    items = [batch_item(op) for op in ops]
    body = msgspec.msgpack.encode({"items": items})
    # A TTL restarts at every write, so a put with one is not safe to send twice.
    safe = all(
        op.version is not None or (op.if_changed and op.op == "put" and op.ttl_s is None)
        for op in ops
    )
    return Request("POST", "/kv", (("Content-Type", MSGPACK_TYPE),), body, idempotent=safe)


def checked_ttl_s(ttl_s: object) -> int:
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 1 <= ttl_s <= TTL_MAX_S:
        raise ValueError(f"ttl_s must be a whole number of seconds from 1 to {TTL_MAX_S}")
    return ttl_s


def _expiry_fields(op: Op) -> dict[str, object]:
    """A put's ``ttl`` or ``expires_ms`` batch field (``rumordb.live.bulk``)."""
    if op.ttl_s is not None and op.expires_ms is not None:
        raise ValueError(f"put {op.key!r}: give ttl_s or expires_ms, not both")
    if op.ttl_s is not None:
        return {"ttl": checked_ttl_s(op.ttl_s)}
    if op.expires_ms is not None:
        ms = op.expires_ms
        if isinstance(ms, bool) or not isinstance(ms, int) or ms <= 0:
            raise ValueError(f"put {op.key!r}: expires_ms is a positive Unix time in ms")
        return {"expires_ms": ms}
    return {}


def batch_item(op: Op) -> dict[str, object]:
    if op.op not in ("put", "delete"):
        raise ValueError(f"a batch op is 'put' or 'delete', not {op.op!r}")
    key_path(op.key)  # the same checks as a single write
    item: dict[str, object] = {"op": op.op, "key": op.key}
    if op.op == "put":
        if op.value is None:
            raise ValueError(f"put {op.key!r}: a value is required")
        value, kind = encode_value(op.value, op.content_type)
        item["value"], item["content_type"] = value, kind
        if op.if_changed:
            item["if_changed"] = True
        if op.create:
            item["create"] = True
        item.update(_expiry_fields(op))
    elif op.ttl_s is not None or op.expires_ms is not None:
        raise ValueError(f"delete {op.key!r}: only a put expires")
    if op.if_match is not None:
        item["if_match"] = op.if_match.strip().strip('"')
    if op.version is not None:
        item["version"] = op.version
    return item


def chunks(ops: Iterable[Op], max_items: int = BATCH_MAX_ITEMS,
           max_bytes: int = BATCH_MAX_BYTES // 2) -> Iterator[list[Op]]:  # fmt: skip
    """``ops`` cut into batches the node accepts (``max_bytes``: a safe estimate)."""
    chunk: list[Op] = []
    size = 0
    for op in ops:
        value = op.value or b""
        cost = len(value) * (4 if isinstance(value, str) else 1) + len(op.key) * 4
        cost += _ITEM_OVERHEAD_BYTES + (1024 if op.version or op.if_match else 0)
        if chunk and (len(chunk) >= max_items or size + cost > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(op)
        size += cost
    if chunk:
        yield chunk


def export_page(
    prefix: str = "", after: str | None = None, limit: int = PAGE_MAX, versions: bool = False
) -> Request:
    """``GET /kv?export=true``: a page of live keys with values (MessagePack)."""
    if not 1 <= limit <= PAGE_MAX:
        raise ValueError(f"limit must be between 1 and {PAGE_MAX}")
    query: dict[str, str | int] = {"export": "true", "prefix": prefix, "limit": limit}
    if after is not None:
        query["after"] = after
    if versions:
        query["versions"] = "true"
    return Request("GET", "/kv?" + urlencode(query), (("Accept", MSGPACK_TYPE),))


# --- answers ----------------------------------------------------------------------------
def _field(document: dict[str, object], name: str, kind: type, node: str) -> object:
    value = document.get(name)
    if not isinstance(value, kind):
        raise ResponseError(200, "bad_answer", f"{name!r} missing from the answer", node)
    return value


def value(key: str, response: Response) -> Value:
    raise_for_error(response)
    headers = response.headers
    return Value(
        key=key,
        value=response.body,
        content_type=headers.get("content-type", BYTES_TYPE),
        context=headers.get("x-rumor-context") or headers.get("etag", "").strip('"'),
        node=response.node,
    )


def written(response: Response) -> Written:
    document = raise_for_error(response).json()
    node = response.node
    return Written(
        key=str(_field(document, "key", str, node)),
        context=str(_field(document, "context", str, node)),
        hlc=int(_field(document, "hlc", int, node)),  # type: ignore[call-overload]
        origin=str(_field(document, "origin", str, node)),
        created=response.status == 201,
    )


def deleted(response: Response) -> Deleted:
    document = raise_for_error(response).json()
    node = response.node
    return Deleted(
        key=str(_field(document, "key", str, node)),
        context=str(_field(document, "context", str, node)),
        hlc=int(_field(document, "hlc", int, node)),  # type: ignore[call-overload]
        origin=str(_field(document, "origin", str, node)),
    )


def version_of(response: Response) -> Version:
    document = raise_for_error(response).json()
    node = response.node
    clock = _field(document, "clock", dict, node)
    discarded = document.get("discarded")
    return Version(
        key=str(_field(document, "key", str, node)),
        content_type=str(document.get("content_type") or ""),
        size=int(_field(document, "size", int, node)),  # type: ignore[call-overload]
        value_sha256=str(_field(document, "value_sha256", str, node)),
        clock={str(k): int(v) for k, v in clock.items()},  # type: ignore[attr-defined]
        hlc=int(_field(document, "hlc", int, node)),  # type: ignore[call-overload]
        origin=str(_field(document, "origin", str, node)),
        tombstone=bool(document.get("tombstone")),
        context=str(_field(document, "context", str, node)),
        node=str(document.get("node") or ""),
        discarded=discarded if isinstance(discarded, dict) else None,
    )


def page(response: Response) -> KeyPage:
    document = raise_for_error(response).json()
    keys = _field(document, "keys", list, response.node)
    cursor = document.get("next")
    return KeyPage([str(k) for k in keys], None if cursor is None else str(cursor))  # type: ignore[attr-defined]


def _msgpack_document(response: Response) -> dict[str, Any]:
    import msgspec

    raise_for_error(response)
    try:
        document = msgspec.msgpack.decode(response.body)
    except msgspec.DecodeError as exc:
        raise ResponseError(response.status, "bad_answer", str(exc), response.node) from None
    if not isinstance(document, dict):
        raise ResponseError(response.status, "bad_answer", "not a map", response.node)
    return document


def batch_results(response: Response) -> list[ItemResult]:
    """Each item's outcome, in the order of the batch."""
    results = _msgpack_document(response).get("results")
    if not isinstance(results, list):
        raise ResponseError(200, "bad_answer", "'results' missing from the answer", response.node)
    return [
        ItemResult(
            str(r.get("key")),
            int(r.get("status", 0)),
            str(r.get("result", "")),
            r.get("context"),
            r.get("hlc"),
            r.get("origin"),
            r.get("detail"),
        )
        for r in results
        if isinstance(r, dict)
    ]


def exported(response: Response) -> tuple[list[Exported], str | None]:
    """An export page's items and the cursor of the next page (None at the end)."""
    document = _msgpack_document(response)
    items = [
        Exported(
            str(i["key"]),
            bytes(i["value"]),
            str(i.get("content_type") or BYTES_TYPE),
            i.get("version"),
            i.get("expires_ms"),
        )
        for i in document.get("items") or []
    ]
    cursor = document.get("next")
    return items, None if cursor is None else str(cursor)


def document(response: Response) -> dict[str, object]:
    return raise_for_error(response).json()


def change(event: dict[str, object], node: str) -> Change:
    """A ``change`` event of a watch stream (``rumordb.live.watch``) as a ``Change``."""
    raw = event.get("value")
    value: bytes | None = None
    if isinstance(raw, str):
        value = base64.b64decode(raw) if event.get("encoding") == "base64" else raw.encode()
    expires = event.get("expires_ms")
    applied = event.get("applied_us")
    return Change(
        key=str(_field(event, "key", str, node)),
        value=value,
        content_type=str(event.get("content_type") or ""),
        tombstone=bool(event.get("tombstone")),
        context=str(_field(event, "context", str, node)),
        hlc=int(_field(event, "hlc", int, node)),  # type: ignore[call-overload]
        origin=str(_field(event, "origin", str, node)),
        replicated=bool(event.get("replicated")),
        position=str(_field(event, "position", str, node)),
        expires_ms=expires if isinstance(expires, int) else None,
        node=node,
        applied_us=applied if isinstance(applied, int) else None,
    )
