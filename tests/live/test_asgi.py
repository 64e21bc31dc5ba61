"""The bounded body reader and the reply sender shared by every route."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rumordb.live.asgi import Reply, json_reply, read_body, send_reply
from rumordb.live.errors import HttpError

pytestmark = pytest.mark.anyio

Message = dict[str, Any]


def receiver(*messages: Message) -> tuple[Any, list[int]]:
    """An ASGI ``receive`` over ``messages``; the list counts how many were read."""
    read = [0]
    queue: Iterator[Message] = iter(messages)

    async def receive() -> Message:
        read[0] += 1
        return next(queue)

    return receive, read


def chunk(body: bytes, more: bool = True) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


async def test_reads_a_chunked_body_whole() -> None:
    receive, _ = receiver(chunk(b"ab"), chunk(b"cd"), chunk(b"e", more=False))
    assert await read_body(receive, 5) == b"abcde"


async def test_a_declared_length_over_the_limit_is_413_before_reading() -> None:
    receive, read = receiver(chunk(b"x", more=False))
    with pytest.raises(HttpError) as caught:
        await read_body(receive, 5, b"6")
    assert (caught.value.status, caught.value.error) == (413, "value_too_large")
    assert read[0] == 0


async def test_a_streamed_body_over_the_limit_stops_reading_at_once() -> None:
    receive, read = receiver(chunk(b"xxx"), chunk(b"xxx"), chunk(b"x", more=False))
    with pytest.raises(HttpError) as caught:
        await read_body(receive, 5, too_large=("too_large", "a gossip body"))
    assert (caught.value.status, caught.value.error) == (413, "too_large")
    assert caught.value.detail == "a gossip body is at most 5 bytes"
    assert read[0] == 2


async def test_a_bad_content_length_is_400() -> None:
    receive, _ = receiver(chunk(b"", more=False))
    with pytest.raises(HttpError) as caught:
        await read_body(receive, 5, b"zz")
    assert caught.value.status == 400


async def test_a_body_in_one_message_is_read_once_and_bounded_too() -> None:
    receive, read = receiver(chunk(b"abc", more=False))
    assert await read_body(receive, 5) == b"abc" and read[0] == 1
    receive, _ = receiver(chunk(b"abcdef", more=False))  # no Content-Length declared
    with pytest.raises(HttpError) as caught:
        await read_body(receive, 5)
    assert (caught.value.status, caught.value.error) == (413, "value_too_large")
    receive, _ = receiver({"type": "http.disconnect"})  # gone before any body
    with pytest.raises(HttpError) as caught:
        await read_body(receive, 5)
    assert (caught.value.status, caught.value.error) == (400, "client_disconnected")


async def test_a_client_that_disconnects_mid_body_is_400_client_disconnected() -> None:
    receive, _ = receiver(chunk(b"ab"), {"type": "http.disconnect"})
    with pytest.raises(HttpError) as caught:
        await read_body(receive, 5)
    assert (caught.value.status, caught.value.error) == (400, "client_disconnected")


async def test_send_reply_adds_the_content_length() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    reply = json_reply(201, {"key": "k"}, [(b"etag", b'"c"')])
    await send_reply(send, reply)
    start, body = sent
    assert start["status"] == 201
    assert start["headers"] == [
        (b"content-type", b"application/json"),
        (b"etag", b'"c"'),
        (b"content-length", str(len(body["body"])).encode()),
    ]
    assert body["body"] == b'{"key":"k"}'
    assert reply == Reply(
        201, [(b"content-type", b"application/json"), (b"etag", b'"c"')], body["body"]
    )
