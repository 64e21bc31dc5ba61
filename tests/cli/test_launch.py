"""``rumordb.cli.launch``: ``rumor get`` without click reads and answers as click does."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rumordb.cli.data import delete, get, put
from rumordb.cli.launch import Call, parse
from rumordb.cli.writes import MAX_STDIN_BYTES
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
    (["put", "k", "v"], {}),
    (["put", "k"], {}),
    (["put", "k", "-"], {}),
    (["put", "k", ""], {}),
    (["put", "k", "v", "--json", "--create", "--ttl", "60"], {"RUMOR_URL": "http://a:1"}),
    (["put", "--ttl=007", "k", "v", "--ttl", "365"], {}),
    (["put", "k", "v", "--ttl", str(365 * 24 * 3600)], {}),
    (["put", "k", "-t", "application/json", "v", "--content-type=text/x", "-t", "a/b"], {}),
    (["put", "k", "v", "--if-match", "ctx-1", "--if-match=-ctx-2"], {}),
    (["put", "k", "v", "--content-type", "--json"], {}),  # --json is the type
    (["put", "k", "v", "--dir", "d", "--cacert=c.pem", "--api-key", "a"], {"RUMOR_DIR": "x"}),
    (["delete", "k"], {}),
    (["delete", "k", "--json", "--if-match", "ctx"], {"RUMOR_API_KEY": "env"}),
    (["delete", "--if-match=ctx", "k", "--url", "http://a:1"], {}),
]
# shapes left to click: it prints their help, or says what is wrong
FOR_CLICK = [
    [],
    ["list"],
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
    ["get", "k", "--create"],
    ["get", "k\x1b[31m"],  # click.echo would strip the escape
    ["get", "k\udcff"],  # not text: click's business
    ["--version"],
    ["put"],
    ["put", "k", "v", "w"],
    ["put", "-", "v"],
    ["put", "k", "v", "--ttl", "0"],
    ["put", "k", "v", "--ttl", str(365 * 24 * 3600 + 1)],
    ["put", "k", "v", "--ttl", "1.5"],
    ["put", "k", "v", "--ttl", " 5"],
    ["put", "k", "v", "--ttl=+5"],
    ["put", "k", "v", "--ttl"],
    ["put", "k", "v", "-tapplication/json"],
    ["put", "k", "v", "-t=text/plain"],
    ["put", "k", "v", "--content-type", ""],
    ["put", "k", "v", "--create=1"],
    ["put", "k", "v", "--if-match"],
    ["put", "k", "v", "--help"],
    ["delete"],
    ["delete", "k", "v"],
    ["delete", "k", "--ttl", "5"],
    ["delete", "k", "-t", "x"],
    ["delete", "k", "--create"],
]


def clicks_reading(args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Call:
    for name in ("RUMOR_URL", "RUMOR_API_KEY", "RUMOR_DIR", "RUMOR_CACERT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    command = {"get": get, "put": put, "delete": delete}[args[0]]
    context = command.make_context(args[0], args[1:])
    return Call(args[0], context.params, context.meta.get("rumor.cacert"))


@pytest.mark.parametrize(("argv", "env"), PLAIN)
def test_plain_commands_are_read_as_click_reads_them(
    argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parse(argv, env) == clicks_reading(argv, env, monkeypatch)


@pytest.mark.parametrize("argv", FOR_CLICK)
def test_every_other_shape_is_left_to_click(argv: list[str]) -> None:
    assert parse(argv, {}) is None


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


# A write case: (name, argv after `rumor` with KEY for the key, env, stdin, parsed by
# the fast path?).
# CONTEXT stands for the key's current context, STALE for one a later write overtook;
# `--url` of n1 is added unless the case names --url or --dir.
WriteCase = tuple[str, str, str, bytes | None, bool]
VOLATILE = [  # what two writes of the same thing differ in: the version they made
    (re.compile(rb'"context": "[^"]*"'), b'"context": C'),
    (re.compile(rb'"hlc": [0-9]+'), b'"hlc": H'),
    (re.compile(rb"context \S+"), b"context C"),
]
ADMIN, WRONG, NO_KEY = "admin", "wrong", "none"
WRITE_CASES: list[WriteCase] = [
    ("put-text", "put KEY hello", ADMIN, None, True),
    ("put-json", "put KEY hello --json", ADMIN, None, True),
    ("put-stdin", "put KEY --json", ADMIN, b"\x00\xff", True),
    ("put-dash", "put KEY - -t a/b", ADMIN, b"typed", True),
    ("put-ttl", "put KEY v --ttl 60 --json", ADMIN, None, True),
    ("put-update", "put KEY new", ADMIN, None, True),
    ("put-create-taken", "put KEY v --create", ADMIN, None, True),
    ("put-create", "put KEY v --create --json", ADMIN, None, True),
    ("put-if-match", "put KEY v --if-match CONTEXT --json", ADMIN, None, True),
    ("put-if-stale", "put KEY v --if-match STALE", ADMIN, None, True),
    ("put-if-garbage", "put KEY v --if-match zz", ADMIN, None, True),
    ("put-too-large", "put KEY", ADMIN, b"x" * 1_048_577, True),  # the node's 413
    ("put-too-much-stdin", "put KEY", ADMIN, b"x" * (MAX_STDIN_BYTES + 1), True),
    ("put-bad-ttl", "put KEY v --ttl 0", ADMIN, None, False),
    ("put-bad-url", "put KEY v --url ftp://x", ADMIN, None, True),  # refused later
    ("put-unreachable", "put KEY v --url http://127.0.0.1:1", ADMIN, None, True),
    ("put-wrong-key", "put KEY v", WRONG, None, True),
    ("put-no-key", "put KEY v", NO_KEY, None, True),
    ("put-dir", "put KEY v --dir DIR", NO_KEY, None, True),
    ("put-odd-key", "put KEY/ключ?x=1%20 v --json", ADMIN, None, True),
    ("put-long-key", "put KEY" + "x" * 5000 + " v", ADMIN, None, True),
    ("delete-text", "delete KEY", ADMIN, None, True),
    ("delete-json", "delete KEY --json", ADMIN, None, True),
    ("delete-if-match", "delete KEY --if-match CONTEXT --json", ADMIN, None, True),
    ("delete-if-stale", "delete KEY --if-match STALE", ADMIN, None, True),
    ("delete-missing", "delete KEY-never", ADMIN, None, True),
    ("delete-wrong-key", "delete KEY", WRONG, None, True),
    ("delete-dir", "delete KEY --dir DIR", NO_KEY, None, True),
]


def write_argv(cluster: LocalCluster, words: str, key: str) -> list[str]:
    standing = {"KEY": key, "DIR": str(cluster.dir)}
    argv = [word.replace("KEY", key) if word.startswith("KEY") else standing.get(word, word)
            for word in words.split()]  # fmt: skip
    argv = [context(cluster, key) if word == "CONTEXT" else word for word in argv]
    argv = [stale(cluster, key) if word == "STALE" else word for word in argv]
    if "--url" not in argv and "--dir" not in argv:
        argv += ["--url", cluster.urls["n1"]]
    return argv


def context(cluster: LocalCluster, key: str) -> str:
    """The context of ``key``'s current version on n1 (as ``rumor get --json`` shows it)."""
    shown = cluster.run("get", key, "--json")
    assert shown.returncode == 0, shown.stderr
    return str(json.loads(shown.stdout)["context"])


def stale(cluster: LocalCluster, key: str) -> str:
    """A context of ``key`` that a later write has overtaken."""
    old = context(cluster, key)
    cluster.put_http("n1", key, b"newer")
    return old


def normalized(result: tuple[int, bytes, bytes], key: str) -> tuple[int, bytes, bytes]:
    code, *streams = result
    out = []
    for stream in streams:
        stream = stream.replace(key.encode(), b"KEY")
        for pattern, replacement in VOLATILE:
            stream = pattern.sub(replacement, stream)
        out.append(stream)
    return code, out[0], out[1]


@pytest.mark.live
@pytest.mark.slow
def test_console_script_writes_and_deletes_exactly_as_click(cluster: LocalCluster) -> None:
    envs = {ADMIN: cluster.admin_env, WRONG: {"RUMOR_API_KEY": "not-a-key-" * 3}, NO_KEY: {}}
    codes = set()
    for name, words, who, stdin, fast in WRITE_CASES:
        answers = []
        for path in ("fast", "click"):
            key, env = f"launch-{name}-{path}", envs[who]
            if name != "put-create":
                cluster.put_http("n1", key, b"before")  # every key but put-create's exists
            argv = write_argv(cluster, words, key)
            assert (parse(argv, env) is not None) is fast, name
            if path == "fast":
                done = rumor(*argv, env=env, stdin=stdin, cwd=cluster.root)
                answer = (done.returncode, done.stdout, done.stderr)
            else:
                app = run_cli(*argv, env=env, stdin=stdin, cwd=cluster.root)
                answer = (app.returncode, app.stdout, app.stderr)
            answers.append(normalized(answer, key))
        assert answers[0] == answers[1], name
        codes.add(answers[0][0])
    assert codes == {0, 1, 2, 3, 4, 5}


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["get", "launch-lean"], b"lean"),
        (["put", "launch-lean-put", "v"], b"created launch-lean-put (1 bytes)  context "),
        (["delete", "launch-lean"], b"deleted launch-lean\n"),
    ],
)
def test_console_script_answers_without_importing_click(
    cluster: LocalCluster, args: list[str], shown: bytes
) -> None:
    cluster.put_http("n1", "launch-lean", b"lean")
    probe = (
        "import sys; from rumordb.cli import launch\n"
        "try:\n    launch.main()\nexcept SystemExit as done:\n    code = done.code\n"
        "print('', code, 'click' in sys.modules, 'httpx' in sys.modules)"
    )
    argv = [sys.executable, "-c", probe, *args, "--url", cluster.urls["n1"],
            "--api-key", cluster.document["admin_key"]]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, check=True, timeout=60)
    assert done.stdout.startswith(shown), done.stderr
    assert done.stdout.endswith(b" 0 False False\n"), done.stderr
