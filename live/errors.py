"""Errors at the HTTP edge: one error type, one JSON body, one translator, one boundary.

Every route (``/kv``, ``/gossip`` and the FastAPI routes) answers an error the same way:
a status, ``{"error": code, "detail": text}`` as JSON, and maybe a few headers. Code
that finds a client or peer error raises ``HttpError``; ``translate`` turns any
exception into one (Starlette's ``HTTPException`` and FastAPI's validation errors
included; anything else is a bug: 500, logged); ``ErrorBoundary`` is the outermost
layer of the app and the only catch-all, so an exception from any route ends as JSON.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

log = structlog.get_logger("rumor.http")

_json = msgspec.json.Encoder()
ErrorHeaders = tuple[tuple[bytes, bytes], ...]


class HttpError(Exception):
    """An error answer: ``status`` with ``{"error": error, "detail": detail}``."""

    def __init__(self, status: int, error: str, detail: str, headers: ErrorHeaders = ()) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers

    def body(self) -> bytes:
        return error_body(self.error, self.detail)


def error_body(error: str, detail: str) -> bytes:
    """The one JSON error body of every route."""
    return _json.encode({"error": error, "detail": detail})


def translate(exc: BaseException, path: object = None) -> HttpError:
    """Any exception as the error answer a client gets; logs the ones that are bugs."""
    if isinstance(exc, HttpError):
        return exc
    if isinstance(exc, HTTPException):
        headers = tuple(
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in (exc.headers or {}).items()
        )
        return HttpError(exc.status_code, _error_name(exc.status_code), str(exc.detail), headers)
    if isinstance(exc, RequestValidationError):
        return HttpError(400, "invalid_request", _validation_detail(exc))
    log.error("request_failed", path=path, error=repr(exc), exc_info=exc)
    return HttpError(500, "internal_error", "unexpected server error (logged)")


def _error_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _validation_detail(exc: RequestValidationError) -> str:
    errors: list[dict[str, Any]] = list(exc.errors())
    return "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors
    )


class ErrorBoundary:
    """Outermost ASGI layer: an exception from any route becomes its JSON error answer.

    Pure ASGI and one ``try`` per request, so the hot path pays next to nothing for it
    (Starlette's ``ServerErrorMiddleware`` and a second catch-all used to sit here). It
    does not wrap ``send`` to learn whether an answer had started (two more awaits per
    request): when it had, sending the error fails, and the original exception goes on
    to the server, which closes the connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            if scope["type"] != "http":
                raise
            await answer_exception(exc, scope, send)


async def answer_exception(exc: Exception, scope: Scope, send: Send) -> None:
    """The boundary's answer to ``exc`` escaping an HTTP request (also used by
    ``live.app.NodeApp``, which calls ``/kv`` without the layers when it has no user
    middleware): its JSON error, or ``exc`` again if the answer had already started."""
    error = translate(exc, scope.get("path"))
    try:
        await send_error(send, error)
    except Exception:  # the answer had already started: let the server close it
        raise exc from None


async def send_error(send: Send, error: HttpError) -> None:
    body = error.body()
    headers = [
        (b"content-type", b"application/json"),
        *error.headers,
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
