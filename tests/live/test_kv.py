"""The /kv handler alone: parsing, and every runner result mapped to its reply.

A stand-in runner records what the handler asked and returns a scripted answer, so each
mapping (and each parse error) is pinned down without a node, a disk or a socket.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from rumordb.core import Local, Record, WriteCommand, WriteResult, WriteStatus
from rumordb.core.context import encode_context
from rumordb.core.node import Output
from rumordb.live.auth import FailureLimiter, Gate, KeyStore, Role, hash_key
from rumordb.live.forward import Forwarded, Relay, Unforwarded, path_qs
from rumordb.live.kv import KVHandler
from rumordb.live.metrics import Metrics
from rumordb.live.runner import NotStored
from tests.live.harness import ADMIN, ADMIN_KEY, READER, READER_KEY

pytestmark = pytest.mark.anyio

RECORD = Record(b"v", "text/plain", {"n1": 1}, 77, "n1", False)


class ScriptedRunner:
    """What KVHandler uses of a Runner; ``answer`` is what every call returns."""

    def __init__(self) -> None:
        self.running = True
        self.loading = False
        self.node_id = "n1"
        self.answer: Any = Local(RECORD)
        self.calls: list[tuple[Any, ...]] = []
        self.tokens: dict[str, object] = {}  # what ``version_token`` says is stored

    def version_token(self, key: str) -> object | None:
        return self.tokens.get(key)

    async def write(self, command: WriteCommand, relay: Relay) -> Any:
        self.calls.append(("write", command, relay))
        return self.answer

    async def read(self, key: str, relay: Relay, *, meta: bool = False) -> Any:
        self.calls.append(("read", key, relay, meta))
        return self.answer

    async def list_keys(self, prefix: str, limit: int, after: str, relay: Relay) -> Any:
        self.calls.append(("list", prefix, limit, after, relay))
        return self.answer


@pytest.fixture
def runner() -> ScriptedRunner:
    return ScriptedRunner()


@pytest.fixture
async def http(runner: ScriptedRunner) -> AsyncIterator[httpx.AsyncClient]:
    keystore = KeyStore([(hash_key(ADMIN_KEY), Role.ADMIN), (hash_key(READER_KEY), Role.READER)])
    gate = Gate(keystore, FailureLimiter(1000, 100.0, 100))
    handler = KVHandler(runner, gate, Metrics(), max_value_bytes=10, max_key_bytes=8)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=handler)
    async with httpx.AsyncClient(transport=transport, base_url="http://n1") as client:
        yield client


def error_of(response: httpx.Response) -> tuple[int, str]:
    assert set(response.json()) == {"error", "detail"}
    return response.status_code, response.json()["error"]


async def test_a_write_becomes_one_command_with_the_request_relay(
    http: httpx.AsyncClient, runner: ScriptedRunner
) -> None:
    runner.answer = WriteResult(WriteStatus.CREATED, RECORD, Output())
    headers = {**ADMIN, "content-type": "text/plain", "x-rumor-forwarded": "n2"}
    response = await http.post("/kv/a%2Fb?x=1", content=b"val", headers=headers)
    assert response.status_code == 201
    assert response.json() == {
        "key": "a/b",
        "context": encode_context(RECORD.clock, RECORD.hlc),
        "hlc": 77,
        "origin": "n1",
    }
    ((_, command, relay),) = runner.calls
    assert command == WriteCommand("a/b", b"val", "text/plain", None, create=True, coordinate=True)
    assert (relay.method, relay.path, relay.query, relay.body) == (
        "POST",
        b"/kv/a%2Fb",
        b"x=1",
        b"val",
    )
    assert relay.forwarded and path_qs(relay) == "/kv/a%2Fb?x=1"


@pytest.mark.parametrize(
    ("answer", "status", "error"),
    [
        (WriteResult(WriteStatus.EXISTS, RECORD, Output()), 409, "exists"),
        (
            WriteResult(WriteStatus.PRECONDITION_FAILED, RECORD, Output()),
            412,
            "precondition_failed",
        ),
        (WriteResult(WriteStatus.NOT_FOUND, None, Output()), 404, "not_found"),
        (NotStored("unavailable", "the write was not stored: disk full"), 503, "unavailable"),
        (Unforwarded(("n2", "n3"), twice=True), 503, "not_owner"),
        (Unforwarded(("n2", "n3")), 503, "owners_unavailable"),
    ],
)
async def test_each_refused_write_maps_to_its_error(
    http: httpx.AsyncClient, runner: ScriptedRunner, answer: object, status: int, error: str
) -> None:
    runner.answer = answer
    assert error_of(await http.put("/kv/k", content=b"v", headers=ADMIN)) == (status, error)


async def test_an_overloaded_write_asks_the_client_to_retry(
    http: httpx.AsyncClient, runner: ScriptedRunner
) -> None:
    runner.answer = NotStored("overloaded", "50000 writes are already waiting")
    response = await http.put("/kv/k", content=b"v", headers=ADMIN)
    assert error_of(response) == (503, "overloaded")
    assert response.headers["retry-after"] == "1"


async def test_a_delete_answers_deleted_and_an_owner_answer_is_relayed_as_is(
    http: httpx.AsyncClient, runner: ScriptedRunner
) -> None:
    runner.answer = WriteResult(WriteStatus.OK, RECORD, Output())
    deleted = await http.delete("/kv/k", headers=ADMIN)
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert runner.calls[0][1].delete
    runner.answer = Forwarded(202, [(b"x-rumor-node", b"n2")], b"from n2")
    relayed = await http.get("/kv/k", headers=READER)
    assert (relayed.status_code, relayed.content) == (202, b"from n2")
    assert relayed.headers["x-rumor-node"] == "n2"


async def test_a_local_read_answers_the_value_or_404(
    http: httpx.AsyncClient, runner: ScriptedRunner
) -> None:
    got = await http.get("/kv/k", headers=READER)
    assert (got.status_code, got.content, got.headers["content-type"]) == (200, b"v", "text/plain")
    assert got.headers["x-rumor-context"] == encode_context(RECORD.clock, RECORD.hlc)
    runner.answer = Local(None)
    assert error_of(await http.get("/kv/k", headers=READER)) == (404, "not_found")
    meta = await http.get("/kv/k?meta=true", headers=READER)
    assert runner.calls[-1][3] is True  # asked the runner for the version, not the value
    assert error_of(meta) == (404, "not_found")


async def test_a_boolean_parameter_that_is_neither_true_nor_false_is_a_400(
    http: httpx.AsyncClient, runner: ScriptedRunner
) -> None:
    """``watch=ture`` must not silently answer a listing, nor ``meta=yes please`` a value."""
    for url in ("/kv?watch=ture", "/kv/k?meta=maybe", "/kv?export=2"):
        answer = await http.get(url, headers=READER)
        assert error_of(answer) == (400, "bad_request"), url
        assert "must be true or false" in answer.json()["detail"]
    assert (await http.get("/kv/k?meta=false", headers=READER)).status_code == 200


async def test_a_version_s_context_is_encoded_once_and_a_new_version_gets_its_own(
    http: httpx.AsyncClient, runner: ScriptedRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads get fresh copies of a stored record: the context cache compares versions by
    value (HLC and clock), so rereading an unchanged key does not encode it again."""
    encoded: list[int] = []

    def counting(clock: dict[str, int], hlc: int) -> str:
        encoded.append(hlc)
        return encode_context(clock, hlc)

    monkeypatch.setattr("rumordb.live.kv.encode_context", counting)
    runner.answer = Local(Record(b"v", "text/plain", {"n1": 1}, 77, "n1", False))
    first = (await http.get("/kv/k", headers=READER)).headers["etag"]
    runner.answer = Local(Record(b"v", "text/plain", {"n1": 1}, 77, "n1", False))  # a copy
    assert (await http.get("/kv/k", headers=READER)).headers["etag"] == first
    assert encoded == [77]
    runner.answer = Local(Record(b"w", "text/plain", {"n1": 2}, 78, "n1", False))
    newer = (await http.get("/kv/k", headers=READER)).headers["etag"]
    assert newer == f'"{encode_context({"n1": 2}, 78)}"' != first and encoded == [77, 78]


async def test_a_listing_passes_its_query_and_says_where_the_next_page_starts(
    http: httpx.AsyncClient, runner: ScriptedRunner
) -> None:
    runner.answer = ["a1", "a2"]
    page = await http.get("/kv?prefix=a&limit=2&after=a0", headers=READER)
    assert page.json() == {"keys": ["a1", "a2"], "next": "a2"}
    assert runner.calls[0][1:4] == ("a", 2, "a0")
    assert error_of(await http.get("/kv?limit=0", headers=READER)) == (400, "bad_request")


async def test_keys_are_checked_once_here_414_for_too_long_400_otherwise(
    http: httpx.AsyncClient, runner: ScriptedRunner
) -> None:
    assert error_of(await http.get("/kv/" + "k" * 9, headers=READER)) == (414, "key_too_long")
    assert error_of(await http.get("/kv/a%01b", headers=READER)) == (400, "invalid_key")
    assert error_of(await http.get("/kv/%ff", headers=READER)) == (400, "invalid_key")
    assert runner.calls == []  # a bad key never reaches the runner


async def test_auth_role_body_and_state_are_refused_before_the_runner(
    http: httpx.AsyncClient, runner: ScriptedRunner
) -> None:
    unauthorized = await http.get("/kv/k")
    assert error_of(unauthorized) == (401, "unauthorized")
    assert unauthorized.headers["www-authenticate"] == "Bearer"
    assert error_of(await http.put("/kv/k", content=b"v", headers=READER)) == (403, "forbidden")
    assert error_of(await http.put("/kv/k", content=b"v" * 11, headers=ADMIN)) == (
        413,
        "value_too_large",
    )
    bad_context = {**ADMIN, "if-match": "not-a-context"}
    assert error_of(await http.put("/kv/k", content=b"v", headers=bad_context))[1] == (
        "invalid_context"
    )
    assert error_of(await http.patch("/kv/k", headers=ADMIN)) == (405, "method_not_allowed")
    runner.running = False
    assert error_of(await http.get("/kv/k", headers=READER)) == (503, "unavailable")
    assert runner.calls == []
    assert json.loads((await http.get("/kv/k")).content)["error"] == "unauthorized"


async def test_a_content_type_checked_once_is_stored_as_given_and_still_given_once(
    http: httpx.AsyncClient, runner: ScriptedRunner
) -> None:
    from rumordb.live import kv

    runner.answer = WriteResult(WriteStatus.OK, RECORD, Output())
    for _ in range(2):  # the second time from the checked types (``kv._KNOWN_TYPES``)
        response = await http.put(
            "/kv/k", content=b"v", headers={**ADMIN, "content-type": "text/csv"}
        )
        assert response.status_code == 200
        assert response.headers["etag"] == f'"{response.json()["context"]}"'
    assert [call[1].content_type for call in runner.calls] == ["text/csv", "text/csv"]
    assert kv._KNOWN_TYPES[b"text/csv"] == "text/csv"
    twice = [("x-api-key", ADMIN_KEY), ("content-type", "text/csv"), ("content-type", "text/csv")]
    refused = await http.put("/kv/k", content=b"v", headers=twice)
    assert error_of(refused) == (400, "invalid_content_type")
    bad = await http.put("/kv/k", content=b"v", headers={**ADMIN, "content-type": "a\x7fb"})
    assert error_of(bad) == (400, "invalid_content_type") and b"a\x7fb" not in kv._KNOWN_TYPES
    for i in range(kv.MAX_KNOWN_TYPES + 5):  # bounded: a client sending many types
        await http.put("/kv/k", content=b"v", headers={**ADMIN, "content-type": f"t/{i}"})
    assert len(kv._KNOWN_TYPES) <= kv.MAX_KNOWN_TYPES
