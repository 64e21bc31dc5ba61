"""``rumor apikey create|list|revoke`` against a running cluster; ``--keys-file`` offline."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.cli.harness import LocalCluster, eventually, run_cli

pytestmark = [pytest.mark.live, pytest.mark.slow]


def status_with(cluster: LocalCluster, node: str, key: str) -> int:
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        response = client.get(cluster.urls[node] + "/kv", headers={"X-API-Key": key})
    return response.status_code


def test_create_list_revoke_on_a_running_cluster(cluster: LocalCluster) -> None:
    made = cluster.run("apikey", "create", "--role", "reader", "--name", "cli-bot", node="n1")
    assert made.returncode == 0, made.stderr
    key = made.stdout.decode().strip()
    assert len(made.stdout.splitlines()) == 1 and b"shown only this once" in made.stderr
    eventually(lambda: status_with(cluster, "n3", key) == 200, 15, "the key accepted on n3")

    listed = cluster.run("apikey", "list", "--json", node="n2")
    assert listed.returncode == 0, listed.stderr
    [entry] = [e for e in json.loads(listed.stdout)["keys"] if e["name"] == "cli-bot"]
    assert (entry["role"], entry["state"]) == ("reader", "active")
    assert key not in listed.stdout.decode()
    assert b"cli-bot\treader\tactive" in cluster.run("apikey", "list", node="n3").stdout

    revoked = cluster.run("apikey", "revoke", "cli-bot", node="n2")
    assert revoked.returncode == 0, revoked.stderr
    for node in ("n1", "n2", "n3"):
        eventually(lambda node=node: status_with(cluster, node, key) == 401, 15, f"401 on {node}")
    assert cluster.run("apikey", "revoke", "cli-bot", node="n1").returncode == 1  # not found
    again = cluster.run("apikey", "create", "--role", "admin", "--name", "cli-bot")
    assert again.returncode == 5 and b"revoked" in again.stderr  # conflict: the name is spent


def test_create_with_expiry_and_json_and_bad_names(cluster: LocalCluster) -> None:
    made = cluster.run(
        "apikey", "create", "--role", "admin", "--name", "temp", "--expires-in-s", "600", "--json"
    )
    assert made.returncode == 0, made.stderr
    document = json.loads(made.stdout)
    assert document["expires"] is not None and status_with(cluster, "n1", document["key"]) == 200
    bad = cluster.run("apikey", "create", "--role", "admin", "--name", "no spaces")
    assert bad.returncode == 2 and b"[A-Za-z0-9._-]" in bad.stderr
    assert cluster.run("apikey", "create", "--role", "admin", "--expires-in-s", "0").returncode == 2


def test_keys_file_mode_stays_offline(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    made = run_cli("apikey", "create", "--role", "admin", "--keys-file", str(keys_file))
    assert made.returncode == 0 and len(made.stdout.strip()) >= 32
    assert json.loads(keys_file.read_text())["keys"][0]["role"] == "admin"
    refused = run_cli(
        "apikey", "create", "--role", "admin", "--keys-file", str(keys_file),
        "--expires-in-s", "60",
    )  # fmt: skip
    assert refused.returncode == 2 and b"--expires-in-s" in refused.stderr
