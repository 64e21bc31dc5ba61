"""The data commands' details: odd keys, --all, --dir, shell, --version, a terminal's newline."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.cli.harness import RUMOR, LocalCluster, rumor, run_cli

pytestmark = [pytest.mark.live, pytest.mark.slow]


@pytest.mark.parametrize("key", [".", "..", "a/b", "?x=1", "%41", "ключ"])
def test_any_key_round_trips_through_the_cli(cluster: LocalCluster, key: str) -> None:
    put = cluster.run("put", key, f"v-{key}")
    assert put.returncode == 0, put.stderr
    got = cluster.run("get", key)
    assert (got.returncode, got.stdout) == (0, f"v-{key}".encode())
    assert key in cluster.run("list", "--prefix", key).stdout.decode().splitlines()
    assert cluster.run("delete", key).returncode == 0
    assert cluster.run("get", key).returncode == 1


def test_list_all_follows_every_page(cluster: LocalCluster) -> None:
    for i in range(105):
        cluster.put_http("n1", f"many-{i:03d}", b"x")
    capped = cluster.run("list", "--prefix", "many-")
    assert len(capped.stdout.splitlines()) == 100 and b"--all" in capped.stderr
    everything = json.loads(cluster.run("list", "--prefix", "many-", "--all", "--json").stdout)
    assert len(everything["keys"]) == 105 and everything["next"] is None


def test_client_commands_find_key_and_nodes_through_dir(cluster: LocalCluster) -> None:
    """The "try:" line of `cluster up --dir X` works as printed: no key, no URL needed."""
    elsewhere = cluster.root / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    put = run_cli("put", "via-dir", "yes", "--dir", str(cluster.dir), cwd=elsewhere)
    assert put.returncode == 0, put.stderr
    env = {"RUMOR_DIR": str(cluster.dir)}
    assert run_cli("get", "via-dir", env=env, cwd=elsewhere).stdout == b"yes"
    no_key = run_cli("get", "via-dir", "--url", cluster.urls["n1"], cwd=elsewhere)
    assert no_key.returncode == 3  # no .rumor/credentials in that directory


def test_shell_runs_many_commands_over_one_connection(cluster: LocalCluster) -> None:
    script = (
        b"# comment\nput s1 one\nput s2 two\n\nget s1\nlist --prefix s --json\nget nope\nget s2\n"
    )
    result = cluster.run("shell", stdin=script)
    assert result.returncode == 1  # the first failure: `get nope`
    lines = result.stdout.decode()
    assert "one\n" in lines and lines.endswith("two\n")
    assert '"s1"' in lines and '"s2"' in lines
    assert b"nope: not found" in result.stderr
    bad = cluster.run("shell", stdin=b"frobnicate x\nput k -\n")
    assert bad.returncode == 2 and b"frobnicate" in bad.stderr


def test_version_and_help_start_without_a_cluster() -> None:
    from rumordb import __version__

    version = rumor("--version")
    assert version.returncode == 0 and __version__.encode() in version.stdout
    assert rumor("--help").returncode == 0


def test_get_ends_with_a_newline_on_a_terminal_only(cluster: LocalCluster) -> None:
    cluster.put_http("n1", "no-newline", b"bare")
    env = {**os.environ, **cluster.admin_env, "RUMOR_URL": cluster.urls["n1"]}
    leader, follower = os.openpty()
    try:
        done = subprocess.run([RUMOR, "get", "no-newline"], stdout=follower, env=env, timeout=60)
        assert done.returncode == 0
        assert os.read(leader, 100).replace(b"\r\n", b"\n") == b"bare\n"
    finally:
        os.close(leader)
        os.close(follower)
    assert cluster.run("get", "no-newline").stdout == b"bare"  # piped: the bytes exactly


def test_chaos_delay_accepts_exactly_what_the_node_accepts(cluster: LocalCluster) -> None:
    try:
        top = cluster.run("chaos", "delay", "n2", "60000", "--json")
        assert top.returncode == 0, top.stderr
        assert json.loads(top.stdout)["nodes"]["n2"]["delay_ms"] == 60_000
        assert cluster.run("chaos", "delay", "n2", "60001").returncode == 2
    finally:
        assert cluster.run("chaos", "heal").returncode == 0


def test_add_prints_a_try_line_that_works_and_up_restarts_added_nodes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    local = LocalCluster(tmp_path_factory.mktemp("readd"), nodes=2).up()
    try:
        added = rumor("cluster", "add", "--dir", str(local.dir))
        assert added.returncode == 0, added.stderr
        try_line = next(
            line for line in added.stdout.decode().splitlines() if line.startswith("try:")
        )
        command = try_line.removeprefix("try: ").replace("rumor ", f"{RUMOR} ")
        tried = subprocess.run(["bash", "-c", command], capture_output=True, timeout=60, check=False,
                               env={k: v for k, v in os.environ.items() if not k.startswith("RUMOR_")})  # fmt: skip
        assert (tried.returncode, tried.stdout.splitlines()[-1]) == (0, b"world"), try_line
        assert rumor("cluster", "down", "--dir", str(local.dir)).returncode == 0
        again = rumor("cluster", "up", "-n", "2", "--base-port", str(local.base_port),
                      "--dir", str(local.dir), "--detach", "--json")  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert [n["id"] for n in json.loads(again.stdout)["nodes"]] == ["n1", "n2", "n3"]
    finally:
        local.close()
