"""The one error type, body, translator and boundary of the HTTP edge."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from rumordb.live.errors import ErrorBoundary, HttpError, error_body, translate

pytestmark = pytest.mark.anyio

Message = dict[str, Any]


def test_error_body_is_the_documented_json_shape() -> None:
    assert json.loads(error_body("exists", "key 'k' already has a live value")) == {
        "error": "exists",
        "detail": "key 'k' already has a live value",
    }


def test_translate_keeps_an_http_error_as_it_is() -> None:
    error = HttpError(409, "exists", "taken", ((b"x-a", b"1"),))
    assert translate(error) is error


def test_translate_names_a_starlette_http_exception_by_its_status() -> None:
    error = translate(HTTPException(405, "nope", {"allow": "GET"}))
    assert (error.status, error.error, error.detail) == (405, "method_not_allowed", "nope")
    assert error.headers == ((b"allow", b"GET"),)
    assert translate(HTTPException(599, "odd")).error == "error"


def test_translate_makes_a_validation_error_a_400() -> None:
    exc = RequestValidationError([{"loc": ("query", "limit"), "msg": "not an int"}])
    error = translate(exc)
    assert (error.status, error.error) == (400, "invalid_request")
    assert error.detail == "query.limit: not an int"


def test_translate_makes_a_bug_a_500_that_says_nothing_of_it() -> None:
    error = translate(RuntimeError("secret internals"))
    assert (error.status, error.error) == (500, "internal_error")
    assert "secret" not in error.detail


async def run(app: Any) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:  # as a server: one answer per request
        if message["type"] == "http.response.start" and sent:
            raise RuntimeError("Unexpected ASGI message 'http.response.start'")
        sent.append(message)

    await ErrorBoundary(app)({"type": "http", "path": "/x"}, receive, send)
    return sent


async def test_boundary_answers_a_raised_http_error_as_json_with_its_headers() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise HttpError(401, "unauthorized", "no key", ((b"www-authenticate", b"Bearer"),))

    start, body = await run(app)
    assert start["status"] == 401
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"www-authenticate"] == b"Bearer"
    assert int(headers[b"content-length"]) == len(body["body"])
    assert json.loads(body["body"]) == {"error": "unauthorized", "detail": "no key"}


async def test_boundary_turns_a_bug_into_a_500_and_lets_answers_through() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise KeyError("bug")

    start, body = await run(broken)
    assert start["status"] == 500 and json.loads(body["body"])["error"] == "internal_error"

    async def fine(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    assert [m.get("status") for m in await run(fine)] == [204, None]


async def test_boundary_reraises_when_the_answer_had_already_started() -> None:
    async def half(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("mid-answer")

    with pytest.raises(RuntimeError, match="mid-answer"):
        await run(half)
