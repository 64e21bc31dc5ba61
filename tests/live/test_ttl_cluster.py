"""TTL on real ``rumor node`` processes: a key written with ``ttl=1`` expires everywhere.

The expiry instant travels in the version, so every node reads the key as absent after
it, lists it no more, and replaces it by the same tombstone, which is then purged like a
delete's. The client's ``ttl_s`` and ``rumor put --ttl`` write the same query parameter.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator

import pytest

from rumordb import AsyncClient, Client
from tests.live.harness import ADMIN, ADMIN_KEY, READER, RUMOR, Cluster

pytestmark = [pytest.mark.live, pytest.mark.slow]


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path_factory.mktemp("ttl"))
    try:
        for i in (1, 2, 3):
            nodes.add(f"t{i}")
        nodes.wait_ready()
        nodes.wait_members({"t1", "t2", "t3"})
        yield nodes
    finally:
        nodes.close()


def test_a_ttl_key_reads_404_on_every_node_and_its_tombstone_is_purged(trio: Cluster) -> None:
    t1 = trio.nodes["t1"]
    answer = trio.client.put(t1.url + "/kv/brief?ttl=1", content=b"soon gone", headers=ADMIN)
    assert answer.status_code == 201
    meta = trio.client.get(t1.url + "/kv/brief?meta=true", headers=READER).json()
    assert meta["expires_ms"] == meta["hlc_ms"] + 1000 and not meta["expired"]
    for node in trio.nodes.values():
        trio.wait_value(node, "brief", None, timeout_s=10.0)  # 404 once it expired
        assert trio.client.head(node.url + "/kv/brief", headers=READER).status_code == 404
        listing = trio.client.get(node.url + "/kv?prefix=brief", headers=READER).json()
        assert listing["keys"] == []
        export = trio.client.get(node.url + "/kv?export=true&prefix=brief", headers=READER)
        assert export.json()["items"] == []  # an expired value is not exported either
    # Reads answer 404 from the expiry instant on; a node's next tick then derives the
    # tombstone (or it first gets it from a node that did).
    trio.poll(
        lambda: sum(expired_count(trio, node.url) for node in trio.nodes.values()) >= 1,
        10.0,
        "a node to derive the expired tombstone",
    )
    versions = set()
    for node in trio.nodes.values():
        meta = trio.client.get(node.url + "/kv/brief?meta=true", headers=READER)
        if meta.status_code == 200:  # not purged yet: the same version on every node
            document = meta.json()
            assert document["tombstone"] or document["expired"]  # (its next tick derives it)
            versions.add((document["hlc"], document["origin"]))
    assert len(versions) <= 1
    for node in trio.nodes.values():  # purged once every member holds it, like a delete
        trio.poll(
            lambda node=node: (
                trio.client.get(node.url + "/kv/brief?meta=true", headers=READER).status_code == 404
            ),
            15.0,
            f"the expired tombstone purged on {node.node_id}",
        )


def expired_count(cluster: Cluster, url: str) -> float:
    for line in cluster.client.get(url + "/metrics", headers=READER).text.splitlines():
        if line.startswith("rumor_keys_expired_total "):
            return float(line.split()[1])
    raise AssertionError("no rumor_keys_expired_total metric")


def test_an_overwrite_without_ttl_keeps_the_key(trio: Cluster) -> None:
    t2 = trio.nodes["t2"]
    assert trio.client.put(t2.url + "/kv/kept?ttl=1", content=b"a", headers=ADMIN).is_success
    assert trio.client.put(t2.url + "/kv/kept", content=b"b", headers=ADMIN).is_success
    expired_first = trio.client.put(t2.url + "/kv/other?ttl=1", content=b"x", headers=ADMIN)
    assert expired_first.is_success
    trio.wait_value(t2, "other", None, timeout_s=10.0)
    for node in trio.nodes.values():
        trio.wait_value(node, "kept", b"b")


@pytest.mark.parametrize("ttl", ["0", "-1", "1.5", "abc", "31536001", "²"])
def test_a_bad_ttl_is_refused(trio: Cluster, ttl: str) -> None:
    t1 = trio.nodes["t1"]
    answer = trio.client.put(t1.url + f"/kv/bad?ttl={ttl}", content=b"x", headers=ADMIN)
    assert answer.status_code == 400 and answer.json()["error"] == "bad_request"
    assert trio.client.delete(t1.url + "/kv/bad?ttl=5", headers=ADMIN).status_code == 400


def test_the_client_and_the_cli_write_ttls(trio: Cluster) -> None:
    t3 = trio.nodes["t3"]
    with Client(t3.url, api_key=ADMIN_KEY) as db:
        db.put("by-client", "x", ttl_s=1)
        with pytest.raises(ValueError):
            db.put("by-client", "x", ttl_s=0)
        assert db.get("by-client").text == "x"

    async def create() -> None:
        async with AsyncClient(t3.url, api_key=ADMIN_KEY) as db:
            await db.create("by-async", "y", ttl_s=1)

    asyncio.run(create())
    done = subprocess.run(
        [RUMOR, "put", "--url", t3.url, "--api-key", ADMIN_KEY, "--ttl", "1", "by-cli", "z"],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    for key in ("by-client", "by-async", "by-cli"):
        trio.wait_value(t3, key, None, timeout_s=10.0)
