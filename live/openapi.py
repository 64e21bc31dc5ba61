"""The node's API description: an OpenAPI schema that tells the truth, and offline docs.

FastAPI describes its own routes; the raw ASGI routes (``/kv``, ``/kv/{key}``,
``/gossip``) are described here by hand (``raw_paths``), with their response schemas, the
bounds of their parameters (from the node's settings) and every status they can answer.
Every operation also lists the answers the HTTP edge gives before any route runs
(``live.http_protocol``: 408 a stalled request, 431 a head too large, 503 over the
connection cap). Every error is the one JSON body, ``Error``.

``/docs`` (Swagger UI) and ``/redoc`` load their scripts and styles from the node itself
(``/docs-assets``, the files the pinned ``fastapi-offline`` package ships), never from a
CDN: the docs work on a machine with no way out.
"""

from __future__ import annotations

from http import HTTPStatus
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from rumordb.core.record import MAX_TTL_S
from rumordb.live.kv import MAX_CONTENT_TYPE_BYTES, MAX_LIMIT

ASSETS_URL = "/docs-assets"
ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
}
# What each status means on this API (one text per status, so every route agrees).
MEANING = {
    400: "bad request: key, query, context, Content-Type or duplicate credentials",
    401: "no API key or an unknown one (or, on /gossip, not sealed with the cluster secret)",
    403: "a reader key cannot do this; use an admin key",
    404: "absent or deleted",
    408: "the request head or body did not arrive in time (the edge's deadlines)",
    409: "a live value already exists on this node",
    410: "position_lost: the node no longer holds the changes since ?from (watch)",
    412: "If-Match does not name the current version",
    413: "the body is too large",
    414: "the key is too long",
    429: "too many failed authentications from this address; see Retry-After",
    431: "the request head is too large",
    503: "unavailable: starting or stopping, storage failed, owners unreachable, or over the connection cap (or too many watchers)",
}
EDGE_STATUSES = (408, 431, 503)  # answered by live.http_protocol on any path
AUTH_STATUSES = (400, 401, 429)
SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
Responses = dict[int | str, Any]
RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}


def errors(*statuses: int, head: bool = False) -> Responses:
    """OpenAPI responses for error ``statuses``, each the JSON ``Error`` (none for HEAD)."""
    responses: Responses = {}
    for status in statuses:
        response: dict[str, Any] = {"description": MEANING.get(status, HTTPStatus(status).phrase)}
        if not head:
            response["content"] = {"application/json": {"schema": ERROR_REF}}
        if status in (429, 503):
            response["headers"] = RETRY_AFTER
        responses[str(status)] = response
    return responses


def answers(ok: dict[str, Any], *statuses: int, head: bool = False) -> Responses:
    """The success answers ``ok``, then the JSON errors ``statuses``."""
    responses: Responses = {}
    responses.update(ok)
    responses.update(errors(*statuses, head=head))
    return responses


def _json(description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}} | extra


ETAG = {"ETag": {"schema": {"type": "string"}, "description": "the version context, quoted"}}
VALUE_HEADERS = ETAG | {"X-Rumor-Context": {"schema": {"type": "string"}}}
WRITTEN = {
    "type": "object",
    "required": ["key", "context", "hlc", "origin"],
    "properties": {
        "key": {"type": "string"},
        "context": {"type": "string"},
        "hlc": {"type": "integer", "minimum": 0},
        "origin": {"type": "string"},
        "deleted": {"type": "boolean"},
    },
}
LISTING = {
    "type": "object",
    "required": ["keys", "next"],
    "properties": {
        "keys": {"type": "array", "items": {"type": "string"}},
        "next": {"type": ["string", "null"]},
    },
}


FLAG = {"type": "boolean"}
EXPORTED = {
    "type": "object",
    "required": ["items", "next"],
    "properties": {
        "items": {"type": "array", "items": {"type": "object"}},
        "next": {"type": ["string", "null"]},
    },
}
PAGE = {"oneOf": [LISTING, EXPORTED]}
# ?watch=true: one JSON event per line (start, change, heartbeat, overflow) until closed.
STREAM = {"application/x-ndjson": {"schema": {"type": "string"}}}
BATCH_RESULTS = {
    "type": "object",
    "required": ["results", "applied"],
    "properties": {
        "results": {"type": "array", "items": {"type": "object"}},
        "applied": {"type": "integer", "minimum": 0},
    },
}


def _operation(summary: str, responses: Responses, **extra: Any) -> dict[str, Any]:
    return {
        "tags": ["kv"],
        "summary": summary,
        "security": SECURITY,
        "responses": responses,
    } | extra


def raw_paths(max_key_bytes: int, max_value_bytes: int) -> dict[str, Any]:
    """The raw ASGI routes, bounded by this node's limits."""
    key = {
        "name": "key",
        "in": "path",
        "required": True,
        "description": f"1 to {max_key_bytes} bytes of UTF-8, no control characters",
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": max_key_bytes // 4,  # characters: at most 4 bytes each
            "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$",
        },
    }
    if_match = {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "A version context (the ETag) the write must descend from.",
    }
    content_type = {
        "name": "Content-Type",
        "in": "header",
        "required": False,
        "description": "stored with the value and given back on reads",
        "schema": {"type": "string", "maxLength": MAX_CONTENT_TYPE_BYTES},
    }
    # Any media type is stored as given; two stand for them all here, because a fuzzer
    # that reads ``*/*`` sends YAML or JSON bodies and then parses the raw value it gets
    # back under that type (a value is bytes, whatever its Content-Type claims).
    body = {
        "required": True,
        "description": f"The raw value, at most {max_value_bytes} bytes, of any media type"
        " (its Content-Type is stored with it and given back on reads).",
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "text/plain": {"schema": {"type": "string"}},
        },
    }
    meta = {"name": "meta", "in": "query", "required": False, "schema": {"type": "boolean"}}
    read_errors = (*AUTH_STATUSES, 404, 414, 503)
    write_errors = (*AUTH_STATUSES, 403, 412, 414, 503)
    # The value comes back with the Content-Type it was written with, whatever it claims
    # (an "application/json" value need not be JSON): no schema can describe it.
    value = {
        "description": "the value with its Content-Type; with ?meta=true its version as JSON"
        " {key, content_type, size, value_sha256, clock, hlc, hlc_ms, origin, tombstone,"
        " context, discarded, node}",
        "headers": VALUE_HEADERS,
        "content": {"*/*": {}},
    }
    written = _json("written", WRITTEN, headers=ETAG)
    bounded = {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100},
    }
    text = {"type": "string", "maxLength": max_key_bytes // 4}
    listed = _json("a page of keys, or of exported items; with ?watch=true a stream", PAGE)
    listed["content"] |= STREAM
    ttl = {
        "name": "ttl",
        "in": "query",
        "required": False,
        "description": "the value expires this many seconds after its write",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_TTL_S},
    }
    return {
        "/kv": {
            "get": _operation(
                "List live keys (paginated); with ?export=true, pages of items (live.bulk);"
                " with ?watch=true, a stream of the changes this node applies (live.watch)",
                answers(
                    {"200": listed},
                    *AUTH_STATUSES,
                    410,
                    503,
                ),
                parameters=[
                    {"name": "prefix", "in": "query", "required": False, "schema": text},
                    {"name": "after", "in": "query", "required": False, "schema": text},
                    bounded,
                    {"name": "export", "in": "query", "required": False, "schema": FLAG},
                    {"name": "versions", "in": "query", "required": False, "schema": FLAG},
                    {"name": "watch", "in": "query", "required": False, "schema": FLAG},
                    {
                        "name": "from",
                        "in": "query",
                        "required": False,
                        "description": "watch: resume strictly after this position",
                        "schema": {"type": "string", "pattern": "^[0-9]+:[0-9]+$"},
                    },
                ],
            ),
            "post": _operation(
                "A batch of puts and deletes, applied in one group commit (see live.bulk)",
                answers(
                    {"200": _json("one result per item, in order", BATCH_RESULTS)},
                    *AUTH_STATUSES,
                    403,
                    413,
                    503,
                ),
                requestBody={
                    "required": True,
                    "description": "{items: [{op, key, value | value_text, content_type, "
                    "if_match, create, if_changed, ttl, expires_ms, version}]}, at most 1000 items "
                    "and 4 MiB",
                    "content": {
                        "application/json": {"schema": {"type": "object"}},
                        "application/msgpack": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
            ),
        },
        "/kv/{key}": {
            "get": _operation(
                "Read a value (raw bytes with its Content-Type), or its version with ?meta=true",
                answers({"200": value}, *read_errors),
                parameters=[key, meta],
            ),
            "head": _operation(
                "A read's status and headers, without the value",
                answers(
                    {"200": {"description": "present", "headers": VALUE_HEADERS}},
                    *read_errors,
                    head=True,
                ),
                parameters=[key, meta],
            ),
            "put": _operation(
                "Write a value (upsert)",
                answers({"200": written, "201": written}, *write_errors, 413),
                parameters=[key, if_match, content_type, ttl],
                requestBody=body,
            ),
            "post": _operation(
                "Create a value (409 if a live value exists on this node)",
                answers({"201": written}, *write_errors, 409, 413),
                parameters=[key, if_match, content_type, ttl],
                requestBody=body,
            ),
            "delete": _operation(
                "Delete a key (a replicated tombstone)",
                answers({"200": written}, *write_errors, 404),
                parameters=[key, if_match],
            ),
        },
        "/gossip": {
            "post": {
                "tags": ["cluster"],
                "summary": "Node-to-node messages (HMAC-sealed MessagePack envelope)",
                "requestBody": {
                    "required": True,
                    "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                },
                "responses": answers(
                    {
                        "200": {
                            "description": "sealed replies",
                            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                        },
                        "204": {"description": "no reply"},
                    },
                    400,
                    401,
                    413,
                    503,
                ),
            }
        },
    }


def document(app: FastAPI, max_key_bytes: int, max_value_bytes: int) -> None:
    """Install the schema (FastAPI's routes plus ``raw_paths``) and the offline docs."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schema.setdefault("paths", {}).update(raw_paths(max_key_bytes, max_value_bytes))
            for operations in schema["paths"].values():
                for method, operation in operations.items():
                    edge = errors(*EDGE_STATUSES, head=method == "head")
                    operation["responses"] = {**edge, **operation["responses"]}
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
            components.setdefault("securitySchemes", {}).update(
                {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                }
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    _offline_docs(app)


def _offline_docs(app: FastAPI) -> None:
    assets = files("fastapi_offline") / "static"
    app.mount(ASSETS_URL, StaticFiles(directory=str(assets)), name="docs-assets")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
