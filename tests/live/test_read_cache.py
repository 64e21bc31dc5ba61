"""live.read_cache: warm reads answered from their kept rendering, and only while valid.

The cache alone (bounds), then the /kv handler over a scripted runner (``test_kv``): a kept
answer is byte-identical to the full path's, is dropped the moment the stored version
changes, and never skips authentication, the node's state or the parsing of odd requests.
The real app end to end (write then read, delete, TTL, revoked keys) is at the bottom.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rumordb.core import Local, Record
from rumordb.live.auth import FailureLimiter, Gate, KeyStore, Role, hash_key
from rumordb.live.kv import KVHandler
from rumordb.live.metrics import Metrics
from rumordb.live.read_cache import ENTRY_OVERHEAD_BYTES, ReadCache
from tests.live.harness import ADMIN, ADMIN_KEY, READER, READER_KEY, running_app, settings_for
from tests.live.test_kv import RECORD, ScriptedRunner

pytestmark = pytest.mark.anyio


# --- the cache alone --------------------------------------------------------------------
def test_the_cache_is_bounded_in_entries_and_bytes_and_skips_large_values() -> None:
    cache = ReadCache(max_entries=2, max_bytes=2 * (20 + ENTRY_OVERHEAD_BYTES), max_value_bytes=10)
    token = object()
    cache.put("a", token, [], b"1" * 10)
    cache.put("b", token, [], b"2" * 10)
    assert len(cache) == 2 and cache.size_bytes == 2 * (20 + ENTRY_OVERHEAD_BYTES)
    cache.put("c", token, [], b"3")  # a third entry: the cache starts over
    assert len(cache) == 1 and cache.get("a") is None and cache.get("c") is not None
    cache.put("c", token, [], b"4" * 10)  # replacing an entry frees what it counted
    assert len(cache) == 1 and cache.size_bytes == 20 + ENTRY_OVERHEAD_BYTES
    cache.put("big", token, [], b"x" * 11)
    assert cache.get("big") is None, "a value above max_value_bytes is never kept"
    small = ReadCache(max_entries=100, max_bytes=ENTRY_OVERHEAD_BYTES + 30, max_value_bytes=10)
    small.put("a", token, [], b"1" * 10)
    small.put("b", token, [], b"2" * 10)  # over the byte budget: starts over
    assert len(small) == 1 and small.get("b") is not None
    small.forget("b")  # gone, and what it counted with it
    assert len(small) == 0 and small.size_bytes == 0
    small.forget("b")
    small.put("a", token, [], b"1" * 10)
    small.clear()
    assert len(small) == 0 and small.size_bytes == 0


# --- in the handler ---------------------------------------------------------------------
@pytest.fixture
def runner() -> ScriptedRunner:
    return ScriptedRunner()


@pytest.fixture
def handler(runner: ScriptedRunner) -> KVHandler:
    keystore = KeyStore([(hash_key(ADMIN_KEY), Role.ADMIN), (hash_key(READER_KEY), Role.READER)])
    gate = Gate(keystore, FailureLimiter(5, 1e-6, 100))
    return KVHandler(runner, gate, Metrics(), max_value_bytes=10, max_key_bytes=8)  # type: ignore[arg-type]


@pytest.fixture
async def http(handler: KVHandler) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=handler)
    async with httpx.AsyncClient(transport=transport, base_url="http://n1") as client:
        yield client


def stored(runner: ScriptedRunner, key: str, record: Record | None) -> None:
    """The scripted node now stores ``record`` as a new version of ``key`` (None: none)."""
    if record is None:
        runner.tokens.pop(key, None)
        runner.answer = Local(None)
        return
    token = runner.tokens[key] = object()
    runner.answer = Local(record, token=token)


def reads(runner: ScriptedRunner) -> int:
    return sum(call[0] == "read" for call in runner.calls)


async def test_a_kept_answer_is_the_full_answer_byte_for_byte_until_the_version_changes(
    http: httpx.AsyncClient, runner: ScriptedRunner
) -> None:
    stored(runner, "k", RECORD)
    cold = await http.get("/kv/k", headers=READER)
    kept = await http.get("/kv/k", headers=READER)  # the version's second read: kept
    warm = await http.get("/kv/k", headers=READER)
    assert reads(runner) == 2, "the third read was answered from the kept rendering"
    assert kept.headers.raw == warm.headers.raw == cold.headers.raw
    assert warm.content == kept.content == cold.content == b"v"
    head = await http.head("/kv/k", headers=READER)
    assert head.headers.raw == cold.headers.raw and head.content == b"" and reads(runner) == 2
    stored(runner, "k", Record(b"w", "text/plain", {"n1": 2}, 78, "n1"))  # a write here
    newer = await http.get("/kv/k", headers=READER)
    assert newer.content == b"w" and newer.headers["etag"] != cold.headers["etag"]
    assert reads(runner) == 3
    stored(runner, "k", None)  # deleted (or purged, or a restarted node without it)
    assert (await http.get("/kv/k", headers=READER)).status_code == 404
    assert reads(runner) == 4


async def test_only_a_version_read_twice_is_kept(
    http: httpx.AsyncClient, runner: ScriptedRunner, handler: KVHandler
) -> None:
    for key in ("a", "b", "c"):  # a scan: each key read once
        stored(runner, key, RECORD)
        await http.get(f"/kv/{key}", headers=READER)
    assert len(handler._reads) == 0, "a first read keeps nothing"
    stored(runner, "a", RECORD)  # a's version changed since its read: a first read again
    await http.get("/kv/a", headers=READER)
    assert len(handler._reads) == 0
    await http.get("/kv/a", headers=READER)  # the same version, read again: kept
    assert len(handler._reads) == 1 and reads(runner) == 5
    assert (await http.get("/kv/a", headers=READER)).content == b"v" and reads(runner) == 5


async def test_an_answer_without_a_token_is_never_kept(
    http: httpx.AsyncClient, runner: ScriptedRunner
) -> None:
    runner.tokens["k"] = token = object()
    runner.answer = Local(RECORD)  # e.g. a value with a TTL: the clock decides
    await http.get("/kv/k", headers=READER)
    await http.get("/kv/k", headers=READER)
    assert reads(runner) == 2
    runner.answer = Local(RECORD, token=token)
    await http.get("/kv/k", headers=READER)
    await http.get("/kv/k?meta=false", headers=READER)  # a query: parsed the whole way
    await http.get("/kv/%6B", headers=READER)  # an escaped key: decoded the whole way
    assert reads(runner) == 5
    await http.get("/kv/k", headers=READER)
    assert reads(runner) == 5


async def test_a_kept_answer_still_needs_a_good_key_and_a_running_node(
    http: httpx.AsyncClient, runner: ScriptedRunner, handler: KVHandler
) -> None:
    stored(runner, "k", RECORD)
    await http.get("/kv/k", headers=ADMIN)
    await http.get("/kv/k", headers=ADMIN)  # the second read of the version: kept
    assert (await http.get("/kv/k")).status_code == 401
    assert (await http.get("/kv/k", headers={"x-api-key": "nope"})).status_code == 401
    both = {"x-api-key": READER_KEY, "authorization": f"Bearer {ADMIN_KEY}"}
    assert (await http.get("/kv/k", headers=both)).json()["error"] == "duplicate_credentials"
    limiter = handler.gate.limiter
    tokens = limiter.buckets["127.0.0.1"].tokens  # a duplicate is a 400, not a failure
    assert round(tokens) == 5 - 2, "each failure counted once, not again on a second path"
    bearer = {"authorization": f"Bearer {READER_KEY}"}
    assert (await http.get("/kv/k", headers=bearer)).content == b"v", "a failed address, a good key"
    limiter.buckets["127.0.0.1"].tokens = 0
    throttled = await http.get("/kv/k", headers=READER)
    assert throttled.status_code == 429 and "retry-after" in throttled.headers
    limiter.buckets.clear()
    runner.running = False
    assert (await http.get("/kv/k", headers=READER)).json()["error"] == "unavailable"
    assert reads(runner) == 2, "every other answer was the kept one, or refused before it"


async def test_kept_answers_are_counted_as_every_read_is(
    http: httpx.AsyncClient, runner: ScriptedRunner, handler: KVHandler
) -> None:
    stored(runner, "k", RECORD)
    for _ in range(3):
        await http.get("/kv/k", headers=READER)
    await http.get("/kv/k")
    text = handler.metrics.render().decode()
    assert 'rumor_http_requests_total{route="kv_get",status="200"} 3.0' in text
    assert 'rumor_http_requests_total{route="kv",status="401"} 1.0' in text
    assert 'rumor_http_request_duration_seconds_count{route="kv_get"} 3.0' in text


# --- the real app -----------------------------------------------------------------------
async def test_a_read_after_a_write_delete_or_expiry_sees_it_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_app(settings_for(tmp_path)) as (app, http):
        for value in (b"one", b"two"):
            assert (await http.put("/kv/k", content=value, headers=ADMIN)).status_code < 300
            for _ in range(2):  # the second is a warm read
                assert (await http.get("/kv/k", headers=READER)).content == value
        assert (await http.delete("/kv/k", headers=ADMIN)).status_code == 200
        assert (await http.get("/kv/k", headers=READER)).status_code == 404
        put = await http.put("/kv/t?ttl=5", content=b"brief", headers=ADMIN)
        assert put.status_code == 201
        for _ in range(2):
            assert (await http.get("/kv/t", headers=READER)).content == b"brief"
        runner = app.state.runner
        later = runner.now() + 6
        monkeypatch.setattr(runner, "now", lambda: later)
        assert (await http.get("/kv/t", headers=READER)).status_code == 404, "expired"


async def test_a_revoked_key_is_refused_on_a_warm_read(tmp_path: Path) -> None:
    async with running_app(settings_for(tmp_path)) as (_, http):
        await http.put("/kv/k", content=b"v", headers=ADMIN)
        made = await http.post("/admin/keys", json={"name": "bot", "role": "reader"}, headers=ADMIN)
        bearer: dict[str, Any] = {"authorization": f"Bearer {made.json()['key']}"}
        for _ in range(2):
            assert (await http.get("/kv/k", headers=bearer)).content == b"v"
        assert (await http.delete("/admin/keys/bot", headers=ADMIN)).status_code == 200
        assert (await http.get("/kv/k", headers=bearer)).status_code == 401
