"""The raw-ASGI vocabulary of the HTTP edge: a reply, sending it, reading a bounded body.

The hot routes (``/kv``, ``/gossip``) speak ASGI directly (no ``Request`` objects, no
dependency injection); every answer they give is a ``Reply`` sent by ``send_reply``.

One bounded body reader serves every route that takes a body. Its rules:

* a declared ``Content-Length`` above the limit answers 413 before any byte is read;
* an accumulated size above the limit answers 413 at once, without reading the rest;
* a client that disconnects mid-body gets ``400 client_disconnected`` (sent into the
  void: nobody reads it, but the request ends the same way on every route, is counted
  like any other 4xx, and nothing of the partial body is ever applied).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from rumordb.live.errors import HttpError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_TYPE = (b"content-type", b"application/json")
_json = msgspec.json.Encoder()


class Reply(msgspec.Struct, gc=False):
    """One complete answer: status, headers (without Content-Length) and body."""

    status: int
    headers: Headers
    body: bytes


def json_reply(status: int, data: object, extra: Headers | None = None) -> Reply:
    return Reply(status, [JSON_TYPE, *(extra or [])], _json.encode(data))


def error_reply(error: HttpError) -> Reply:
    """An error as a reply: its JSON body and headers (for handlers that send it themselves)."""
    return Reply(error.status, [JSON_TYPE, *error.headers], error.body())


async def send_reply(send: Send, reply: Reply, *, head: bool = False) -> None:
    """Send ``reply``; for a HEAD request its headers (Content-Length included) only."""
    headers = [*reply.headers, (b"content-length", str(len(reply.body)).encode())]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else reply.body})


async def read_body(
    receive: Receive,
    limit: int,
    content_length: bytes | None = None,
    *,
    too_large: tuple[str, str] = ("value_too_large", "a value"),
) -> bytes:
    """The whole body, at most ``limit`` bytes; raises ``HttpError`` (413, 400) otherwise.

    ``too_large`` is the 413's error code and what the body is, so each route keeps its
    documented answer.
    """
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise HttpError(400, "bad_request", "Content-Length is not a number") from None
        if declared > limit:
            raise _too_large(limit, too_large)
    message = await receive()
    if not message.get("more_body", False) and message["type"] != "http.disconnect":
        body: bytes = message.get("body", b"")  # all of it at once: a small value's case
        if len(body) > limit:
            raise _too_large(limit, too_large)
        return body
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            raise HttpError(400, "client_disconnected", "the client went away mid-body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, too_large)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        message = await receive()


def _too_large(limit: int, what: tuple[str, str]) -> HttpError:
    error, noun = what
    return HttpError(413, error, f"{noun} is at most {limit} bytes")
