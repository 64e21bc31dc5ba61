"""``Client`` and ``AsyncClient`` against real node processes on loopback."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from rumordb import AsyncClient, Client, errors
from tests.live.harness import ADMIN_KEY, READER_KEY, Cluster, free_tcp_port

pytestmark = [pytest.mark.live]

ODD_KEYS = [".", "..", "a/b", "sp ace", "q?x=1#f", "100%", "ключ", "emoji-🙂", "..."]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path_factory.mktemp("client"))
    try:
        nodes.add("c1")
        nodes.add("c2")
        nodes.wait_ready()
        nodes.wait_members({"c1", "c2"})
        yield nodes
    finally:
        nodes.close()


def urls(cluster: Cluster) -> list[str]:
    return [node.url for node in cluster.nodes.values()]


@pytest.fixture(params=["stdlib", "httpx"])
def db(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[Client]:
    with Client(urls(cluster), api_key=ADMIN_KEY, transport=request.param) as client:
        yield client


@pytest.mark.parametrize("key", ODD_KEYS)
def test_any_valid_key_round_trips(db: Client, key: str) -> None:
    written = db.put(key, f"value of {key}")
    assert written.key == key
    assert db.get(key).text == f"value of {key}"
    assert key in db.list(prefix=key).keys
    assert db.version(key).key == key


def test_an_empty_value_is_a_value(db: Client) -> None:
    db.put("empty", b"")
    assert db.get("empty").value == b""


def test_results_are_typed(db: Client) -> None:
    written = db.put("typed", b"\x00\x01", content_type="image/x-test")
    value = db.get("typed")
    assert (value.value, value.content_type, value.context) == (
        b"\x00\x01",
        "image/x-test",
        written.context,
    )
    assert value.hlc == written.hlc and written.origin in value.clock
    version = db.version("typed")
    assert (version.hlc, version.origin, version.tombstone) == (written.hlc, written.origin, False)
    deleted = db.delete("typed")
    assert deleted.hlc > written.hlc
    assert db.version("typed").tombstone is True


def test_error_answers_raise_their_exceptions(db: Client, cluster: Cluster) -> None:
    with pytest.raises(errors.NotFound):
        db.get("never-written")
    first = db.put("guarded", "v1")
    db.put("guarded", "v2", if_match=first.context)
    with pytest.raises(errors.PreconditionFailed) as stale:
        db.put("guarded", "v3", if_match=first.context)
    assert stale.value.code == "precondition_failed"
    with pytest.raises(errors.Exists):
        db.create("guarded", "v4")
    with pytest.raises(errors.TooLarge):
        db.put("k" * 2000, "v")
    with Client(urls(cluster), api_key=READER_KEY, transport="stdlib") as reader:
        assert reader.get("guarded").text == "v2"
        with pytest.raises(errors.Forbidden):
            reader.put("guarded", "no")
    with (
        Client(urls(cluster), api_key="wrong", transport="stdlib") as stranger,
        pytest.raises(errors.Unauthorized),
    ):
        stranger.get("guarded")


def test_listing_follows_pages(db: Client) -> None:
    names = [f"pages/{i:02d}" for i in range(7)]
    for name in names:
        db.put(name, "x")
    assert list(db.keys("pages/", page_size=3)) == names
    first = db.list("pages/", limit=3)
    assert first.keys == names[:3] and first.next == names[2]
    assert db.list("pages/", limit=3, after=first.next).keys == names[3:6]


def test_failover_to_the_next_node_when_one_is_down(cluster: Cluster) -> None:
    dead = f"http://127.0.0.1:{free_tcp_port('127.0.0.1')}"
    for transport in ("stdlib", "httpx"):
        with Client([dead, *urls(cluster)], api_key=ADMIN_KEY, transport=transport) as db:
            db.put("failover", transport)  # a refused connection sent nothing: safe to move
            assert db.get("failover").text == transport
            assert db.nodes.current != dead
    with (
        Client([dead], api_key=ADMIN_KEY, retries=1, backoff_s=0, transport="stdlib") as db,
        pytest.raises(errors.Unreachable),
    ):
        db.get("failover")


def test_update_never_loses_a_concurrent_increment(cluster: Cluster) -> None:
    url = urls(cluster)[0]  # the guard holds on the node that takes the writes
    with Client(url, api_key=ADMIN_KEY) as db:
        db.put("counter", "0")

        def bump() -> None:
            for _ in range(10):
                db.update("counter", lambda v: str(int(v.text) + 1), attempts=100)

        workers = [threading.Thread(target=bump) for _ in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert db.get("counter").text == "30"
        assert db.update("fresh-counter", lambda v: "1" if v is None else "x").created


def test_async_client_speaks_the_same_protocol(cluster: Cluster) -> None:
    async def scenario() -> None:
        async with AsyncClient(urls(cluster), api_key=ADMIN_KEY) as db:
            written = await db.put("..", b"async")
            value = await db.get("..")
            assert (value.value, value.context) == (b"async", written.context)
            await db.put("..", b"newer")
            with pytest.raises(errors.PreconditionFailed):
                await db.put("..", b"x", if_match=written.context)
            await db.put("apages/1", "a")
            await db.put("apages/2", "b")
            assert [k async for k in db.keys("apages/", page_size=1)] == ["apages/1", "apages/2"]
            result = await db.update("apages/1", lambda v: v.text + "!" if v else "?")
            assert not result.created and (await db.get("apages/1")).text == "a!"
            assert (await db.cluster())["node_id"] in {"c1", "c2"}

    asyncio.run(scenario())
