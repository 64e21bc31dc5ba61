"""docker-compose.yml for real: three containers find each other by broadcast, replicate,
survive a partition made with `rumor chaos`, and converge after `heal`.

Only the nodes' bridge addresses on the test's internal network are ever contacted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from tests.containers.harness import ComposeCluster

pytestmark = [pytest.mark.containers, pytest.mark.slow, pytest.mark.timeout(1800)]

MEMBERS = {"n1", "n2", "n3"}


def eventually(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def value_on(client: httpx.Client, url: str, key: str) -> bytes | None:
    response = client.get(f"{url}/kv/{key}")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.content


def url_flags(cluster: ComposeCluster) -> list[str]:
    return [flag for url in cluster.urls.values() for flag in ("--url", url)]


def test_every_node_is_healthy_and_sees_the_others(compose_cluster: ComposeCluster) -> None:
    def everyone_sees_everyone() -> bool:
        with compose_cluster.client() as client:
            for url in compose_cluster.urls.values():
                document = client.get(f"{url}/cluster").json()
                alive = {m["id"] for m in document["members"] if m["state"] == "alive"}
                if alive | {document["node_id"]} != MEMBERS:
                    return False
        return True

    eventually(everyone_sees_everyone, 60, "every node sees n1, n2 and n3 alive")
    with compose_cluster.client() as client:
        document = client.get(f"{compose_cluster.urls['n1']}/cluster").json()
    advertised = {m["id"]: m["url"] for m in document["members"]}
    # Bound to 0.0.0.0, each node advertises its bridge address (found by broadcast).
    for node_id, url in advertised.items():
        assert url == compose_cluster.urls[node_id]


def test_put_on_node1_is_read_on_node3(compose_cluster: ComposeCluster) -> None:
    urls = compose_cluster.urls
    put = compose_cluster.rumor("put", "greeting", "hello from n1", "--url", urls["n1"])
    assert put.returncode == 0, put.stderr

    def on_node3() -> bool:
        got = compose_cluster.rumor("get", "greeting", "--url", urls["n3"], check=False)
        return got.returncode == 0 and got.stdout == "hello from n1"

    eventually(on_node3, 20, "n3 serves the value written on n1")


def test_partition_then_heal_converges(compose_cluster: ComposeCluster) -> None:
    urls = compose_cluster.urls
    cut = compose_cluster.rumor("chaos", "partition", "n1", "n2,n3", *url_flags(compose_cluster))
    assert cut.returncode == 0, cut.stderr
    try:
        for node, key, value in (
            ("n1", "left-side", "L"),
            ("n3", "right-side", "R"),
            ("n1", "contested", "from n1"),
            ("n3", "contested", "from n3"),
        ):
            put = compose_cluster.rumor("put", key, value, "--url", urls[node])
            assert put.returncode == 0, put.stderr
        with compose_cluster.client() as client:
            eventually(
                lambda: value_on(client, urls["n2"], "right-side") == b"R",
                20,
                "n2 (same side as n3) gets n3's write",
            )
            assert value_on(client, urls["n1"], "right-side") is None
            assert value_on(client, urls["n3"], "left-side") is None
            assert value_on(client, urls["n2"], "contested") == b"from n3"
    finally:
        healed = compose_cluster.rumor("chaos", "heal", *url_flags(compose_cluster))
    assert healed.returncode == 0, healed.stderr

    def converged() -> bool:
        with compose_cluster.client() as client:
            seen = [
                (value_on(client, url, "left-side"), value_on(client, url, "right-side"),
                 value_on(client, url, "contested"))
                for url in urls.values()
            ]  # fmt: skip
        return seen[0][:2] == (b"L", b"R") and seen.count(seen[0]) == len(seen)

    eventually(converged, 60, "every node holds both sides' writes and one contested value")
    why = compose_cluster.rumor("why", "contested", "--json", *url_flags(compose_cluster))
    report = json.loads(why.stdout)
    assert report["agree"] is True
    assert report["last_conflict"]["rule"] == "lww"
    assert report["last_conflict"]["discarded"]["origin"] in {"n1", "n3"}
