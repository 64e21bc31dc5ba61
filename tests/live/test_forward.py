"""Forwarding a client request to an owner, and gathering a sharded listing (MockTransport)."""

from __future__ import annotations

import json

import httpx
import pytest

from rumordb.live.forward import FORWARDED_HEADER, Forwarded, Forwarder, Request, Unforwarded
from rumordb.live.metrics import Metrics

pytestmark = pytest.mark.anyio

ADDRESSES = {"n1": "http://n1", "n2": "http://n2", "n3": "http://n3", "n4": None}
HEADERS = [(b"authorization", b"Bearer k"), (b"cookie", b"secret"), (b"if-match", b"c1")]


def forwarder(handler: object) -> tuple[Forwarder, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)  # type: ignore[operator]

    transport = httpx.MockTransport(record)
    return Forwarder("n1", ADDRESSES.get, Metrics(), transport=transport), seen


def relay(forwarded: bool = False) -> Request:
    return Request("PUT", b"/kv/a%2Fb", b"x=1", HEADERS, b"body", forwarded)


async def test_the_first_owner_that_answers_wins_and_its_answer_is_relayed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "n2":
            return httpx.Response(503)  # a 5xx moves on to the next owner
        return httpx.Response(201, content=b"ok", headers={"etag": '"c"', "set-cookie": "x"})

    fwd, seen = forwarder(handler)
    answer = await fwd.forward(["n1", "n4", "n2", "n3"], relay())
    assert answer == Forwarded(201, [(b"etag", b'"c"')], b"ok")
    assert [str(r.url) for r in seen] == ["http://n2/kv/a%2Fb?x=1", "http://n3/kv/a%2Fb?x=1"]
    sent = seen[-1]
    assert sent.method == "PUT" and sent.content == b"body"
    assert sent.headers[FORWARDED_HEADER] == "n1"
    assert sent.headers["authorization"] == "Bearer k" and sent.headers["if-match"] == "c1"
    assert "cookie" not in sent.headers  # only the headers an owner needs
    await fwd.close()


async def test_no_answer_from_any_owner_is_unforwarded() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    fwd, seen = forwarder(handler)
    assert await fwd.forward(["n2", "n3"], relay()) == Unforwarded(("n2", "n3"))
    assert len(seen) == 2
    await fwd.close()


async def test_a_forwarded_request_is_never_forwarded_again() -> None:
    fwd, seen = forwarder(lambda request: httpx.Response(200))
    assert await fwd.forward(["n2"], relay(forwarded=True)) == Unforwarded(("n2",), twice=True)
    assert seen == []
    await fwd.close()


async def test_gather_keys_collects_each_members_page_and_skips_failures() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "n2":
            return httpx.Response(200, content=json.dumps({"keys": ["b", 3, "a"]}).encode())
        if request.url.host == "n3":
            return httpx.Response(200, content=b"not json")
        return httpx.Response(500)

    fwd, seen = forwarder(handler)
    listing = Request("GET", b"/kv", b"prefix=a&limit=5", HEADERS)
    assert await fwd.gather_keys(["n2", "n3", "n4"], listing) == [["b", "a"]]
    assert [str(r.url) for r in seen] == [
        "http://n2/kv?prefix=a&limit=5",
        "http://n3/kv?prefix=a&limit=5",
    ]
    assert all(r.headers[FORWARDED_HEADER] == "n1" for r in seen)
    await fwd.close()
