"""The `rumor` CLI end to end against a real local cluster (`rumor cluster up --detach`)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from tests.cli.harness import (
    RUMOR,
    LocalCluster,
    eventually,
    free_ports,
    pid_alive,
    rumor,
    run_cli,
)

pytestmark = [pytest.mark.live, pytest.mark.slow]


def text(result: object) -> str:
    stdout = getattr(result, "stdout", b"")
    stderr = getattr(result, "stderr", b"")
    return f"stdout={stdout.decode(errors='replace')!r} stderr={stderr.decode(errors='replace')!r}"


def test_credentials_file_is_private_and_complete(cluster: LocalCluster) -> None:
    path = cluster.dir / "credentials"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cluster.dir.stat().st_mode) == 0o700
    stored = json.loads(path.read_text())
    assert set(stored) == {"cluster_secret", "admin_key", "reader_key", "discovery_port"}
    assert stored["admin_key"] == cluster.document["admin_key"]
    assert stored["admin_key"] != stored["reader_key"]
    assert len(stored["admin_key"]) >= 22  # >= 128 random bits, URL-safe base64


def test_up_reports_every_node_and_records_their_pids(cluster: LocalCluster) -> None:
    document = cluster.document
    assert [node["id"] for node in document["nodes"]] == ["n1", "n2", "n3"]
    ports = [node["port"] for node in document["nodes"]]
    assert ports == [cluster.base_port, cluster.base_port + 1, cluster.base_port + 2]
    assert all(pid_alive(node["pid"]) for node in document["nodes"])
    assert (
        document["discovery_port"]
        == json.loads((cluster.dir / "credentials").read_text())["discovery_port"]
    )


def test_put_on_one_node_get_on_another(cluster: LocalCluster) -> None:
    put = cluster.run("put", "greeting", "hello", node="n1")
    assert put.returncode == 0, text(put)
    eventually(lambda: cluster.value_on("n3", "greeting") == b"hello", 15, "replicated to n3")
    got = cluster.run("get", "greeting", node="n3")
    assert (got.returncode, got.stdout) == (0, b"hello")


def test_put_from_stdin_keeps_bytes_and_content_type(cluster: LocalCluster) -> None:
    blob = bytes(range(256))
    put = cluster.run("put", "blob", "-", "--content-type", "image/x-test", stdin=blob)
    assert put.returncode == 0, text(put)
    got = cluster.run("get", "blob")
    assert got.stdout == blob
    document = json.loads(cluster.run("get", "blob", "--json").stdout)
    assert document["encoding"] == "base64"
    assert document["content_type"] == "image/x-test"


def test_json_output_shapes(cluster: LocalCluster) -> None:
    put = json.loads(cluster.run("put", "shape", "v1", "--json").stdout)
    assert {"key", "context", "hlc", "origin", "created"} <= set(put)
    assert put["created"] is True
    again = json.loads(cluster.run("put", "shape", "v2", "--json").stdout)
    assert again["created"] is False
    got = json.loads(cluster.run("get", "shape", "--json").stdout)
    assert got == {
        "key": "shape",
        "value": "v2",
        "encoding": "utf-8",
        "content_type": got["content_type"],
        "context": again["context"],
    }
    assert got["content_type"].startswith("text/plain")
    listing = json.loads(cluster.run("list", "--prefix", "sha", "--json").stdout)
    assert listing == {"keys": ["shape"], "next": None}
    deleted = json.loads(cluster.run("delete", "shape", "--json").stdout)
    assert deleted["deleted"] is True


def test_status_json_lists_members_with_key_counts(cluster: LocalCluster) -> None:
    result = cluster.run("status", "--json")
    assert result.returncode == 0, text(result)
    document = json.loads(result.stdout)
    members = {m["id"]: m for m in document["members"]}
    assert set(members) >= {"n1", "n2", "n3"}
    for member in members.values():
        assert {"id", "url", "state", "keys", "last_heartbeat_age_s"} <= set(member)
    assert members["n1"]["keys"] == document["keys"]
    human = cluster.run("status")
    assert b"alive" in human.stdout and cluster.urls["n2"].encode() in human.stdout


def test_list_follows_pages_up_to_the_limit(cluster: LocalCluster) -> None:
    for i in range(5):
        cluster.put_http("n1", f"page-{i}", str(i).encode())
    first = json.loads(cluster.run("list", "--prefix", "page-", "--limit", "3", "--json").stdout)
    assert first == {"keys": ["page-0", "page-1", "page-2"], "next": "page-2"}
    everything = cluster.run("list", "--prefix", "page-")
    assert everything.stdout.decode().split() == [f"page-{i}" for i in range(5)]


def test_exit_code_1_when_not_found(cluster: LocalCluster) -> None:
    assert cluster.run("get", "never-written").returncode == 1
    cluster.put_http("n1", "doomed", b"x")
    assert cluster.run("delete", "doomed").returncode == 0
    assert cluster.run("get", "doomed").returncode == 1
    assert cluster.run("delete", "doomed").returncode == 1


def test_exit_code_2_on_usage_errors(cluster: LocalCluster) -> None:
    assert cluster.run("list", "--limit", "0").returncode == 2
    assert cluster.run("chaos", "partition", "n1", "nosuchnode").returncode == 2
    assert rumor("get").returncode == 2  # missing KEY, through the real executable
    assert run_cli("put", "k", "v", "--url", "ftp://127.0.0.1:1").returncode == 2


def test_exit_code_3_on_auth_errors(cluster: LocalCluster) -> None:
    url = cluster.urls["n1"]
    wrong = rumor("get", "greeting", "--url", url, "--api-key", "not-a-key")
    assert wrong.returncode == 3
    assert b"401" in wrong.stderr
    reader = {"RUMOR_API_KEY": cluster.document["reader_key"]}
    forbidden = run_cli("put", "k", "v", "--url", url, env=reader)
    assert forbidden.returncode == 3
    assert b"403" in forbidden.stderr
    assert run_cli("get", "greeting", "--url", url, cwd=cluster.root).returncode == 3  # no key


def test_api_key_comes_from_the_credentials_file(cluster: LocalCluster) -> None:
    # Run from the directory holding .rumor/credentials: no --api-key, no RUMOR_API_KEY.
    home = cluster.root / "home"
    (home / ".rumor").mkdir(parents=True, exist_ok=True)
    target = home / ".rumor" / "credentials"
    target.write_bytes((cluster.dir / "credentials").read_bytes())
    target.chmod(0o600)
    result = run_cli("put", "from-file", "ok", "--url", cluster.urls["n2"], cwd=home)
    assert result.returncode == 0, text(result)
    target.chmod(0o644)
    loose = run_cli("get", "from-file", "--url", cluster.urls["n2"], cwd=home)
    assert loose.returncode == 3
    assert b"chmod 600" in loose.stderr


def test_exit_code_4_when_unreachable() -> None:
    port = free_ports(1)
    result = rumor("get", "k", "--url", f"http://127.0.0.1:{port}", "--api-key", "x")
    assert result.returncode == 4
    assert b"cannot reach" in result.stderr


def test_exit_code_5_on_conflicts(cluster: LocalCluster) -> None:
    first = json.loads(cluster.run("put", "guarded", "v1", "--json").stdout)
    assert cluster.run("put", "guarded", "v2", "--if-match", first["context"]).returncode == 0
    stale = cluster.run("put", "guarded", "v3", "--if-match", first["context"])
    assert stale.returncode == 5
    assert cluster.run("put", "guarded", "v4", "--create").returncode == 5
    assert cluster.run("get", "guarded").stdout == b"v2"


def test_why_reports_agreement_and_the_lww_rule(cluster: LocalCluster) -> None:
    cluster.put_http("n1", "agreed", b"same")
    eventually(lambda: cluster.value_on("n3", "agreed") == b"same", 15, "replicated")
    eventually(lambda: cluster.value_on("n2", "agreed") == b"same", 15, "replicated")
    report = json.loads(cluster.run("why", "agreed", "--json").stdout)
    assert report["agree"] is True
    assert {row["node"] for row in report["nodes"]} == {"n1", "n2", "n3"}
    assert report["last_conflict"] is None
    assert report["winner"]["origin"] == "n1"
    assert set(report) == {
        "key", "agree", "nodes", "winner", "beaten", "last_conflict", "explanation",
    }  # fmt: skip
    missing = cluster.run("why", "never-written", "--json")
    assert missing.returncode == 1


def test_chaos_partition_then_heal_converges(cluster: LocalCluster) -> None:
    cut = cluster.run("chaos", "partition", "n1", "n2,n3", "--json")
    assert cut.returncode == 0, text(cut)
    faults = json.loads(cut.stdout)["nodes"]
    assert sorted(faults["n1"]["block_to"]) == ["n2", "n3"]
    assert faults["n2"]["block_to"] == ["n1"]
    try:
        cluster.put_http("n1", "split", b"left")
        cluster.put_http("n3", "split", b"right")
        eventually(lambda: cluster.value_on("n2", "split") == b"right", 15, "n2 hears n3")
        assert cluster.value_on("n1", "split") == b"left"  # cut off: still its own write
    finally:
        healed = cluster.run("chaos", "heal")
    assert healed.returncode == 0, text(healed)

    def converged() -> bool:
        values = {cluster.value_on(node, "split") for node in ("n1", "n2", "n3")}
        return len(values) == 1

    eventually(converged, 30, "one value of 'split' on every node after heal")
    report = json.loads(cluster.run("why", "split", "--json").stdout)
    assert report["agree"] is True
    assert report["last_conflict"]["rule"] == "lww"
    assert report["last_conflict"]["discarded"]["origin"] in {"n1", "n3"}


def test_chaos_delay_and_loss_apply_to_one_node(cluster: LocalCluster) -> None:
    try:
        delayed = json.loads(cluster.run("chaos", "delay", "n2", "30", "--json").stdout)
        assert delayed["nodes"]["n2"]["delay_ms"] == 30
        lossy = json.loads(cluster.run("chaos", "loss", "n2", "25", "--json").stdout)
        assert lossy["nodes"]["n2"]["loss"] == pytest.approx(0.25)
        assert cluster.run("chaos", "loss", "n2", "101").returncode == 2
    finally:
        assert cluster.run("chaos", "heal").returncode == 0


def test_sharded_cluster_forwards_and_reports_ownership(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    local = LocalCluster(
        tmp_path_factory.mktemp("sharded"), extra=("--sharding", "--replicas", "2")
    )
    try:
        local.up()
        assert local.document["sharding"] is True
        for i in range(6):
            put = local.run("put", f"k{i}", f"v{i}", node="n1")
            assert put.returncode == 0, text(put)
        for i in range(6):  # any node answers any key: non-owners forward to an owner
            assert local.run("get", f"k{i}", node="n3").stdout == f"v{i}".encode()
        status = json.loads(local.run("status", "--json").stdout)
        assert status["sharding"] is True
        assert sum(status["ownership"].values()) == pytest.approx(1.0, abs=0.01)
        human = local.run("status").stdout.decode()
        assert "sharding on, replicas 2" in human and "%" in human
    finally:
        local.close()


def test_up_refuses_a_second_cluster_in_the_same_dir(cluster: LocalCluster) -> None:
    again = rumor("cluster", "up", "--dir", str(cluster.dir), "--detach",
                  "--base-port", str(free_ports(3)))  # fmt: skip
    assert again.returncode == 2
    assert b"already running" in again.stderr


def test_up_refuses_ports_in_use(
    cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("other") / "cluster"
    taken = rumor("cluster", "up", "--dir", str(other), "--detach", "--base-port",
                  str(cluster.base_port))  # fmt: skip
    assert taken.returncode == 2
    assert b"in use" in taken.stderr


def test_add_kill_restart_then_down_stops_exactly_our_nodes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    local = LocalCluster(tmp_path_factory.mktemp("lifecycle"), nodes=2).up()
    try:
        added = rumor("cluster", "add", "--dir", str(local.dir), "--json")
        assert added.returncode == 0, text(added)
        nodes = json.loads(added.stdout)["nodes"]
        assert [node["id"] for node in nodes] == ["n1", "n2", "n3"]
        status = json.loads(local.run("status", "--json", node="n1").stdout)
        assert {m["id"] for m in status["members"] if m["state"] == "alive"} >= {"n1", "n2", "n3"}

        killed = rumor("cluster", "kill", "n2", "--dir", str(local.dir))
        assert killed.returncode == 0, text(killed)
        assert not pid_alive(nodes[1]["pid"])
        local.put_http("n1", "while-n2-was-down", b"caught up")
        restarted = rumor("cluster", "restart", "n2", "--dir", str(local.dir))
        assert restarted.returncode == 0, text(restarted)
        eventually(
            lambda: local.value_on("n2", "while-n2-was-down") == b"caught up",
            30,
            "the restarted node catches up by anti-entropy",
        )
        nodes = json.loads((local.dir / "cluster.json").read_text())["nodes"]
        down = rumor("cluster", "down", "--dir", str(local.dir), "--json")
        assert down.returncode == 0, text(down)
        assert json.loads(down.stdout)["nodes"] == dict.fromkeys(["n1", "n2", "n3"], "stopped")
        assert not any(pid_alive(node["pid"]) for node in nodes)
        assert not (local.dir / "cluster.json").exists()
        assert rumor("cluster", "down", "--dir", str(local.dir)).returncode == 1
    finally:
        local.close()


def test_ctrl_c_stops_a_foreground_cluster(tmp_path: Path) -> None:
    cluster_dir, output = tmp_path / "fg", tmp_path / "out.txt"
    argv = [RUMOR, "cluster", "up", "-n", "2", "--base-port", str(free_ports(2)),
            "--dir", str(cluster_dir)]  # fmt: skip
    with output.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
    try:
        eventually(
            lambda: process.poll() is not None or b"Ctrl-C stops" in output.read_bytes(),
            90,
            "the cluster runs in the foreground",
        )
        assert process.poll() is None, output.read_text()
        state = json.loads((cluster_dir / "cluster.json").read_text())
        pids = [node["pid"] for node in state["nodes"]]
        assert all(pid_alive(pid) for pid in pids)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text_out = output.read_text()
    assert process.returncode == 0, text_out
    assert "n1 stopped" in text_out and "n2 stopped" in text_out
    assert not any(pid_alive(pid) for pid in pids)
    assert not (cluster_dir / "cluster.json").exists()


def test_down_leaves_a_reused_pid_alone(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A pid in cluster.json that now belongs to another program is never signalled."""
    root = tmp_path_factory.mktemp("reused")
    state = {
        "sharding": False,
        "replicas": 3,
        "discovery_port": 20001,
        "nodes": [
            {
                "id": "n1",
                "url": "http://127.0.0.1:1",
                "port": 1,
                "pid": os.getpid(),  # this test process: alive, but not a node
                "create_time": 0.0,
                "data_dir": str(root / "n1"),
                "log": str(root / "n1.log"),
            }
        ],
    }
    (root / "cluster.json").write_text(json.dumps(state))
    down = rumor("cluster", "down", "--dir", str(root), "--json")
    assert down.returncode == 0
    assert json.loads(down.stdout)["nodes"] == {"n1": "not running"}
