"""``rumordb.cli.launch``: ``rumor get`` without click reads and answers as click does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rumordb.cli.data import get
from rumordb.cli.launch import GetCall, parse_get
from tests.cli.harness import LocalCluster, rumor, run_cli

# argv after `rumor`, and the RUMOR_* environment
PLAIN = [
    (["get", "k"], {}),
    (["get", "k", "--json"], {}),
    (["get", "--json", "k", "--json"], {}),
    (["get", "k", "--url", "http://a:1", "--url=http://b:2,http://c:3"], {}),
    (["get", "k"], {"RUMOR_URL": " http://a:1  http://b:2 "}),
    (["get", "k", "--url", "http://x:9"], {"RUMOR_URL": "http://a:1"}),
    (["get", "k"], {"RUMOR_URL": ""}),
    (["get", "k", "--api-key", "one", "--api-key=two"], {"RUMOR_API_KEY": "env"}),
    (["get", "k"], {"RUMOR_API_KEY": "env", "RUMOR_DIR": "/tmp/x", "RUMOR_CACERT": "ca"}),
    (["get", "k"], {"RUMOR_API_KEY": "", "RUMOR_DIR": "", "RUMOR_CACERT": ""}),
    (["get", "k", "--dir", "d", "--cacert", "c.pem"], {"RUMOR_DIR": "/tmp/x"}),
    (["get", "ключ/with spaces?x=1", "--api-key", "-starts-with-dash"], {}),
]
# shapes left to click: it prints their help, or says what is wrong
FOR_CLICK = [
    [],
    ["put", "k", "v"],
    ["get"],
    ["get", "a", "b"],
    ["get", "k", "--help"],
    ["get", "-h"],
    ["get", "k", "--url"],
    ["get", "k", "--url", ""],
    ["get", "--", "k"],
    ["get", "-"],
    ["get", "k", "--jso"],
    ["get", "k", "--json=yes"],
    ["--version"],
]


def clicks_reading(
    args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> GetCall:
    for name in ("RUMOR_URL", "RUMOR_API_KEY", "RUMOR_DIR", "RUMOR_CACERT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    context = get.make_context("get", args)
    params = context.params
    return GetCall(params["key"], params["urls"], params["api_key"], params["cluster_dir"],
                   params["json_output"], context.meta.get("rumor.cacert"))  # fmt: skip


@pytest.mark.parametrize(("argv", "env"), PLAIN)
def test_plain_get_is_read_as_click_reads_it(
    argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parse_get(argv, env) == clicks_reading(argv[1:], env, monkeypatch)


@pytest.mark.parametrize("argv", FOR_CLICK)
def test_every_other_shape_is_left_to_click(argv: list[str]) -> None:
    assert parse_get(argv, {}) is None


def both(cluster: LocalCluster, *args: str, env: dict[str, str] | None = None,
         cwd: Path | None = None) -> tuple[object, object]:  # fmt: skip
    """(the console script's answer, the click app's answer) to ``rumor ARGS``."""
    script = rumor(*args, env=env, cwd=cwd)
    app = run_cli(*args, env=env, cwd=cwd)
    return (script.returncode, script.stdout, script.stderr), (
        app.returncode, app.stdout, app.stderr
    )  # fmt: skip


@pytest.mark.live
@pytest.mark.slow
def test_console_script_answers_get_exactly_as_click(cluster: LocalCluster) -> None:
    cluster.put_http("n1", "launch-text", b"hello")
    cluster.put_http("n1", "launch-bytes", b"\x00\xff\n")
    url, admin = cluster.urls["n1"], cluster.admin_env
    cases = [
        (("get", "launch-text", "--url", url), admin),
        (("get", "launch-text", "--json", "--url", url), admin),
        (("get", "launch-bytes", "--json", "--url", url), admin),
        (("get", "launch-bytes", "--url", url), admin),
        (("get", "launch-missing", "--url", url), admin),  # exit 1
        (("get", "launch-text", "--url", url), {"RUMOR_API_KEY": "not-a-key-" * 3}),  # 3
        (("get", "launch-text", "--url", "http://127.0.0.1:1"), admin),  # 4: unreachable
        (("get", "launch-text", "--url", "ftp://x"), admin),  # 2: click's usage error
        (("get", "launch-text", "--dir", str(cluster.dir)), {}),  # key and nodes from --dir
        (("get", "launch-text", "--url", url), {}),  # no key: 3, with the hint
    ]
    codes = set()
    for args, env in cases:
        script, app = both(cluster, *args, env=env, cwd=cluster.root)
        assert script == app, args
        codes.add(script[0])  # type: ignore[index]
    assert codes == {0, 1, 2, 3, 4}


@pytest.mark.live
@pytest.mark.slow
def test_console_script_gets_without_importing_click(cluster: LocalCluster) -> None:
    cluster.put_http("n1", "launch-lean", b"lean")
    probe = (
        "import sys; from rumordb.cli import launch\n"
        "try:\n    launch.main()\nexcept SystemExit as done:\n    code = done.code\n"
        "print('', code, 'click' in sys.modules, 'httpx' in sys.modules)"
    )
    argv = [sys.executable, "-c", probe, "get", "launch-lean", "--url", cluster.urls["n1"],
            "--api-key", cluster.document["admin_key"]]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, check=True, timeout=60)
    assert done.stdout == b"lean 0 False False\n", done.stderr
