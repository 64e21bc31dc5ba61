"""Expiry through bulk data on real node processes: ``ttl`` in batch items, the expiry an
export carries, and the import that restores it (twice: nothing changes)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from rumordb import Client, Op
from rumordb.core.hlc import pack
from rumordb.core.record import MAX_TTL_S, Record
from rumordb.live.bulk import _record_of, exported
from tests.live.harness import ADMIN, ADMIN_KEY, RUMOR, Cluster, running_cluster

pytestmark = [pytest.mark.live]

HOUR_S = 3600


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("expiry"), ("e1", "e2")) as nodes:
        yield nodes


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A second, separate cluster to import into."""
    with running_cluster(tmp_path_factory.mktemp("expiry-other"), ("f1",)) as nodes:
        yield nodes


def post(cluster: Cluster, items: list[dict[str, Any]]) -> httpx.Response:
    return cluster.client.post(cluster.nodes["e1"].url + "/kv", json={"items": items},
                               headers=ADMIN)  # fmt: skip


def meta(cluster: Cluster, node: str, key: str) -> dict[str, Any]:
    url = f"{cluster.nodes[node].url}/kv/{key}?meta=true"
    response = cluster.client.get(url, headers=ADMIN)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def client(cluster: Cluster) -> Client:
    return Client([n.url for n in cluster.nodes.values()], api_key=ADMIN_KEY, transport="stdlib")


def rumor(
    cluster: Cluster, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    urls = ",".join(n.url for n in cluster.nodes.values())
    return subprocess.run(
        [RUMOR, *args, "--url", urls, "--api-key", ADMIN_KEY],
        input=stdin, capture_output=True, timeout=60, check=False,
    )  # fmt: skip


def gone_everywhere(cluster: Cluster, key: str) -> None:
    for node in cluster.nodes.values():
        cluster.poll(lambda n=node: cluster.get(n, key).status_code == 404, 30.0, f"{key} expires")


def test_a_batch_item_with_ttl_expires_on_every_node(cluster: Cluster) -> None:
    before_ms = int(time.time() * 1000)
    response = post(cluster, [
        {"op": "put", "key": "ttl/short", "value_text": "v", "ttl": 1},
        {"op": "put", "key": "ttl/hour", "value_text": "v", "ttl": HOUR_S},
        {"op": "put", "key": "ttl/never", "value_text": "v"},
    ])  # fmt: skip
    assert response.status_code == 200, response.text
    assert [r["result"] for r in response.json()["results"]] == ["created"] * 3
    gone_everywhere(cluster, "ttl/short")
    for node in ("e1", "e2"):
        cluster.wait_value(cluster.nodes[node], "ttl/hour", b"v")
        cluster.wait_value(cluster.nodes[node], "ttl/never", b"v")
        expires_ms = meta(cluster, node, "ttl/hour")["expires_ms"]
        assert before_ms + HOUR_S * 1000 <= expires_ms <= int(time.time() * 1000) + HOUR_S * 1000
        assert meta(cluster, node, "ttl/never")["expires_ms"] is None


def test_a_bad_ttl_refuses_the_batch_as_put_refuses_it(cluster: Cluster) -> None:
    url = cluster.nodes["e1"].url + "/kv/ttl/single"
    good = {"op": "put", "key": "ttl/refused", "value_text": "v"}
    for ttl in (0, MAX_TTL_S + 1, -5):
        single = cluster.client.put(f"{url}?ttl={ttl}", content=b"v", headers=ADMIN)
        batch = post(
            cluster, [good, {"op": "put", "key": "ttl/bad", "value_text": "v", "ttl": ttl}]
        )
        assert (batch.status_code, batch.json()["error"]) == (400, "bad_request"), batch.text
        assert (single.status_code, single.json()["error"]) == (400, "bad_request")
        assert batch.json()["detail"] == "item 1 (key 'ttl/bad'): " + single.json()["detail"]
    cases = [
        ({"op": "delete", "key": "ttl/bad", "ttl": 5}, "bad_request"),
        ({"op": "put", "key": "ttl/bad", "value_text": "v", "ttl": 5, "expires_ms": 10**12},
         "invalid_item"),
        ({"op": "put", "key": "ttl/bad", "value_text": "v", "ttl": 5,
          "version": {"clock": {"e1": 1}, "hlc": 1 << 16, "origin": "e1"}}, "invalid_item"),
        ({"op": "put", "key": "ttl/bad", "value_text": "v", "ttl": "5"}, "invalid_batch"),
        ({"op": "put", "key": "ttl/bad", "value_text": "v",
          "expires_ms": int(time.time() * 1000) + (MAX_TTL_S + 60) * 1000}, "bad_request"),
        ({"op": "put", "key": "ttl/bad", "value_text": "v",
          "version": {"clock": {"e1": 1 << 20}, "hlc": 1 << 20, "origin": "e1", "expires": 5}},
         "invalid_item"),  # an expiry before its write
    ]  # fmt: skip
    for bad, code in cases:
        response = post(cluster, [good, bad])
        assert (response.status_code, response.json()["error"]) == (400, code), (bad, response.text)
    assert cluster.get(cluster.nodes["e1"], "ttl/refused").status_code == 404


def test_client_batch_takes_ttl_s_and_checks_it(cluster: Cluster) -> None:
    with client(cluster) as db:
        results = db.batch([Op.put("ttl/client", "v", ttl_s=1), Op.put("ttl/client2", "v")])
        assert [r.result for r in results] == ["created", "created"]
        with pytest.raises(ValueError, match="ttl_s"):
            db.batch([Op.put("ttl/client3", "v", ttl_s=0)])
        with pytest.raises(ValueError, match="only a put"):
            db.batch([Op("delete", "ttl/client3", ttl_s=5)])
    gone_everywhere(cluster, "ttl/client")
    assert cluster.get(cluster.nodes["e2"], "ttl/client2").status_code == 200


def test_import_lines_take_a_ttl(cluster: Cluster, tmp_path: Path) -> None:
    path = tmp_path / "ttl.jsonl"
    path.write_text('{"key": "ttl/imp1", "value": "v", "ttl": 1}\n'
                    '{"key": "ttl/imp2", "value": "v", "ttl": 3600}\n')  # fmt: skip
    done = rumor(cluster, "import", str(path), "--json")
    assert json.loads(done.stdout)["results"] == {"created": 2}, done.stderr
    gone_everywhere(cluster, "ttl/imp1")
    assert meta(cluster, "e1", "ttl/imp2")["expires_ms"] is not None
    for line, why in [('{"key": "k", "value": "v", "ttl": "soon"}', b"whole number"),
                      ('{"key": "k", "op": "delete", "ttl": 5}', b"delete"),
                      ('{"key": "k", "value": "v", "ttl": 0}', b"ttl_s")]:  # fmt: skip
        path.write_text('{"key": "ttl/fine", "value": "v"}\n' + line + "\n")
        bad = rumor(cluster, "import", str(path))
        assert bad.returncode == 2 and (b"line 2" in bad.stderr or b"item 2" in bad.stderr)
        assert why in bad.stderr, bad.stderr
    assert cluster.get(cluster.nodes["e1"], "ttl/fine").status_code == 404


def exported_lines(cluster: Cluster, prefix: str, *flags: str) -> list[dict[str, Any]]:
    done = rumor(cluster, "export", "--prefix", prefix, *flags)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_export_carries_expiry_and_import_restores_it_once(
    cluster: Cluster, other: Cluster
) -> None:
    with client(cluster) as db:
        db.put("exp/hour", "h", ttl_s=HOUR_S)
        db.put("exp/soon", "s", ttl_s=10)  # outlives both imports
        db.put("exp/never", "n")
        items = {item.key: item for item in db.export("exp/")}
    lines = {line["key"]: line for line in exported_lines(cluster, "exp/")}
    hour_ms = meta(cluster, "e1", "exp/hour")["expires_ms"]
    assert lines["exp/hour"]["expires_ms"] == items["exp/hour"].expires_ms == hour_ms
    assert "expires_ms" not in lines["exp/never"] and items["exp/never"].expires_ms is None
    text = "".join(json.dumps(line) + "\n" for line in lines.values()).encode()
    first = rumor(other, "import", "-", "--json", stdin=text)
    assert json.loads(first.stdout)["results"] == {"created": 3}, first.stderr
    restored = meta(other, "f1", "exp/hour")
    assert restored["expires_ms"] == hour_ms
    again = rumor(other, "import", "-", "--json", stdin=text)
    assert json.loads(again.stdout)["results"] == {"unchanged": 3}, again.stderr
    assert meta(other, "f1", "exp/hour")["hlc"] == restored["hlc"], "nothing rewritten"
    copied = {line["key"]: line for line in exported_lines(other, "exp/")}
    assert copied["exp/hour"] == lines["exp/hour"]
    gone_everywhere(other, "exp/soon")  # the copy expires at the source's instant


def test_export_versions_carry_the_expiry_hlc_and_import_keeps_it(
    cluster: Cluster, other: Cluster
) -> None:
    with client(cluster) as db:
        db.put("expv/hour", "h", ttl_s=HOUR_S)
        db.put("expv/never", "n")
        items = {item.key: item for item in db.export("expv/", versions=True)}
    lines = {line["key"]: line for line in exported_lines(cluster, "expv/", "--versions")}
    version = lines["expv/hour"]["version"]
    assert version == items["expv/hour"].version and version["expires"] > version["hlc"]
    assert "expires" not in lines["expv/never"]["version"]
    assert "expires_ms" not in lines["expv/hour"]  # the version says it, exactly
    text = "".join(json.dumps(line) + "\n" for line in lines.values()).encode()
    first = rumor(other, "import", "-", "--json", stdin=text)
    assert json.loads(first.stdout)["results"] == {"created": 2}, first.stderr
    again = rumor(other, "import", "-", "--json", stdin=text)
    assert json.loads(again.stdout)["results"] == {"unchanged": 2}, again.stderr
    copied = {line["key"]: line for line in exported_lines(other, "expv/", "--versions")}
    assert copied == lines
    source, copy = meta(cluster, "e1", "expv/hour"), meta(other, "f1", "expv/hour")
    assert (copy["expires_ms"], copy["hlc"]) == (source["expires_ms"], source["hlc"])


def test_export_items_carry_expiry_and_a_sharded_merge_keeps_it() -> None:
    """Sharded, a node merges its peers' export pages (``versions=true``, JSON): the
    expiry must survive that round trip, or a sharded export would drop it."""
    expiring = Record(b"v", "text/plain", {"n1": pack(5)}, pack(5), "n1", False, pack(9_000, 2))
    plain, versioned = exported("k", expiring, False), exported("k", expiring, True)
    assert plain["expires_ms"] == 9_000 and "version" not in plain
    assert versioned["version"]["expires"] == pack(9_000, 2) and "expires_ms" not in versioned  # type: ignore[index]
    as_json = json.loads(msgspec.json.encode(versioned))
    assert _record_of(as_json) == expiring
    permanent = Record(b"v", "text/plain", {"n1": pack(5)}, pack(5), "n1")
    assert "expires_ms" not in exported("k", permanent, False)
    assert "expires" not in exported("k", permanent, True)["version"]  # type: ignore[operator]
