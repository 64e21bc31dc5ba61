"""The HTTP API of one node, in process (ASGITransport on the real app, memory storage)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live.harness import ADMIN, ADMIN_KEY, READER, READER_KEY, running_app, settings_for

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    # A lone node purges a tombstone at its next maintenance (every member holds it):
    # keep maintenance out of these tests' way so tombstones stay observable.
    settings = settings_for(
        tmp_path, max_value_bytes=1000, max_key_bytes=64, anti_entropy_interval_ms=600_000
    )
    async with running_app(settings) as (_, http):
        yield http


def assert_error(response: httpx.Response, status: int, error: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["detail"]
    if error is not None:
        assert body["error"] == error


async def test_put_then_get_round_trips_bytes_and_content_type(client: httpx.AsyncClient) -> None:
    values = {
        "bin": (bytes(range(256)), "application/octet-stream"),
        "json": (b'{"a": [1, 2, "\xc3\xa9"]}', "application/json"),
        "text": ("héllo wörld\n".encode(), "text/plain; charset=utf-8"),
    }
    for key, (value, content_type) in values.items():
        put = await client.put(
            f"/kv/{key}", content=value, headers={**ADMIN, "content-type": content_type}
        )
        assert put.status_code == 201, put.text
        body = put.json()
        assert set(body) == {"key", "context", "hlc", "origin"}
        assert put.headers["etag"] == f'"{body["context"]}"'
        got = await client.get(f"/kv/{key}", headers=READER)
        assert got.status_code == 200
        assert got.content == value
        assert got.headers["content-type"] == content_type
        assert got.headers["etag"] == put.headers["etag"]
        assert got.headers["x-rumor-context"] == body["context"]


async def test_put_without_content_type_defaults_to_octet_stream(client: httpx.AsyncClient) -> None:
    request = client.build_request("PUT", "/kv/raw", content=b"x", headers=ADMIN)
    assert "content-type" not in request.headers
    assert (await client.send(request)).status_code == 201
    got = await client.get("/kv/raw", headers=READER)
    assert got.headers["content-type"] == "application/octet-stream"


async def test_second_put_is_200_and_post_on_live_key_is_409(client: httpx.AsyncClient) -> None:
    assert (await client.post("/kv/k", content=b"1", headers=ADMIN)).status_code == 201
    assert (await client.put("/kv/k", content=b"2", headers=ADMIN)).status_code == 200
    assert_error(await client.post("/kv/k", content=b"3", headers=ADMIN), 409, "exists")
    assert (await client.get("/kv/k", headers=ADMIN)).content == b"2"


async def test_post_after_delete_creates_again(client: httpx.AsyncClient) -> None:
    await client.put("/kv/k", content=b"1", headers=ADMIN)
    deleted = await client.delete("/kv/k", headers=ADMIN)
    assert deleted.status_code == 200
    assert deleted.json()["deleted"] is True and deleted.json()["key"] == "k"
    assert (await client.post("/kv/k", content=b"2", headers=ADMIN)).status_code == 201


async def test_missing_and_deleted_keys_are_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/kv/nope", headers=READER), 404, "not_found")
    assert_error(await client.delete("/kv/nope", headers=ADMIN), 404, "not_found")
    await client.put("/kv/gone", content=b"x", headers=ADMIN)
    await client.delete("/kv/gone", headers=ADMIN)
    assert_error(await client.get("/kv/gone", headers=READER), 404)
    assert_error(await client.delete("/kv/gone", headers=ADMIN), 404)


async def test_auth_401_for_missing_unknown_or_malformed_keys(client: httpx.AsyncClient) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"X-API-Key": "wrong"},
        {"Authorization": f"Basic {ADMIN_KEY}"},
        {"Authorization": f"Bearer {ADMIN_KEY}-admin-2099-12-31"},
        {"X-API-Key": "xxxxxxxx-admin-2099-12-31"},
    ):
        assert_error(await client.get("/kv/k", headers=headers), 401, "unauthorized")
        assert_error(await client.put("/kv/k", content=b"v", headers=headers), 401)
    assert_error(await client.get("/kv", headers={}), 401)
    assert_error(await client.get("/cluster"), 401)
    assert_error(await client.get("/metrics"), 401)


async def test_reader_cannot_write_403(client: httpx.AsyncClient) -> None:
    assert_error(await client.put("/kv/k", content=b"v", headers=READER), 403, "forbidden")
    assert_error(await client.post("/kv/k", content=b"v", headers=READER), 403)
    assert_error(await client.delete("/kv/k", headers=READER), 403)
    reader_bearer = {"Authorization": f"Bearer {READER_KEY}"}
    assert (await client.get("/kv", headers=reader_bearer)).status_code == 200


async def test_bad_keys_are_400_and_long_keys_414(client: httpx.AsyncClient) -> None:
    assert_error(await client.put("/kv/", content=b"v", headers=ADMIN), 400, "invalid_key")
    assert_error(await client.put("/kv/a%01b", content=b"v", headers=ADMIN), 400, "invalid_key")
    assert_error(await client.get("/kv/%ff%fe", headers=ADMIN), 400, "invalid_key")
    assert_error(await client.put("/kv/" + "k" * 65, content=b"v", headers=ADMIN), 414)
    ok = await client.put("/kv/a%2Fb%20c", content=b"v", headers=ADMIN)
    assert ok.status_code == 201 and ok.json()["key"] == "a/b c"
    assert (await client.get("/kv/a/b c", headers=ADMIN)).content == b"v"


async def test_value_too_large_is_413(client: httpx.AsyncClient) -> None:
    assert_error(await client.put("/kv/big", content=b"x" * 1001, headers=ADMIN), 413)
    assert (await client.put("/kv/big", content=b"x" * 1000, headers=ADMIN)).status_code == 201


async def test_streamed_value_too_large_is_413_without_reading_it_all(
    client: httpx.AsyncClient,
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1000):
            sent += 1
            yield b"y" * 100

    response = await client.put("/kv/stream", content=chunks(), headers=ADMIN)
    assert_error(response, 413, "value_too_large")
    assert sent < 1000  # the handler stopped reading: the body was never buffered whole
    assert_error(
        await client.put("/kv/x", content=b"1", headers={**ADMIN, "content-length": "zz"}), 400
    )


async def test_meta_describes_the_version_and_tombstones(client: httpx.AsyncClient) -> None:
    put = await client.put("/kv/m", content=b"abc", headers={**ADMIN, "content-type": "text/plain"})
    meta = (await client.get("/kv/m?meta=true", headers=READER)).json()
    assert meta["key"] == "m" and meta["size"] == 3 and meta["content_type"] == "text/plain"
    assert meta["value_sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert set(meta["clock"]) == {"t1"} and meta["origin"] == "t1" and meta["node"] == "t1"
    assert meta["context"] == put.json()["context"] and meta["hlc"] == put.json()["hlc"]
    assert meta["tombstone"] is False and meta["discarded"] is None
    assert meta["hlc_ms"] > 1_600_000_000_000
    await client.delete("/kv/m", headers=ADMIN)
    after = (await client.get("/kv/m?meta=true", headers=READER)).json()
    assert after["tombstone"] is True and after["clock"]["t1"] > meta["clock"]["t1"]
    assert_error(await client.get("/kv/never?meta=true", headers=READER), 404)


async def test_if_match_flow(client: httpx.AsyncClient) -> None:
    first = await client.put("/kv/c", content=b"1", headers=ADMIN)
    etag = first.headers["etag"]
    second = await client.put("/kv/c", content=b"2", headers={**ADMIN, "If-Match": etag})
    assert second.status_code == 200
    # The first context is now stale: the key moved on.
    assert_error(await client.put("/kv/c", content=b"3", headers={**ADMIN, "If-Match": etag}), 412)
    assert_error(await client.delete("/kv/c", headers={**ADMIN, "If-Match": etag}), 412)
    assert_error(
        await client.put("/kv/c", content=b"3", headers={**ADMIN, "If-Match": '"garbage!"'}),
        400,
        "invalid_context",
    )
    assert_error(
        await client.put("/kv/c", content=b"3", headers={**ADMIN, "If-Match": 'W/"x"'}), 400
    )
    current = second.headers["etag"]
    before = (await client.get("/kv/c?meta=true", headers=READER)).json()
    deleted = await client.delete("/kv/c", headers={**ADMIN, "If-Match": current})
    assert deleted.status_code == 200
    meta = (await client.get("/kv/c?meta=true", headers=READER)).json()
    assert meta["tombstone"] and meta["clock"]["t1"] > before["clock"]["t1"]


async def test_listing_paginates_with_prefix_and_after(client: httpx.AsyncClient) -> None:
    for i in range(5):
        await client.put(f"/kv/p{i}", content=b"v", headers=ADMIN)
    await client.put("/kv/q0", content=b"v", headers=ADMIN)
    await client.put("/kv/p9", content=b"v", headers=ADMIN)
    await client.delete("/kv/p9", headers=ADMIN)
    page = (await client.get("/kv?prefix=p&limit=3", headers=READER)).json()
    assert page == {"keys": ["p0", "p1", "p2"], "next": "p2"}
    rest = (await client.get("/kv?prefix=p&limit=3&after=p2", headers=READER)).json()
    assert rest == {"keys": ["p3", "p4"], "next": None}
    everything = (await client.get("/kv", headers=READER)).json()
    assert everything["keys"] == ["p0", "p1", "p2", "p3", "p4", "q0"]
    for bad in ("0", "1001", "x", "-1"):
        assert_error(await client.get(f"/kv?limit={bad}", headers=READER), 400)


async def test_unsupported_method_is_405_json(client: httpx.AsyncClient) -> None:
    assert_error(await client.patch("/kv/k", content=b"v", headers=ADMIN), 405)


async def test_unknown_route_is_404_json(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/nowhere"), 404)
    assert_error(await client.get("/faults", headers=ADMIN), 404)  # no --allow-faults
    assert_error(await client.post("/faults", json={"block": ["x"]}, headers=ADMIN), 404)


async def test_health_heartbeat_cluster_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok", "node_id": "t1"}
    beat = (await client.get("/heartbeat")).json()
    assert beat["node_id"] == "t1" and beat["incarnation"] == 1
    await client.put("/kv/a", content=b"v", headers=ADMIN)
    view = (await client.get("/cluster", headers=READER)).json()
    assert view["node_id"] == "t1" and view["keys"] == 1 and view["sharding"] is False
    assert view["ownership"] is None
    assert [m["id"] for m in view["members"]] == ["t1"]
    member = view["members"][0]
    assert set(member) == {"id", "url", "state", "incarnation", "heartbeat", "last_heartbeat_age_s"}
    text = (await client.get("/metrics", headers=READER)).text
    assert 'rumor_http_requests_total{route="kv_put",status="201"} 1.0' in text
    assert 'rumor_http_request_duration_seconds_count{route="kv_put"} 1.0' in text
    assert "rumor_keys 1.0" in text
    assert 'rumor_members{state="alive"} 1.0' in text


async def test_metrics_count_group_commits_on_disk(tmp_path: Path) -> None:
    async with running_app(settings_for(tmp_path, durability="sync")) as (_, http):
        before = (await http.get("/metrics", headers=READER)).text
        assert "rumor_storage_records_written_total 0.0" in before
        await asyncio.gather(
            *(http.put(f"/kv/k{i}", content=b"v", headers=ADMIN) for i in range(20))
        )
        text = (await http.get("/metrics", headers=READER)).text
    assert "rumor_storage_records_written_total 20.0" in text
    assert "rumor_storage_compactions_total" in text
    commits = float(text.split("\nrumor_storage_commits_total ")[1].split()[0])
    assert 1 <= commits <= 20  # concurrent writes share group commits


async def test_tombstones_and_database_size_are_shown_to_operators(tmp_path: Path) -> None:
    """``/metrics`` and ``/cluster`` show tombstones, the file's size and its rows."""
    settings = settings_for(tmp_path, durability="sync", anti_entropy_interval_ms=600_000)
    async with running_app(settings) as (_, http):
        for i in range(30):
            await http.put(f"/kv/k{i}", content=b"v" * 100, headers=ADMIN)
        for i in range(10):
            assert (await http.delete(f"/kv/k{i}", headers=ADMIN)).status_code == 200
        view: dict[str, Any] = {}
        deadline = asyncio.get_running_loop().time() + 15
        while asyncio.get_running_loop().time() < deadline:  # rows: counted after a fold
            view = (await http.get("/cluster", headers=READER)).json()
            if view["storage"]["rows"] == 30:
                break
            await asyncio.sleep(0.1)
        text = (await http.get("/metrics", headers=READER)).text
    assert view["tombstones"] == 10 and view["keys"] == 20
    storage = view["storage"]
    assert storage["rows"] == 30 and storage["log_rows"] == 0 and storage["reclaims"] is True
    # Until a checkpoint, new pages sit in the WAL; closing checkpoints them into the file.
    assert 0 < storage["db_bytes"] <= (tmp_path / "t1" / "rumor.sqlite3").stat().st_size
    assert storage["wal_bytes"] > 0
    assert "rumor_tombstones 10.0" in text
    assert "rumor_storage_rows 30.0" in text
    for name in ("db_bytes", "wal_bytes", "free_bytes"):
        assert f"\nrumor_storage_{name} " in text
    assert "rumor_storage_pages_reclaimed_total" in text


async def test_memory_mode_shows_no_database(client: httpx.AsyncClient) -> None:
    assert (await client.get("/cluster", headers=READER)).json()["storage"] is None
    assert "rumor_storage_db_bytes" not in (await client.get("/metrics", headers=READER)).text


async def test_openapi_documents_every_endpoint(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    for path in ("/kv", "/kv/{key}", "/gossip", "/health", "/heartbeat", "/cluster", "/metrics"):
        assert path in paths, path
    assert set(paths["/kv/{key}"]) == {"get", "head", "put", "post", "delete"}
    assert (await client.get("/docs")).status_code == 200


async def test_gossip_without_or_with_wrong_secret_is_401_and_counted(
    client: httpx.AsyncClient,
) -> None:
    from rumordb.live.gossip_client import Envelope, seal_envelope
    from rumordb.live.wire import Signer

    assert_error(await client.post("/gossip", content=b"not sealed"), 401, "unauthenticated")
    forged = seal_envelope(
        Signer("another secret"), Envelope("evil", [b"x"]), 0.0 + __import__("time").time(), "t1"
    )
    assert_error(await client.post("/gossip", content=forged), 401)
    text = (await client.get("/metrics", headers=READER)).text
    assert 'rumor_unauthenticated_dropped_total{channel="gossip"} 2.0' in text


async def test_json_errors_for_malformed_fault_bodies(tmp_path: Path) -> None:
    async with running_app(settings_for(tmp_path, allow_faults=True)) as (_, http):
        assert_error(await http.post("/faults", json={"block": ["x"]}, headers=READER), 403)
        assert_error(await http.post("/faults", json={"block": ["x"]}), 401)
        assert_error(await http.post("/faults", content=b"{", headers=ADMIN), 400)
        assert_error(await http.post("/faults", json={"loss": 2}, headers=ADMIN), 400)
        assert_error(await http.post("/faults", json={"nope": 1}, headers=ADMIN), 400)
        ok = await http.post("/faults", json={"block": ["n2"], "delay_ms": 5}, headers=ADMIN)
        assert ok.status_code == 200
        assert ok.json()["block_to"] == ["n2"] and ok.json()["delay_ms"] == 5
        merged = await http.post("/faults", json={"block_from": ["n3"]}, headers=ADMIN)
        assert merged.json()["block_from"] == ["n2", "n3"]
        healed = await http.delete("/faults", headers=ADMIN)
        assert healed.json()["block_to"] == [] and healed.json()["delay_ms"] == 0
        assert json.loads((await http.get("/faults", headers=ADMIN)).text)["loss"] == 0.0


async def test_unexpected_errors_become_logged_json_500s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_app(settings_for(tmp_path)) as (app, http):
        runner = app.state.runner

        def broken(*args: object) -> None:
            raise RuntimeError("injected bug")

        monkeypatch.setattr(runner.node, "read", broken)
        monkeypatch.setattr(runner, "cluster_view", broken)
        assert_error(await http.get("/kv/k", headers=READER), 500, "internal_error")
        assert_error(await http.get("/cluster", headers=READER), 500, "internal_error")
        assert (await http.get("/health")).status_code == 200  # still serving


async def test_kv_and_gossip_run_through_the_app_middleware_stack(tmp_path: Path) -> None:
    from rumordb.live.app import create_app

    app = create_app(settings_for(tmp_path), discovery=False)
    seen: list[str] = []

    class Recorder:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                seen.append(scope["path"])
            await self.inner(scope, receive, send)

    app.add_middleware(Recorder)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as http,
    ):
        await http.put("/kv/k", content=b"v", headers=ADMIN)
        await http.post("/gossip", content=b"x")
        await http.get("/health")
    assert seen == ["/kv/k", "/gossip", "/health"]


async def test_kv_skips_the_stack_layers_also_when_a_server_ran_the_lifespan(
    tmp_path: Path,
) -> None:
    """uvicorn starts the app through its ASGI entry, where Starlette builds the middleware
    stack; with no user middleware, ``/kv`` must still be served without its layers."""
    from rumordb.live.app import create_app

    app = create_app(settings_for(tmp_path), discovery=False)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, outbox.put)
    )
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.put("/kv/k", content=b"v", headers=ADMIN)).status_code == 201
            layered: list[str] = []
            stack = app.middleware_stack

            async def recording(scope: Any, receive: Any, send: Any) -> None:
                layered.append(scope["path"])
                assert stack is not None
                await stack(scope, receive, send)

            app.middleware_stack = recording
            assert (await http.get("/kv/k", headers=READER)).content == b"v"
            assert (await http.get("/health")).status_code == 200
            assert layered == ["/health"], "/kv went through the layers it folds"
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await lifespan


async def test_gossip_from_a_client_that_disconnects_mid_body_is_400_not_unauthenticated(
    tmp_path: Path,
) -> None:
    async with running_app(settings_for(tmp_path)) as (app, _):
        sent: list[dict[str, Any]] = []
        messages = iter(
            [{"type": "http.request", "body": b"x", "more_body": True}, {"type": "http.disconnect"}]
        )

        async def receive() -> dict[str, Any]:
            return next(messages)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/gossip", "headers": []}
        await app(scope, receive, send)
        assert sent[0]["status"] == 400
        assert json.loads(sent[1]["body"])["error"] == "client_disconnected"
        text = app.state.runner.metrics.render().decode()
        assert 'rumor_unauthenticated_dropped_total{channel="gossip"}' not in text


async def test_a_failed_commit_is_503_json_and_the_next_write_succeeds(tmp_path: Path) -> None:
    from tests.live.test_storage import inject_commit_failures

    async with running_app(settings_for(tmp_path, durability="sync")) as (app, http):
        inject_commit_failures(app.state.runner.storage, failures=1)
        assert_error(await http.put("/kv/k", content=b"lost", headers=ADMIN), 503)
        health = (await http.get("/health")).json()
        assert health["status"] == "degraded"
        assert "disk is full" in health["problems"][0]
        text = (await http.get("/metrics", headers=READER)).text
        assert "rumor_storage_commit_failures_total 1.0" in text
        assert "rumor_storage_failing_commits 1.0" in text
        assert (await http.get("/kv/k", headers=READER)).status_code == 404, "nothing kept"
        put = await http.put("/kv/k", content=b"kept", headers=ADMIN)
        assert put.status_code == 201, "the refused write left nothing behind: " + put.text
        assert (await http.get("/kv/k", headers=READER)).content == b"kept"
        assert (await http.get("/health")).json() == {"status": "ok", "node_id": "t1"}
        text = (await http.get("/metrics", headers=READER)).text
        assert "rumor_storage_failing_commits 0.0" in text


# --- authentication: one gate for every route ----------------------------------------
AUTH_ROUTES = [("GET", "/kv/k"), ("PUT", "/kv/k"), ("GET", "/kv"), ("GET", "/cluster")]
AUTH_ROUTES += [("GET", "/metrics"), ("GET", "/faults")]


@pytest.mark.parametrize(
    "headers",
    [
        [("Authorization", f"Bearer {ADMIN_KEY}"), ("Authorization", f"Bearer {READER_KEY}")],
        [("X-API-Key", ADMIN_KEY), ("X-API-Key", ADMIN_KEY)],
        [("Authorization", f"Bearer {READER_KEY}"), ("X-API-Key", ADMIN_KEY)],
    ],
)
async def test_duplicate_credentials_are_400_json_on_every_route(
    tmp_path: Path, headers: list[tuple[str, str]]
) -> None:
    async with running_app(settings_for(tmp_path, allow_faults=True)) as (_, http):
        for method, path in AUTH_ROUTES:
            response = await http.request(method, path, headers=headers, content=b"v")
            assert_error(response, 400, "duplicate_credentials")
        assert (await http.get("/kv/k", headers=READER)).status_code == 404  # nothing stored


async def test_failed_authentication_is_throttled_per_address_with_retry_after(
    tmp_path: Path,
) -> None:
    settings = settings_for(
        tmp_path, allow_faults=True, auth_failure_burst=3, auth_failure_refill_per_s=0.01
    )
    async with running_app(settings) as (app, http):
        wrong = {"X-API-Key": "wrong-" + ADMIN_KEY}
        for path in ("/kv/a", "/cluster", "/kv/b"):  # failures count across routes
            assert_error(await http.get(path, headers=wrong), 401, "unauthorized")
        for method, path in AUTH_ROUTES:
            throttled = await http.request(method, path, headers=ADMIN, content=b"v")
            assert_error(throttled, 429, "too_many_failures")
            assert 1 <= int(throttled.headers["retry-after"]) <= 100
        other = httpx.ASGITransport(app=app, client=("10.9.9.9", 1))
        async with httpx.AsyncClient(transport=other, base_url="http://t") as elsewhere:
            ok = await elsewhere.get("/metrics", headers=READER)
        assert ok.status_code == 200
    assert 'rumor_auth_failures_total{reason="unknown"} 3.0' in ok.text
    assert f"rumor_auth_throttled_total {len(AUTH_ROUTES)}.0" in ok.text
