"""``POST /kv`` batches, export pages, ``rumor import``/``export`` on real node processes."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from rumordb import AsyncClient, Client, Op, errors
from tests.live.harness import ADMIN, ADMIN_KEY, READER, RUMOR, Cluster, running_cluster

pytestmark = [pytest.mark.live]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("bulk"), ("b1", "b2", "b3")) as nodes:
        yield nodes


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A second, separate cluster (its own discovery port) to import into."""
    with running_cluster(tmp_path_factory.mktemp("bulk-other"), ("o1", "o2")) as nodes:
        yield nodes


def post(cluster: Cluster, node: str, body: object, **headers: str) -> httpx.Response:
    url = cluster.nodes[node].url + "/kv"
    return cluster.client.post(url, json=body, headers={**ADMIN, **headers})


def client(cluster: Cluster) -> Client:
    return Client([n.url for n in cluster.nodes.values()], api_key=ADMIN_KEY, transport="stdlib")


def test_a_batch_is_applied_and_replicated_to_every_node(cluster: Cluster) -> None:
    items = [{"op": "put", "key": f"batch/{i}", "value_text": f"v{i}"} for i in range(50)]
    items.append({"op": "put", "key": "batch/bin", "value": base64.b64encode(b"\x00\xff").decode(),
                  "content_type": "application/x-test"})  # fmt: skip
    response = post(cluster, "b1", {"items": items})
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["applied"] == 51
    results = document["results"]
    assert [r["key"] for r in results] == [i["key"] for i in items], "answers in order"
    assert {r["status"] for r in results} == {201} and all(r["context"] for r in results)
    for node in cluster.nodes.values():
        cluster.wait_value(node, "batch/49", b"v49")
        cluster.wait_value(node, "batch/bin", b"\x00\xff")
    got = cluster.get(cluster.nodes["b3"], "batch/bin")
    assert got.headers["content-type"] == "application/x-test"
    deletes = [{"op": "delete", "key": f"batch/{i}"} for i in range(3)]
    deletes.append({"op": "put", "key": "batch/10", "value_text": "new", "if_match": "AAAA"})
    assert post(cluster, "b2", {"items": deletes}).status_code == 400, "a malformed context"
    deletes[-1] = {"op": "put", "key": "batch/10", "value_text": "new",
                   "if_match": results[10]["context"]}  # fmt: skip
    deletes.append(
        {"op": "put", "key": "batch/10", "value_text": "x", "if_match": results[10]["context"]}
    )
    answer = post(cluster, "b2", {"items": deletes}).json()["results"]
    assert [r["result"] for r in answer] == ["deleted"] * 3 + ["ok", "precondition_failed"]
    assert answer[4]["status"] == 412, "items apply in order: the first one moved batch/10 on"
    for node in cluster.nodes.values():
        cluster.wait_value(node, "batch/0", None)
        cluster.wait_value(node, "batch/10", b"new")


def test_a_large_batch_arrives_whole_on_every_node(cluster: Cluster) -> None:
    """1 000 items are one commit and one push per peer: a peer lists none or all of them.

    The push is applied in one step of the peer's event loop, so no listing can fall in
    the middle of it; a batch applied item by item (or spread over several pushes and
    anti-entropy) would show partial counts.
    """
    items = [{"op": "put", "key": f"whole/{i:04d}", "value_text": "v" * 100} for i in range(1000)]
    peers = [cluster.nodes["b2"], cluster.nodes["b3"]]

    async def watch_counts() -> list[set[int]]:
        seen: list[set[int]] = [set(), set()]
        async with httpx.AsyncClient(headers=ADMIN, trust_env=False) as http:
            posting = asyncio.create_task(
                http.post(cluster.nodes["b1"].url + "/kv", json={"items": items}, timeout=30)
            )
            deadline = asyncio.get_running_loop().time() + 20
            while asyncio.get_running_loop().time() < deadline:
                for n, peer in enumerate(peers):
                    page = await http.get(peer.url + "/kv?prefix=whole/&limit=1000")
                    seen[n].add(len(page.json()["keys"]))
                if all(1000 in counts for counts in seen) and posting.done():
                    break
            answer = await posting
            assert answer.status_code == 200 and answer.json()["applied"] == 1000
        return seen

    seen = asyncio.run(watch_counts())
    assert all(counts <= {0, 1000} and 1000 in counts for counts in seen), seen


def test_a_messagepack_batch_is_answered_in_messagepack(cluster: Cluster) -> None:
    body = msgspec.msgpack.encode({"items": [{"op": "put", "key": "mp/1", "value": b"\x01"}]})
    url = cluster.nodes["b3"].url + "/kv"
    response = cluster.client.post(
        url, content=body, headers={**ADMIN, "Content-Type": "application/msgpack"}
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/msgpack"
    assert msgspec.msgpack.decode(response.content)["results"][0]["result"] == "created"


def test_one_bad_item_refuses_the_whole_batch_and_stores_nothing(cluster: Cluster) -> None:
    good = [{"op": "put", "key": f"refused/{i}", "value_text": "v"} for i in range(5)]
    cases = [
        ({"op": "put", "key": "", "value_text": "v"}, "invalid_key"),
        ({"op": "put", "key": "refused/x"}, "invalid_item"),
        ({"op": "put", "key": "refused/x", "value_text": "v", "value": "AA=="}, "invalid_item"),
        (
            {"op": "put", "key": "refused/x", "value_text": "v", "content_type": "a\x01b"},
            "invalid_item",
        ),
        ({"op": "put", "key": "refused/x\x7f", "value_text": "v"}, "invalid_key"),
        ({"op": "move", "key": "refused/x"}, "invalid_batch"),
        ({"op": "delete", "key": "refused/x", "value_text": "v"}, "invalid_item"),
        ({"op": "put", "key": "refused/x", "value_text": "v", "extra": 1}, "invalid_batch"),
        (
            {
                "op": "put",
                "key": "refused/x",
                "value_text": "v",
                "version": {"clock": {"n": 1}, "hlc": 2**62, "origin": "n"},
            },
            "invalid_item",
        ),
        (
            {
                "op": "put",
                "key": "refused/x",
                "value_text": "v",
                "version": {"clock": {"bad id!": 1}, "hlc": 1, "origin": "n"},
            },
            "invalid_item",
        ),
    ]
    for bad, code in cases:
        response = post(cluster, "b1", {"items": [*good[:3], bad, *good[3:]]})
        assert response.status_code == 400, (bad, response.text)
        error = response.json()
        assert error["error"] == code and "item 3" in error["detail"], error
    assert post(cluster, "b1", {"items": "no"}).status_code == 400
    assert (
        cluster.client.post(cluster.nodes["b1"].url + "/kv", content=b"{", headers=ADMIN).json()[
            "error"
        ]
        == "invalid_batch"
    )
    for i in range(5):
        assert cluster.get(cluster.nodes["b1"], f"refused/{i}").status_code == 404


def test_invalid_utf8_in_a_batch_is_400_and_stores_nothing(cluster: Cluster) -> None:
    url = cluster.nodes["b1"].url + "/kv"
    ok = b'{"op": "put", "key": "utf8/ok", "value_text": "v"}'
    for bad in (b'{"op": "put", "key": "\xff\xfe", "value_text": "v"}',
                b'{"op": "put", "key": "utf8/bad", "value_text": "\xc3\x28"}'):  # fmt: skip
        body = b'{"items": [' + ok + b", " + bad + b"]}"
        headers = {**ADMIN, "Content-Type": "application/json"}
        response = cluster.client.post(url, content=body, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_batch"
    assert cluster.get(cluster.nodes["b1"], "utf8/ok").status_code == 404
    assert cluster.put(cluster.nodes["b1"], "utf8/after", b"v").status_code == 201


def test_limits_are_refused_with_413(cluster: Cluster) -> None:
    many = [{"op": "put", "key": f"many/{i}", "value_text": ""} for i in range(1001)]
    response = post(cluster, "b1", {"items": many})
    assert response.status_code == 413 and response.json()["error"] == "too_many_items"
    huge = [{"op": "put", "key": f"huge/{i}", "value_text": "x" * 900_000} for i in range(5)]
    response = post(cluster, "b1", {"items": huge})
    assert response.status_code == 413 and response.json()["error"] == "batch_too_large"
    too_big = [{"op": "put", "key": "big", "value_text": "x" * (1024 * 1024 + 1)}]
    response = post(cluster, "b1", {"items": too_big})
    assert response.status_code == 413 and response.json()["error"] == "value_too_large"
    assert "item 0" in response.json()["detail"]
    assert cluster.get(cluster.nodes["b1"], "many/0").status_code == 404


def test_a_reader_key_cannot_send_a_batch(cluster: Cluster) -> None:
    url = cluster.nodes["b1"].url + "/kv"
    items = {"items": [{"op": "put", "key": "r", "value_text": "v"}]}
    assert cluster.client.post(url, json=items, headers=READER).status_code == 403


def test_client_batch_and_export(cluster: Cluster) -> None:
    with client(cluster) as db:
        results = db.batch([Op.put("client/a", "1"), Op.put("client/b", b"\x02"),
                            Op.delete("client/none")])  # fmt: skip
        assert [(r.status, r.result) for r in results] == [
            (201, "created"), (201, "created"), (404, "not_found")
        ]  # fmt: skip
        again = db.batch([Op.put("client/a", "1", if_changed=True)])
        assert again[0].result == "unchanged" and again[0].context == results[0].context
        with pytest.raises(errors.BadRequest):
            db.batch([Op.put("client/c", "1"), Op("put", "client/d", "x", version={"hlc": 1})])
        exported = list(db.export("client/", versions=True, page_size=1))
        assert [(e.key, e.value) for e in exported] == [("client/a", b"1"), ("client/b", b"\x02")]
        assert exported[0].version is not None and exported[0].version["hlc"] == results[0].hlc


def rumor(
    cluster: Cluster, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    urls = ",".join(n.url for n in cluster.nodes.values())
    return subprocess.run(
        [RUMOR, *args, "--url", urls, "--api-key", ADMIN_KEY],
        input=stdin, capture_output=True, timeout=60, check=False,
    )  # fmt: skip


def test_import_twice_is_idempotent(cluster: Cluster, tmp_path: Path) -> None:
    lines = [{"key": f"imp/{i:04d}", "value": f"value {i}"} for i in range(2500)]
    lines.append({"key": "imp/bytes", "value_base64": base64.b64encode(b"\x00\x01").decode()})
    lines.append({"key": "imp/json", "value": "{}", "content_type": "application/json"})
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    first = rumor(cluster, "import", str(path), "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"items": 2502, "results": {"created": 2502}, "failed": 0}
    with client(cluster) as db:
        before = db.version("imp/0001")
        second = rumor(cluster, "import", str(path), "--json")
        assert json.loads(second.stdout)["results"] == {"unchanged": 2502}
        assert db.version("imp/0001").hlc == before.hlc, "nothing rewritten"
    for node in cluster.nodes.values():
        cluster.wait_value(node, "imp/2499", b"value 2499")


def test_a_bad_line_stops_the_import_before_anything_is_sent(
    cluster: Cluster, tmp_path: Path
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"key": "badfile/1", "value": "v"}\n{"key": "badfile/2"}\n')
    done = rumor(cluster, "import", str(path))
    assert done.returncode == 2 and b"line 2" in done.stderr
    assert cluster.get(cluster.nodes["b1"], "badfile/1").status_code == 404


def test_export_then_import_with_versions_keeps_hlcs(
    cluster: Cluster, other: Cluster, tmp_path: Path
) -> None:
    with client(cluster) as db:
        db.batch([Op.put(f"copy/{i}", f"v{i}") for i in range(20)])
        db.put("copy/bin", b"\xff\xfe", content_type="application/x-bin")
        db.put("copy/5", "newer")
    exported = rumor(cluster, "export", "--prefix", "copy/", "--versions")
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(lines) == 21 and lines[0]["key"] == "copy/0"
    assert {"value_base64", "version"} <= set(next(x for x in lines if x["key"] == "copy/bin"))
    done = rumor(other, "import", "-", "--json", stdin=exported.stdout)
    assert json.loads(done.stdout)["results"] == {"created": 21}, done.stderr
    again = rumor(other, "import", "-", "--json", stdin=exported.stdout)
    assert json.loads(again.stdout)["results"] == {"unchanged": 21}
    with client(cluster) as source, client(other) as copy:
        for line in lines:
            a, b = source.version(line["key"]), copy.version(line["key"])
            assert (a.hlc, a.origin, a.clock, a.value_sha256) == (
                b.hlc,
                b.origin,
                b.clock,
                b.value_sha256,
            )
        # An older version of a key loses to the copy's newer one: LWW order is kept.
        old = next(x for x in lines if x["key"] == "copy/5")
        old["version"] = {**old["version"], "hlc": old["version"]["hlc"] - 1,
                          "clock": {k: v - 1 for k, v in old["version"]["clock"].items()}}  # fmt: skip
        stale = rumor(other, "import", "-", "--json", stdin=(json.dumps(old) + "\n").encode())
        assert json.loads(stale.stdout)["results"] == {"stale": 1}
        assert copy.get("copy/5").text == "newer"
    plain = rumor(other, "export", "--prefix", "copy/")
    assert (
        plain.stdout.splitlines()[0] == b'{"key": "copy/0", "value": "v0", "content_type": '
        b'"text/plain; charset=utf-8"}'
    )


def test_async_client_batch_and_export(cluster: Cluster) -> None:
    async def main() -> list[str]:
        urls = [n.url for n in cluster.nodes.values()]
        async with AsyncClient(urls, api_key=ADMIN_KEY) as db:
            results = await db.batch([Op.put("async/a", "1"), Op.put("async/b", "2")])
            assert [r.result for r in results] == ["created", "created"]
            return [item.key async for item in db.export("async/")]

    assert asyncio.run(main()) == ["async/a", "async/b"]


def test_a_sharded_batch_forwards_items_to_their_owners(tmp_path: Path) -> None:
    nodes = Cluster(tmp_path)
    try:
        for name in ("s1", "s2", "s3"):
            nodes.add(name, "--sharding", "--replicas", "1")
        nodes.wait_ready()
        nodes.wait_members({"s1", "s2", "s3"})
        items = [{"op": "put", "key": f"shard/{i}", "value_text": f"v{i}"} for i in range(30)]
        response = post(nodes, "s1", {"items": items})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [r["key"] for r in results] == [i["key"] for i in items]
        assert {r["status"] for r in results} == {201}, results
        origins = {r["origin"] for r in results}
        assert len(origins) > 1, "items went to their owners, not all to s1"
        for i in range(30):
            nodes.wait_value(nodes.nodes["s2"], f"shard/{i}", f"v{i}".encode())
        with client(nodes) as db:
            exported = [item.key for item in db.export("shard/")]
        assert exported == sorted(i["key"] for i in items), "export gathers every owner's keys"
    finally:
        nodes.close()


def test_the_inline_results_of_a_batch_are_those_of_result_item_by_item() -> None:
    """``Bulk.results`` answers applied values inline: the same items ``result`` makes."""
    from rumordb.core import Output, Record, WriteCommand, WriteResult, WriteStatus
    from rumordb.live.bulk import Bulk
    from rumordb.live.runner import NotStored

    out = Output()
    value = Record(b"v", "text/plain", {"n1": 7, "n2": 3}, 7, "n1")
    tombstone = Record(b"", "application/x-rumor-tombstone", {"n1": 8}, 8, "n1", True)
    commands = [WriteCommand(f"k{i}") for i in range(6)]
    answers = [
        WriteResult(WriteStatus.CREATED, value, out),
        WriteResult(WriteStatus.OK, value, out),
        WriteResult(WriteStatus.OK, tombstone, out),  # a delete: "deleted"
        WriteResult(WriteStatus.PRECONDITION_FAILED, value, out),
        WriteResult(WriteStatus.STALE, value, out),
        NotStored("unavailable", "the write was not stored"),
    ]
    bulk = Bulk(None, 1024, 1024)  # type: ignore[arg-type]  # no runner: nothing is sent
    expected = [bulk.result(c, a) for c, a in zip(commands, answers, strict=True)]
    assert bulk.results(commands, answers) == expected
    assert [r["result"] for r in expected] == [
        "created", "ok", "deleted", "precondition_failed", "stale", "unavailable"
    ]  # fmt: skip
