"""Bounded input on the real app (in process): clients' contexts and peers' sealed frames.

A context or a peer message is checked whole by the core (``core.bounds``) before any of
it is applied: a refused one changes nothing (no record, no HLC jump), is counted, and
is never answered 500. A write whose commit failed leaves nothing behind either.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from rumordb.core import Record, encode, encode_context
from rumordb.core.hlc import pack
from rumordb.core.messages import Push, Update
from rumordb.live.gossip_client import Envelope, seal_envelope
from rumordb.live.wire import Signer
from tests.live.harness import ADMIN, READER, SECRET, eventually, running_app, settings_for

pytestmark = pytest.mark.anyio


def peer_version(value: bytes, hlc: int | None = None) -> Record:
    stamp = pack(int(time.time() * 1000)) if hlc is None else hlc
    return Record(value, "text/plain", {"n2": stamp}, stamp, "n2")


async def post_sealed(http: httpx.AsyncClient, messages: list[bytes]) -> httpx.Response:
    frame = seal_envelope(Signer(SECRET), Envelope("n2", messages), time.time(), "t1")
    return await http.post("/gossip", content=frame)


async def metrics(http: httpx.AsyncClient) -> str:
    return (await http.get("/metrics", headers=READER)).text


async def metrics_show(http: httpx.AsyncClient, line: str) -> None:
    """The core's counts reach /metrics with the next tick (``Output.counter_deltas``)."""

    async def shown() -> bool:
        return line in await metrics(http)

    await eventually(shown, 5.0)


def assert_json_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error and response.json()["detail"]


async def test_an_authentic_message_with_invalid_utf8_is_dropped_whole_not_500(
    tmp_path: Path,
) -> None:
    async with running_app(settings_for(tmp_path)) as (app, http):
        view = app.state.runner.view
        good = peer_version(b"good")
        other = encode(Push("n2", [], [Update("other", good)]))
        half = encode(Push("n2", [], [Update("first", good), Update("KEY1", good)]))
        broken = half.replace(b"KEY1", b"K\xff\xfe1")  # a key that is not UTF-8
        response = await post_sealed(http, [broken, other])
        assert response.status_code in (200, 204), response.text
        assert view.version("first") is None, "nothing of the bad message is applied"
        assert view.get("other") == good, "the envelope's other message is"
        await metrics_show(http, "rumor_message_decode_errors_total 1.0")


async def test_a_peer_version_beyond_the_skew_bound_is_dropped_and_counted(
    tmp_path: Path,
) -> None:
    async with running_app(settings_for(tmp_path)) as (app, http):
        runner = app.state.runner
        hlc_before = runner.node.replica.hlc
        future = peer_version(b"future", 2**64 - 1)
        message = encode(Push("n2", [], [Update("fine", peer_version(b"ok")), Update("f", future)]))
        response = await post_sealed(http, [message])
        assert response.status_code in (200, 204), response.text
        assert runner.view.version("fine") is None and runner.view.version("f") is None
        assert runner.node.replica.hlc <= max(hlc_before, pack(int(time.time() * 1000) + 1000))
        await metrics_show(http, 'rumor_peer_messages_refused_total{reason="clock_ahead"} 1.0')
        put = await http.put("/kv/after", content=b"v", headers=ADMIN)
        assert put.status_code == 201 and put.json()["hlc"] < 2**63, "writes go on, unpoisoned"


async def test_forged_contexts_are_400_and_if_match_on_an_absent_key_is_412(
    tmp_path: Path,
) -> None:
    async with running_app(settings_for(tmp_path)) as (app, http):
        first = await http.put("/kv/k", content=b"1", headers=ADMIN)
        clock = app.state.runner.view.version("k").clock
        far = encode_context(clock, 2**64 - 1)
        refused = await http.put("/kv/k", content=b"x", headers={**ADMIN, "If-Match": far})
        assert_json_error(refused, 400, "invalid_context")
        assert "skew bound" in refused.json()["detail"]
        ghosts = encode_context({**clock, **{f"ghost-{i:03}": 1 for i in range(120)}}, 1)
        wide = await http.put("/kv/k", content=b"x", headers={**ADMIN, "If-Match": ghosts})
        assert_json_error(wide, 400, "invalid_context")
        deleted = await http.delete("/kv/k", headers={**ADMIN, "If-Match": far})
        assert_json_error(deleted, 400, "invalid_context")
        assert (await http.get("/kv/k", headers=READER)).content == b"1", "nothing applied"
        context = first.json()["context"]
        absent = await http.put("/kv/nope", content=b"x", headers={**ADMIN, "If-Match": context})
        assert_json_error(absent, 412, "precondition_failed")
        assert (await http.get("/kv/nope", headers=READER)).status_code == 404
        ok = await http.put("/kv/k", content=b"2", headers={**ADMIN, "If-Match": context})
        assert ok.status_code == 200, ok.text


async def test_a_failed_commit_leaves_nothing_to_read_or_gossip(tmp_path: Path) -> None:
    from tests.live.test_storage import inject_commit_failures

    settings = settings_for(tmp_path, durability="sync")
    async with running_app(settings) as (app, http):
        runner = app.state.runner
        before = await http.put("/kv/old", content=b"before", headers=ADMIN)
        inject_commit_failures(runner.storage, failures=1)
        lost = await http.put("/kv/old", content=b"lost", headers=ADMIN)
        assert_json_error(lost, 503, "unavailable")
        assert (await http.get("/kv/old", headers=READER)).content == b"before"
        assert runner.view.queue_length() == 0, "nothing left to gossip"
        context = before.json()["context"]  # still the current version
        again = await http.put("/kv/old", content=b"after", headers={**ADMIN, "If-Match": context})
        assert again.status_code == 200, again.text
