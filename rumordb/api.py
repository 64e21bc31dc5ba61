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
from typing import NamedTuple
from urllib.parse import quote, urlencode

from rumordb.errors import InvalidKey, ResponseError, error_from
from rumordb.types import Change, Deleted, KeyPage, Value, Version, Written

PAGE_MAX = 1000  # the node's largest listing page
TTL_MAX_S = 365 * 24 * 3600  # the node's longest TTL (``rumordb.core.record.MAX_TTL_S``)
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
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 1 <= ttl_s <= TTL_MAX_S:
            raise ValueError(f"ttl_s must be a whole number of seconds from 1 to {TTL_MAX_S}")
        target += f"?ttl={ttl_s}"
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


def document(response: Response) -> dict[str, object]:
    return raise_for_error(response).json()


def change(event: dict[str, object], node: str) -> Change:
    """A ``change`` event of a watch stream (``rumordb.live.watch``) as a ``Change``."""
    raw = event.get("value")
    value: bytes | None = None
    if isinstance(raw, str):
        value = base64.b64decode(raw) if event.get("encoding") == "base64" else raw.encode()
    expires = event.get("expires_ms")
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
    )
