"""The runner: its receive path (persist, then send; never make a peer wait for nothing)
and its client requests (returned values; forwarding where the core says)."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import anyio
import httpx
import pytest

from rumordb.core import Local, Node, WriteCommand, WriteResult, WriteStatus
from rumordb.live.discovery import Announcement
from rumordb.live.forward import Request
from rumordb.live.runner import NotStored, Runner
from rumordb.live.storage import Storage
from tests.live.harness import settings_for

pytestmark = pytest.mark.anyio


def pushes_from_n2(count: int, now: float) -> list[bytes]:
    n2 = Node("n2", "http://127.0.0.1:1", rng=random.Random(2), now=now)
    n2.join("t1", "http://127.0.0.1:2", 1, now)
    for i in range(count):
        n2.put(f"k{i}", b"v%d" % i, "text/plain", now)
    return [data for target, data in n2.flush(now).messages if target == "t1"]


async def test_a_push_is_answered_before_the_replica_commits_and_still_persisted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Direct mail needs no reply: the peer's post returns at once, the commit follows."""
    release = threading.Event()
    commit = Storage._commit

    def slow_commit(self: Storage, jobs: list[object]) -> object:
        release.wait(10)  # a slow disk, or a log compaction in progress
        return commit(self, jobs)  # type: ignore[arg-type]

    monkeypatch.setattr(Storage, "_commit", slow_commit)
    settings = settings_for(tmp_path, durability="sync", anti_entropy_interval_ms=600_000)
    runner = Runner(settings, discovery=False)
    await runner.start()
    try:
        now = time.time()
        started = time.monotonic()
        replies = await runner.receive("n2", pushes_from_n2(5, now))
        assert replies == []
        assert time.monotonic() - started < 1.0  # not held by the 10 s commit
        assert runner.node.view.get("k4") is not None  # visible at once (soft state)
    finally:
        release.set()
        await runner.stop()  # waits for the pending persist and commits it
    storage = Storage.open(tmp_path / "t1", "sync")
    try:
        assert sorted(key for key, _ in storage.load()) == [f"k{i}" for i in range(5)]
    finally:
        storage.close_sync()


async def test_a_large_post_is_applied_in_slices_with_loop_turns_between(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A post of many pushes does not hold the loop: others run between its slices, and
    every slice is applied and persisted."""
    import rumordb.live.runner as runner_module

    monkeypatch.setattr(runner_module, "RECEIVE_SLICE_S", 0.0)  # one message a slice
    settings = settings_for(tmp_path, durability="sync", anti_entropy_interval_ms=600_000)
    runner = Runner(settings, discovery=False)
    await runner.start()
    try:
        now = time.time()
        pushes = pushes_from_n2(2_000, now)
        assert len(pushes) >= 4  # max_batch updates a message
        seen: list[int] = []

        async def reader() -> None:  # a request that arrives while the post is applied
            for _ in range(len(pushes)):
                seen.append(sum(runner.node.view.get(f"k{i}") is not None for i in range(2_000)))
                await anyio.sleep(0)

        async with anyio.create_task_group() as group:
            group.start_soon(reader)
            await anyio.sleep(0)
            assert await runner.receive("n2", pushes) == []
        assert any(0 < held < 2_000 for held in seen), seen  # served mid-post
        assert all(runner.node.view.get(f"k{i}") is not None for i in range(2_000))
    finally:
        await runner.stop()
    storage = Storage.open(tmp_path / "t1", "sync")
    try:
        assert len({key for key, _ in storage.load()}) == 2_000
    finally:
        storage.close_sync()


async def test_a_backlog_of_group_commits_gives_the_loop_a_turn_between_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In batch mode a persist is settled at once: the writer still lets waiting requests
    run between two group commits, instead of applying a whole backlog in one turn."""
    import rumordb.live.runner as runner_module

    monkeypatch.setattr(runner_module, "MAX_WRITE_BATCH", 10)  # a group commit a batch
    settings = settings_for(tmp_path, durability="batch", anti_entropy_interval_ms=600_000)
    runner = Runner(settings, discovery=False)
    await runner.start()
    try:
        seen: list[int] = []
        done = False

        async def reader() -> None:  # reads that wait while the backlog is written
            while not done:
                seen.append(sum(runner.node.view.get(f"k{i}") is not None for i in range(40)))
                await anyio.sleep(0)

        async def batch(first: int) -> None:
            commands = [WriteCommand(f"k{i}", b"v", "text/plain") for i in range(first, first + 10)]
            answers = await runner.write_batch(commands, lambda _: relay("POST"))
            assert all(isinstance(a, WriteResult) for a in answers)

        async with anyio.create_task_group() as group:
            group.start_soon(reader)
            async with anyio.create_task_group() as writers:
                for first in range(0, 40, 10):
                    writers.start_soon(batch, first)
            done = True
        assert any(0 < held < 40 for held in seen), seen  # served between commits
        assert seen[-1] == 40
    finally:
        await runner.stop()


async def test_replies_still_wait_for_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receive that sends something back persists first (the core's contract)."""
    from rumordb.core.hashing import key_hash
    from rumordb.core.messages import SyncRecords, Update, encode

    settings = settings_for(tmp_path, durability="sync", anti_entropy_interval_ms=600_000)
    runner = Runner(settings, discovery=False)
    await runner.start()
    try:
        now = time.time()
        await runner.receive("n2", pushes_from_n2(1, now))  # t1 now holds k0
        persisted: list[str] = []
        persist = runner.storage.persist

        async def slow_persist(
            writes: list[tuple[str, object]], purges: list[str], durable: bool = True
        ) -> None:
            await anyio.sleep(0.2)
            await persist(writes, purges, durable)  # type: ignore[arg-type]
            persisted.extend(key for key, _ in writes)

        monkeypatch.setattr(runner.storage, "persist", slow_persist)
        n2 = Node("n2", "http://127.0.0.1:1", rng=random.Random(3), now=now)
        n2.put("fresh", b"new", "text/plain", now)
        sync = SyncRecords("n2", 1, [Update("fresh", n2.view.records()["fresh"])], [key_hash("k0")])
        replies = await runner.receive("n2", [encode(sync)])
        assert replies, "anti-entropy asked for k0: t1 answers with it"
        assert persisted == ["fresh"]  # committed before the answer left
    finally:
        await runner.stop()


async def test_a_purge_a_peer_asks_for_is_remembered_before_it_can_reach_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The purged-version memory must outlive a crash right after the purge is stored:
    without it, a stale re-send of the key would be taken after a restart."""
    from rumordb.core.messages import Held, PushAck, encode

    runner = Runner(settings_for(tmp_path, durability="batch"), discovery=False)
    await runner.start()
    try:
        now = time.time()
        await runner.receive("n2", pushes_from_n2(1, now))  # t1 now holds k0
        held = runner.view.version("k0")
        assert held is not None
        remembered_at_persist: list[list[str]] = []
        persist = runner.storage.persist

        def watching_persist(
            writes: list[tuple[str, object]], purges: list[str], durable: bool = True
        ) -> object:
            remembered_at_persist.append([key for key, _ in runner.storage.load_purged()])
            return persist(writes, purges, durable)  # type: ignore[arg-type]

        monkeypatch.setattr(runner.storage, "persist", watching_persist)
        # n2 purged a delete of k0 newer than what t1 holds: t1's copy is stale everywhere.
        purged = Held("k0", held.hlc + 1, "n2", ["n2", "t1"], purged=True)
        await runner.receive("n2", [encode(PushAck("n2", [], [purged]))])
        assert runner.view.version("k0") is None
        assert remembered_at_persist == [["k0"]]
    finally:
        await runner.stop()


async def test_a_batch_whose_commit_fails_is_undone_and_nothing_computed_meanwhile_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 503 write is not stored: not in memory, and not in a reply computed during it."""
    from rumordb.core.hashing import key_hash
    from rumordb.core.messages import SyncRecords, encode

    settings = settings_for(tmp_path, durability="sync", anti_entropy_interval_ms=600_000)
    runner = Runner(settings, discovery=False)
    await runner.start()
    try:
        committing = anyio.Event()

        async def failing_persist(*args: object, **kwargs: object) -> None:
            committing.set()
            await anyio.sleep(0.2)
            raise OSError("disk full")

        monkeypatch.setattr(runner.storage, "persist", failing_persist)
        replies: list[bytes] = [b"not answered"]
        async with anyio.create_task_group() as tasks:

            async def write() -> None:
                failed = await runner.write(WriteCommand("k", b"lost"), relay("PUT"))
                assert isinstance(failed, NotStored)

            async def ask_for_k() -> None:
                await committing.wait()
                assert runner.view.get("k") is not None, "visible while it commits"
                sync = SyncRecords("n2", 1, [], [key_hash("k")])
                replies[:] = await runner.receive("n2", [encode(sync)])

            tasks.start_soon(write)
            tasks.start_soon(ask_for_k)
        assert replies == [], "the reply would have carried the undone version"
        assert runner.view.version("k") is None
    finally:
        await runner.stop()


# --- client requests: returned values, forwarding where the core says ----------------------
def relay(method: str = "GET", path: bytes = b"/kv/k") -> Request:
    return Request(method, path, b"", [], b"")


async def test_a_write_returns_its_result_and_a_storage_failure_is_not_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = Runner(settings_for(tmp_path, durability="sync"), discovery=False)
    await runner.start()
    try:
        result = await runner.write(WriteCommand("k", b"v", "text/plain"), relay("PUT"))
        assert isinstance(result, WriteResult) and result.status is WriteStatus.CREATED
        assert runner.view.version("k") == result.record

        async def failing_persist(*args: object, **kwargs: object) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(runner.storage, "persist", failing_persist)
        failed = await runner.write(WriteCommand("k2", b"v"), relay("PUT"))
        assert failed == NotStored("unavailable", "the write was not stored: disk full")
    finally:
        await runner.stop()
    assert await runner.write(WriteCommand("k3"), relay("PUT")) == NotStored(
        "unavailable", "the node is starting or stopping"
    )


async def test_too_many_waiting_writes_are_refused_as_overloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rumordb.live.runner.MAX_PENDING_WRITES", 0)
    runner = Runner(settings_for(tmp_path), discovery=False)
    await runner.start()
    try:
        answer = await runner.write(WriteCommand("k", b"v"), relay("PUT"))
        assert isinstance(answer, NotStored) and answer.error == "overloaded"
    finally:
        await runner.stop()


async def test_sharded_reads_and_listings_ask_the_peers_the_core_names(tmp_path: Path) -> None:
    asked: list[str] = []

    def peer(request: httpx.Request) -> httpx.Response:
        asked.append(f"{request.method} {request.url.host}{request.url.path}")
        if request.url.path == "/kv":
            return httpx.Response(200, json={"keys": ["b", "a"]})
        return httpx.Response(404, json={"error": "not_found", "detail": "no"})

    settings = settings_for(tmp_path, sharding=True, replicas=2)
    runner = Runner(settings, transport=httpx.MockTransport(peer), discovery=False)
    await runner.start()
    try:
        runner.on_peer(Announcement("t2", "http://t2", 1))
        answer = await runner.read("k", relay())
        # t1 owns k (2 replicas of 2 members) but never saw it: t2 may hold it already;
        # t2's 404 does not count, so the answer is "not found" here.
        assert answer == Local(None) and asked == ["GET t2/kv/k"]
        keys = await runner.list_keys("", 10, "", Request("GET", b"/kv", b"limit=10", []))
        assert keys == ["a", "b"] and asked[-1] == "GET t2/kv"
        forwarded = Request("GET", b"/kv/k", b"", [], b"", forwarded=True)
        assert await runner.read("k", forwarded) == Local(None) and len(asked) == 2
    finally:
        await runner.stop()


async def test_a_restart_with_a_large_store_serves_reads_at_once_and_loads_the_rest_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads are answered (from the disk for keys not loaded yet) while the store loads;
    writes, listings and /health ok wait until every record is in memory."""
    import rumordb.live.startup as startup_module
    from tests.live.harness import ADMIN, eventually, running_app

    monkeypatch.setattr(startup_module, "LOAD_STEP_ROWS", 1)  # one record per loop turn
    monkeypatch.setattr(startup_module, "LOAD_SLICE_S", 0.0)
    keys = [f"k{i:05d}" for i in range(3000)]
    storage = Storage.open(tmp_path / "t1", "batch")
    now = time.time()
    node = Node("n0", rng=random.Random(0), now=now)
    stored = [(key, node.put(key, b"v" + key.encode(), "text/plain", now).record) for key in keys]
    stored.append(("zgone", node.delete("k00000", now).record))  # a tombstone, loaded last
    await storage.persist([(k, r) for k, r in stored if r is not None], [])
    await storage.close()

    settings = settings_for(tmp_path, durability="batch")
    async with running_app(settings) as (app, client):
        runner = app.state.runner
        assert runner.loading
        last = await client.get(f"/kv/{keys[-1]}", headers=ADMIN)  # not loaded yet: from disk
        assert (last.status_code, last.content) == (200, b"v" + keys[-1].encode())
        assert (await client.get("/kv/zgone", headers=ADMIN)).status_code == 404
        assert (await client.get("/kv/never-stored", headers=ADMIN)).status_code == 404
        assert (await client.get("/health")).json()["status"] == "starting"
        assert (await client.get("/ready")).status_code == 503
        assert (await client.put("/kv/new", content=b"x", headers=ADMIN)).status_code == 503
        assert (await client.get("/kv", headers=ADMIN)).status_code == 503  # a partial page
        assert runner.loading, "every answer above came while the store was loading"

        async def healthy() -> bool:
            return bool((await client.get("/health")).json()["status"] == "ok")

        await eventually(healthy, timeout_s=60)
        listed: list[str] = []
        after = ""
        while True:
            page = (await client.get("/kv", params={"after": after, "limit": 1000}, headers=ADMIN)).json()  # fmt: skip
            listed += page["keys"]
            if page["next"] is None:
                break
            after = page["next"]
        assert listed == keys
        assert (await client.put("/kv/new", content=b"x", headers=ADMIN)).status_code in (200, 201)


async def test_a_restart_after_batches_reloads_every_version_they_acknowledged(
    tmp_path: Path,
) -> None:
    """New keys, overwrites, deletes and TTLs in batches: a restart reads back the very
    records (and digest) the node held when it acknowledged them."""
    from rumordb.core.digest import Digest, fingerprint

    settings = settings_for(tmp_path, durability="sync", anti_entropy_interval_ms=600_000)
    batches = [
        [WriteCommand(f"k{i:04d}", b"v%d" % i, "text/plain") for i in range(1500)],
        [
            WriteCommand("k0001", b"again", "text/plain"),  # an overwrite
            WriteCommand("k0002", delete=True),
            WriteCommand("k0003", b"brief", "text/plain", ttl_ms=3_600_000),
            WriteCommand("fresh", b"new", "text/plain"),
            WriteCommand("fresh", b"newer", "text/plain"),  # the same key twice
        ],
    ]
    runner = Runner(settings, discovery=False)
    await runner.start()
    try:
        for batch in batches:
            answers = await runner.write_batch(batch, lambda _: relay("POST"))
            assert all(isinstance(a, WriteResult) for a in answers)
        held = dict(runner.node.store.records)
        root = runner.node.store.digest(lambda _: [runner.node_id], runner.node_id).root
    finally:
        await runner.stop()
    assert held["k0001"].value == b"again" and held["k0002"].tombstone
    assert held["k0003"].expires and held["fresh"].value == b"newer"
    again = Runner(settings, discovery=False)
    await again.start()
    try:
        deadline = time.monotonic() + 30
        while again.loading and time.monotonic() < deadline:  # the rest loads behind
            await anyio.sleep(0.01)
        reloaded = dict(again.node.store.records)
        # Alone, the node holds every member's copy of its tombstone: it may purge it
        # (remembering the purged version) before or after the restart.
        if "k0002" not in reloaded:
            assert "k0002" in again.node.replica.tombstones.purged
            held.pop("k0002")
            root = None
        assert reloaded == held
        store = again.node.store
        digest = store.digest(lambda _: [again.node_id], again.node_id)
        assert digest.root == (root or Digest.of(
            (key, fingerprint(r.hlc, r.origin, r.tombstone)) for key, r in reloaded.items()
        ).root)  # fmt: skip
        assert store.list_live("", 2000, "") == sorted(
            k for k, r in held.items() if not r.tombstone
        )
    finally:
        await again.stop()


async def test_the_warm_read_check_follows_the_record_table_when_it_splits(
    tmp_path: Path,
) -> None:
    """Past ``SPLIT_KEYS`` the table's lookup is another object: the runner's bound
    ``version_token`` (every warm read checks it) must be that one."""
    runner = Runner(settings_for(tmp_path, anti_entropy_interval_ms=600_000), discovery=False)
    await runner.start()
    try:
        runner.node.store.records._split_at = 3
        for i in range(5):
            assert isinstance(
                await runner.write(WriteCommand(f"k{i}", b"v"), relay("PUT")), WriteResult
            )
        assert runner.version_token == runner.node.store.records.version_token
        assert runner.version_token("k4") is not None  # stored since the split: in a shard
    finally:
        await runner.stop()
