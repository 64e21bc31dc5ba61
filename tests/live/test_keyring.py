"""live.keyring: ``/admin/keys`` on the real app, and the keyring across real node processes.

In process: the routes, their refusals, the gate's use of the keyring, and the reserved
keyspace that ``/kv`` refuses. Real ``rumor node`` processes on loopback: a key created
on n1 works on n3; revoked on n2 it is refused everywhere; a revocation wins over a
concurrent create of the same name across a partition; revocations and keys survive
restarts; an expired key is refused everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest

from rumordb.core import keyring as kr
from tests.live.harness import (
    ADMIN,
    READER,
    Cluster,
    NodeProcess,
    eventually,
    running_app,
    settings_for,
)
from tests.live.test_inprocess_cluster import in_process_cluster

pytestmark = pytest.mark.anyio


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def create(client: httpx.AsyncClient, **body: object) -> httpx.Response:
    return await client.post("/admin/keys", json=body, headers=ADMIN)


async def test_a_created_key_works_at_once_and_is_shown_only_once(tmp_path: Path) -> None:
    async with running_app(settings_for(tmp_path)) as (_, client):
        made = await create(client, name="alice", role="reader")
        assert made.status_code == 201, made.text
        key = made.json()["key"]
        assert made.json()["role"] == "reader" and made.json()["expires"] is None
        assert (await client.get("/kv", headers=bearer(key))).status_code == 200
        put = await client.put("/kv/x", content=b"v", headers=bearer(key))
        assert put.status_code == 403  # a reader key cannot write
        listing = await client.get("/admin/keys", headers=ADMIN)
        assert listing.status_code == 200
        [entry] = listing.json()["keys"]
        assert set(entry) == {"name", "role", "created", "expires", "state"}
        assert entry["name"] == "alice" and entry["state"] == "active"
        assert key not in listing.text and kr.digest_of(key) not in listing.text


async def test_a_revoked_key_is_refused_on_the_next_request(tmp_path: Path) -> None:
    async with running_app(settings_for(tmp_path)) as (_, client):
        key = (await create(client, name="bot", role="admin")).json()["key"]
        assert (await client.get("/admin/keys", headers=bearer(key))).status_code == 200
        revoked = await client.delete("/admin/keys/bot", headers=ADMIN)
        assert revoked.status_code == 200 and revoked.json()["revoked"] is True
        refused = await client.get("/kv", headers=bearer(key))
        assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
        again = await client.delete("/admin/keys/bot", headers=ADMIN)
        assert again.status_code == 404 and again.json()["error"] == "not_found"
        reuse = await create(client, name="bot", role="admin")
        assert reuse.status_code == 409 and reuse.json()["error"] == "name_revoked"
        [entry] = (await client.get("/admin/keys", headers=ADMIN)).json()["keys"]
        assert entry["state"] == "revoked"


async def test_admin_keys_refuses_bad_requests_with_json_errors(tmp_path: Path) -> None:
    async with running_app(settings_for(tmp_path)) as (_, client):
        assert (await create(client, name="dup", role="admin")).status_code == 201
        cases = [
            ({"name": "dup", "role": "admin"}, 409, "exists"),
            ({"name": "a b", "role": "admin"}, 400, "invalid_name"),
            ({"name": "x", "role": "root"}, 400, "invalid_role"),
            ({"name": "x", "role": "admin", "expires_in_s": -1}, 400, "invalid_expiry"),
            ({"name": "x"}, 400, "invalid_request"),
        ]
        for body, status, code in cases:
            response = await create(client, **body)
            assert (response.status_code, response.json()["error"]) == (status, code), body
        garbage = await client.post("/admin/keys", content=b"\xff{", headers=ADMIN)
        assert garbage.status_code == 400 and garbage.json()["error"] == "invalid_request"
        huge = await client.post("/admin/keys", content=b" " * 100_000, headers=ADMIN)
        assert huge.status_code == 413
        unknown = await client.delete("/admin/keys/nobody", headers=ADMIN)
        assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
        for method in ("GET", "POST"):
            reader = await client.request(method, "/admin/keys", headers=READER, json={})
            assert reader.status_code == 403 and reader.json()["error"] == "forbidden"
        anonymous = await client.get("/admin/keys")
        assert anonymous.status_code == 401


async def test_the_reserved_keyspace_is_out_of_reach_of_kv(tmp_path: Path) -> None:
    async with running_app(settings_for(tmp_path)) as (app, client):
        key = (await create(client, name="hidden", role="admin")).json()["key"]
        grant = kr.grant_key(kr.digest_of(key))
        for method in ("GET", "PUT", "POST", "DELETE"):
            for path in (grant, kr.revocation_key("hidden"), "_rumor/anything"):
                quoted = "/kv/" + path.replace("/", "%2F")
                response = await client.request(method, quoted, headers=ADMIN, content=b"x")
                assert response.status_code == 403, (method, path, response.text)
                assert response.json()["error"] == "reserved_key"
        await client.put("/kv/user", content=b"v", headers=ADMIN)
        for prefix in ("", "_", "_rumor/"):
            listing = await client.get("/kv", params={"prefix": prefix}, headers=ADMIN)
            assert "_rumor" not in listing.text
        assert (await client.get("/kv", headers=ADMIN)).json()["keys"] == ["user"]
        assert (await client.get("/cluster", headers=ADMIN)).json()["keys"] == 1
        assert app.state.runner.view.get(grant) is not None  # it is there, only hidden


async def test_sharded_every_node_holds_the_keyring(tmp_path: Path) -> None:
    """With 4 nodes and 2 replicas, a key (and its revocation) still reaches all 4."""
    async with in_process_cluster(tmp_path, 4, sharding=True, replicas=2) as (_, _, clients):
        made = await clients[0].post(
            "/admin/keys", json={"name": "wide", "role": "reader"}, headers=ADMIN
        )
        key = made.json()["key"]
        for client in clients:
            await eventually(lambda client=client: _status(client, key, 200), timeout_s=10)
        assert (await clients[1].delete("/admin/keys/wide", headers=ADMIN)).status_code == 200
        for client in clients:
            await eventually(lambda client=client: _status(client, key, 401), timeout_s=10)


async def _status(client: httpx.AsyncClient, key: str, status: int) -> bool:
    return (await client.get("/kv", headers=bearer(key))).status_code == status


async def test_an_expiring_key_works_until_its_expiry(tmp_path: Path) -> None:
    async with running_app(settings_for(tmp_path)) as (app, client):
        made = await create(client, name="brief", role="reader", expires_in_s=3600)
        key = made.json()["key"]
        assert made.json()["expires"] is not None
        assert (await client.get("/kv", headers=bearer(key))).status_code == 200
        keyring = app.state.gate.keyring
        keyring._clock = lambda: time.time() + 3601  # an hour later, on this node's clock
        assert (await client.get("/kv", headers=bearer(key))).status_code == 401
        [entry] = (await client.get("/admin/keys", headers=ADMIN)).json()["keys"]
        assert entry["state"] == "expired"


# --- real node processes ------------------------------------------------------------------
def accepted(cluster: Cluster, node: NodeProcess, key: str) -> bool:
    return cluster.client.get(node.url + "/kv", headers=bearer(key)).status_code == 200


def refused(cluster: Cluster, node: NodeProcess, key: str) -> bool:
    return cluster.client.get(node.url + "/kv", headers=bearer(key)).status_code == 401


def create_on(cluster: Cluster, node: NodeProcess, name: str, **extra: object) -> str:
    body = {"name": name, "role": "admin", **extra}
    made = cluster.client.post(node.url + "/admin/keys", json=body, headers=ADMIN)
    assert made.status_code == 201, made.text
    return str(made.json()["key"])


def everywhere(cluster: Cluster, check: Callable[[NodeProcess], bool], what: str) -> None:
    for node in cluster.nodes.values():
        cluster.poll(lambda node=node: check(node), 15, f"{what} on {node.node_id}")


def three_nodes(cluster: Cluster) -> tuple[NodeProcess, NodeProcess, NodeProcess]:
    n1, n2, n3 = (cluster.add(f"n{i}", "--allow-faults") for i in (1, 2, 3))
    cluster.wait_ready()
    cluster.wait_members({"n1", "n2", "n3"})
    return n1, n2, n3


@pytest.mark.live
@pytest.mark.slow
def test_created_on_n1_accepted_on_n3_revoked_on_n2_refused_everywhere_even_after_restarts(
    cluster_factory: Callable[[], Cluster],
) -> None:
    cluster = cluster_factory()
    n1, n2, n3 = three_nodes(cluster)
    key = create_on(cluster, n1, "sold")
    kept = create_on(cluster, n3, "kept")
    cluster.poll(lambda: accepted(cluster, n3, key), 15, "n1's key accepted on n3")
    everywhere(cluster, lambda node: accepted(cluster, node, kept), "n3's key accepted")
    assert cluster.client.delete(n2.url + "/admin/keys/sold", headers=ADMIN).status_code == 200
    everywhere(cluster, lambda node: refused(cluster, node, key), "the revoked key refused")

    for node in (n1, n2, n3):  # every node restarts: the keyring comes back from disk
        node.stop()
        node.start()
        cluster.wait_ready(node)
    for node in (n1, n2, n3):
        assert refused(cluster, node, key)
        assert accepted(cluster, node, kept)
        listing = cluster.client.get(node.url + "/admin/keys", headers=ADMIN).json()["keys"]
        assert {(e["name"], e["state"]) for e in listing} == {
            ("sold", "revoked"),
            ("kept", "active"),
        }


@pytest.mark.live
@pytest.mark.slow
def test_a_revocation_wins_over_a_concurrent_create_of_the_same_name_when_a_partition_heals(
    cluster_factory: Callable[[], Cluster],
) -> None:
    """n1 creates and revokes a name while n3, cut off, creates the same name with a fresh
    secret: once the cut heals, the revocation refuses n3's key too, on every node."""
    cluster = cluster_factory()
    n1, n2, n3 = three_nodes(cluster)
    cut = cluster.client.post(n3.url + "/faults", json={"block": ["n1", "n2"]}, headers=ADMIN)
    assert cut.status_code == 200
    first = create_on(cluster, n1, "contested")
    cluster.poll(lambda: accepted(cluster, n2, first), 15, "n1's key on n2")
    assert cluster.client.delete(n1.url + "/admin/keys/contested", headers=ADMIN).status_code == 200
    cluster.poll(lambda: refused(cluster, n2, first), 15, "the revocation on n2")
    concurrent = create_on(cluster, n3, "contested")  # n3 knows nothing of either
    witness = create_on(cluster, n3, "witness")  # shows the heal replicated n3's records
    assert accepted(cluster, n3, concurrent)
    time.sleep(1.5)  # three anti-entropy intervals: nothing crosses the cut
    assert refused(cluster, n1, concurrent) and accepted(cluster, n3, concurrent)

    assert cluster.client.delete(n3.url + "/faults", headers=ADMIN).status_code == 200
    everywhere(cluster, lambda node: accepted(cluster, node, witness), "n3's witness key")
    everywhere(cluster, lambda node: refused(cluster, node, concurrent), "n3's key refused")
    for node in (n1, n2, n3):
        assert refused(cluster, node, first)
        listing = cluster.client.get(node.url + "/admin/keys", headers=ADMIN).json()["keys"]
        states = sorted((e["name"], e["state"]) for e in listing)
        assert states == [("contested", "revoked"), ("contested", "revoked"), ("witness", "active")]


@pytest.mark.live
@pytest.mark.slow
def test_an_expired_key_is_refused_everywhere(cluster_factory: Callable[[], Cluster]) -> None:
    cluster = cluster_factory()
    n1, n2, n3 = three_nodes(cluster)
    brief = create_on(cluster, n2, "brief", expires_in_s=4)
    lasting = create_on(cluster, n2, "lasting", expires_in_s=3600)
    everywhere(cluster, lambda node: accepted(cluster, node, brief), "the brief key, at first")
    everywhere(cluster, lambda node: refused(cluster, node, brief), "the expired key refused")
    everywhere(cluster, lambda node: accepted(cluster, node, lasting), "the lasting key")
    for node in (n1, n3):
        listing = cluster.client.get(node.url + "/admin/keys", headers=ADMIN).json()["keys"]
        assert {e["name"]: e["state"] for e in listing} == {"brief": "expired", "lasting": "active"}


async def test_concurrent_creates_of_one_name_on_one_node_make_one_key(tmp_path: Path) -> None:
    async with running_app(settings_for(tmp_path)) as (_, client):
        statuses: list[int] = []

        async def attempt() -> None:
            statuses.append((await create(client, name="race", role="reader")).status_code)

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(attempt)
        assert sorted(statuses) == [201, 409, 409, 409, 409]
        assert len((await client.get("/admin/keys", headers=ADMIN)).json()["keys"]) == 1
