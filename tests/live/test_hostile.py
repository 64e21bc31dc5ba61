"""Hostile input against the real ASGI app: hypothesis writes the requests, byte by byte.

The app is the node's own (``create_app``, running its lifespan, memory durability);
requests are ASGI events built by hand, so a test controls what httpx would normalise
away: raw paths with any percent-escaped bytes, any header bytes, duplicate headers, a
body in any number of chunks, a body shorter or longer than declared, a client that
disconnects mid-body. Properties, for every request:

* never a 5xx (a refused request is the client's fault, and the node says so);
* every error is the JSON ``{"error": code, "detail": text}``;
* a refused write stores nothing (the node's key count is unchanged);
* reading is bounded: an endless body is cut at the value limit, having read at most one
  chunk beyond it.

What only a real server can show (head sizes, deadlines, malformed request lines) is in
``test_http_protocol.py``, against a node process.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes, unquote

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rumordb.core.context import encode_context
from tests.live.harness import ADMIN_KEY, READER_KEY, running_app, settings_for

pytestmark = pytest.mark.anyio

MAX_VALUE_BYTES = 4096
MAX_KEY_BYTES = 64
ADMIN = (b"authorization", f"Bearer {ADMIN_KEY}".encode())
READER = (b"x-api-key", READER_KEY.encode())
EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    body_read: int = 0


@dataclass
class Request:
    method: str
    raw_path: bytes
    query: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    disconnect: bool = False


async def call(app: FastAPI, request: Request) -> Answer:
    """One request through the app's whole ASGI stack, as uvicorn would hand it over."""
    path = request.raw_path.decode("ascii")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": unquote(path) if "%" in path else path,
        "raw_path": request.raw_path,
        "query_string": request.query,
        "root_path": "",
        "headers": request.headers,
        "client": ("127.0.0.9", 40000),
        "server": ("127.0.0.1", 9001),
        "state": {},
    }
    events: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(request.chunks) - 1}
        for i, chunk in enumerate(request.chunks or [b""])
    ]
    if request.disconnect:
        events[-1]["more_body"] = True
        events.append({"type": "http.disconnect"})
    answer = Answer(0, {}, b"")

    async def receive() -> dict[str, Any]:
        if not events:
            return {"type": "http.disconnect"}
        event = events.pop(0)
        answer.body_read += len(event.get("body", b""))
        return event

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = dict(message.get("headers", []))
        else:
            answer.body += message.get("body", b"")

    await app(scope, receive, send)
    return answer


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    options = settings_for(
        tmp_path,
        max_value_bytes=MAX_VALUE_BYTES,
        max_key_bytes=MAX_KEY_BYTES,
        auth_failure_burst=1_000_000,
    )
    async with running_app(options) as (node, _):
        yield node


def stored(app: FastAPI) -> int:
    count: int = app.state.runner.node.view.key_count()[0]
    return count


def assert_well_formed(answer: Answer, *, head: bool = False) -> None:
    assert 100 <= answer.status < 500, (answer.status, answer.body[:300])
    if answer.status >= 400:
        assert answer.headers[b"content-type"] == b"application/json", answer
        if head:  # the same headers as GET, no body
            assert answer.body == b""
            return
        body = json.loads(answer.body)
        assert set(body) == {"error", "detail"}
        assert isinstance(body["error"], str) and isinstance(body["detail"], str)


# --- strategies --------------------------------------------------------------------------
def escaped(raw: bytes) -> bytes:
    return quote_from_bytes(raw, safe="").encode()


keys = st.one_of(
    st.binary(max_size=MAX_KEY_BYTES + 8),  # any bytes, percent-escaped: not always UTF-8
    st.text(max_size=MAX_KEY_BYTES // 2 + 8).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"\x00", b"\x7f", b"\xc2\x85", b"\xed\xa0\x80", b"a\x1bb", b"/", b"."]),
)
# Header values as a client could send them (a server never passes CR, LF or NUL on).
header_values = st.binary(max_size=300).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b"")
)
hostile_contexts = st.one_of(
    header_values,
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=64
    ).map(str.encode),
    st.builds(  # forged: counters and HLCs up to 2^64 - 1, clocks naming unknown nodes
        lambda clock, hlc: encode_context(clock, hlc).encode(),
        st.dictionaries(st.text(max_size=8), st.integers(0, 2**64 - 1), max_size=40),
        st.one_of(st.integers(0, 2**40), st.integers(0, 2**64 - 1)),
    ),
)
chunkings = st.lists(st.binary(max_size=MAX_VALUE_BYTES // 2), max_size=4)


@st.composite
def writes(draw: st.DrawFn) -> Request:
    method = draw(st.sampled_from(["PUT", "POST", "DELETE", "PATCH"]))
    headers = [draw(st.sampled_from([ADMIN, READER, (b"authorization", b"Bearer nope")]))]
    if draw(st.booleans()):
        headers.append(ADMIN)  # duplicate credentials
    if draw(st.booleans()):
        headers.append((b"content-type", draw(header_values)))
    if draw(st.booleans()):
        headers.append((b"content-type", draw(header_values)))
    if draw(st.booleans()):
        headers.append((b"if-match", draw(hostile_contexts)))
    chunks = draw(chunkings)
    length = sum(map(len, chunks))
    declared = draw(st.sampled_from([None, length, length + 1, 10**12, -1, "x"]))
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    return Request(
        method,
        b"/kv/" + escaped(draw(keys)),
        headers=headers,
        chunks=chunks,
        disconnect=draw(st.booleans()),
    )


# --- properties --------------------------------------------------------------------------
@EXAMPLES
@given(request=writes())
async def test_a_hostile_write_is_a_4xx_json_or_stores_one_key(
    app: FastAPI, request: Request
) -> None:
    before = stored(app)
    answer = await call(app, request)
    assert_well_formed(answer)
    if answer.status >= 400:
        assert stored(app) == before, "a refused write stored something"
    else:
        assert stored(app) - before in (0, 1) or request.method == "DELETE"


@EXAMPLES
@given(
    key=keys,
    query=st.one_of(st.binary(max_size=200), st.binary(max_size=60).map(escaped)),
    credentials=st.lists(st.sampled_from([ADMIN, READER, (b"x-api-key", b"bad")]), max_size=3),
    method=st.sampled_from(["GET", "HEAD", "OPTIONS"]),
    listing=st.booleans(),
)
async def test_a_hostile_read_is_a_4xx_json_or_an_answer(
    app: FastAPI,
    key: bytes,
    query: bytes,
    credentials: list[tuple[bytes, bytes]],
    method: str,
    listing: bool,
) -> None:
    path = b"/kv" if listing else b"/kv/" + escaped(key)
    query = bytes(c for c in query if 0x21 <= c < 0x7F and c != ord("#"))  # what a URL can carry
    answer = await call(app, Request(method, path, query, credentials))
    assert_well_formed(answer, head=method == "HEAD")
    if method == "HEAD":
        assert answer.body == b""


@EXAMPLES
@given(value=st.binary(max_size=300), path=st.sampled_from([b"/health", b"/cluster", b"/gossip"]))
async def test_hostile_headers_on_every_other_route(
    app: FastAPI, value: bytes, path: bytes
) -> None:
    headers = [(b"authorization", value), (b"x-api-key", value), (b"content-length", value)]
    method = "POST" if path == b"/gossip" else "GET"
    answer = await call(app, Request(method, path, headers=headers, chunks=[value]))
    assert_well_formed(answer)


async def test_invalid_utf8_in_a_query_is_400_not_replaced(app: FastAPI) -> None:
    answer = await call(app, Request("GET", b"/kv", b"prefix=%ff", [ADMIN]))
    assert (answer.status, json.loads(answer.body)["error"]) == (400, "bad_request")


@pytest.mark.parametrize(
    ("content_type", "detail"),
    [
        (b"text/plain;" + b"x" * 300, "at most 255 bytes"),
        (b"text/plain\x01", "printable ASCII"),
        (b"text/\xe9t\xe9", "printable ASCII"),
    ],
)
async def test_a_bad_content_type_is_400_and_nothing_is_stored(
    app: FastAPI, content_type: bytes, detail: str
) -> None:
    headers = [ADMIN, (b"content-type", content_type)]
    answer = await call(app, Request("PUT", b"/kv/ct", headers=headers, chunks=[b"v"]))
    body = json.loads(answer.body)
    assert (answer.status, body["error"]) == (400, "invalid_content_type")
    assert detail in body["detail"]
    assert stored(app) == 0


async def test_two_content_types_are_400(app: FastAPI) -> None:
    headers = [ADMIN, (b"content-type", b"text/plain"), (b"content-type", b"text/html")]
    answer = await call(app, Request("PUT", b"/kv/ct", headers=headers, chunks=[b"v"]))
    assert answer.status == 400 and stored(app) == 0


async def test_a_255_byte_content_type_is_kept(app: FastAPI) -> None:
    content_type = b"text/plain; x=" + b"y" * (255 - 14)
    headers = [ADMIN, (b"content-type", content_type)]
    put = await call(app, Request("PUT", b"/kv/ct", headers=headers, chunks=[b"v"]))
    assert put.status == 201
    got = await call(app, Request("GET", b"/kv/ct", headers=[ADMIN]))
    assert got.headers[b"content-type"] == content_type


@pytest.mark.parametrize("path", [b"/kv/endless", b"/gossip"])
async def test_an_endless_body_is_cut_at_the_limit(app: FastAPI, path: bytes) -> None:
    """Memory stays bounded: the handler stops reading one chunk past the limit."""
    chunk = b"x" * 1024
    limit = MAX_VALUE_BYTES if path.startswith(b"/kv") else 64 * 1024 * 1024
    request = Request("PUT" if path.startswith(b"/kv") else "POST", path, headers=[ADMIN])
    request.chunks = [chunk] * (limit // len(chunk) + 50)
    answer = await call(app, request)
    assert answer.status == 413
    assert answer.body_read <= limit + len(chunk)
    assert stored(app) == 0


async def test_a_declared_length_over_the_limit_reads_nothing(app: FastAPI) -> None:
    for path, method in ((b"/kv/big", "PUT"), (b"/gossip", "POST")):
        headers = [ADMIN, (b"content-length", b"999999999999")]
        answer = await call(app, Request(method, path, headers=headers, chunks=[b"x" * 100]))
        assert answer.status == 413, path
        assert answer.body_read == 0, path


async def test_head_answers_like_get_without_the_body(app: FastAPI) -> None:
    await call(app, Request("PUT", b"/kv/h", headers=[ADMIN], chunks=[b"hello"]))
    got = await call(app, Request("GET", b"/kv/h", headers=[ADMIN]))
    head = await call(app, Request("HEAD", b"/kv/h", headers=[ADMIN]))
    assert (head.status, head.body) == (200, b"")
    assert head.headers == got.headers  # Content-Length, ETag, context included
    missing = await call(app, Request("HEAD", b"/kv/absent", headers=[ADMIN]))
    assert (missing.status, missing.body) == (404, b"")


@pytest.mark.parametrize("raw", [b"%00", b"a%7Fb", b"%C2%85", b"%1B", b"%ED%A0%80", b"%FF"])
async def test_the_key_rules_match_their_error_text(app: FastAPI, raw: bytes) -> None:
    """C0, DEL and C1 controls, a lone surrogate and non-UTF-8 are refused as the text says."""
    answer = await call(app, Request("PUT", b"/kv/" + raw, headers=[ADMIN], chunks=[b"v"]))
    body = json.loads(answer.body)
    assert (answer.status, body["error"]) == (400, "invalid_key")
    assert "UTF-8" in body["detail"]
    assert raw in (b"%FF", b"%ED%A0%80") or "control characters" in body["detail"]
    assert stored(app) == 0
