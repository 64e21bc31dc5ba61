"""The commands the README shows are commands the CLI accepts.

Every ``rumor ...`` (or ``.venv/bin/rumor ...``) invocation in a fenced block of README.md
is parsed by the real click application, without running it: unknown
subcommands, misspelt options, missing arguments and wrong types all fail here, so the
docs cannot drift from the code. The same walk checks that every command has help.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import click
import pytest

from rumordb.cli.main import app
from tests.cli.harness import LocalCluster, eventually

REPO = Path(__file__).resolve().parents[2]
DOCS = (REPO / "README.md",)
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
OPERATORS = {"|", "||", "&&", ";", "&", "(", ")"}
ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def fenced_blocks(text: str) -> list[str]:
    return FENCE.findall(text)


def shell_lines(block: str) -> list[str]:
    """Logical lines: continuations joined, prompts removed."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip().removeprefix("$ ") for line in joined.splitlines() if line.strip()]


def invocations(line: str) -> list[list[str]]:
    """The argument lists of each ``rumor`` command on one shell line."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # not shell (e.g. output shown in a block)
        return []
    found: list[list[str]] = []
    segment: list[str] = []
    for token in [*tokens, ";"]:
        if token not in OPERATORS:
            segment.append(token)
            continue
        while segment and ENV_ASSIGNMENT.match(segment[0]):
            segment.pop(0)
        if segment and Path(segment[0]).name == "rumor":
            found.append(segment[1:])
        segment = []
    return found


def documented_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in DOCS:
        if not path.exists():
            continue
        for block in fenced_blocks(path.read_text(encoding="utf-8")):
            for line in shell_lines(block):
                for args in invocations(line):
                    found.append((f"{path.name}: {line}", args))
    return found


def parse_without_running(args: list[str]) -> str:
    """Parse ``rumor ARGS`` down to the leaf command; return its path. Runs no callback."""
    command: click.Command = app
    context = command.make_context("rumor", list(args))
    while isinstance(command, click.Group):
        rest = [*context._protected_args, *context.args]
        if not rest and command.invoke_without_command:
            break  # a group that runs by itself: `rumor node` starts a node
        assert rest, f"{context.command_path} needs a subcommand"
        name, sub, rest = command.resolve_command(context, rest)
        assert sub is not None and name is not None
        context = sub.make_context(name, rest, parent=context)
        command = sub
    return context.command_path


def all_commands() -> list[tuple[str, click.Command]]:
    pending: list[tuple[str, click.Command]] = [("rumor", app)]
    found = []
    context = click.Context(app)
    while pending:
        path, command = pending.pop()
        if isinstance(command, click.Group):
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                assert sub is not None, f"{path} {name}"
                pending.append((f"{path} {name}", sub))
        found.append((path, command))
    return found


def test_the_docs_show_rumor_commands() -> None:
    assert len(DOCUMENTED) >= 5


DOCUMENTED = documented_commands()


@pytest.mark.parametrize(("where", "args"), DOCUMENTED, ids=[where for where, _ in DOCUMENTED])
def test_documented_command_is_accepted(where: str, args: list[str]) -> None:
    args = [arg for arg in args if arg != "--help"]  # `X --help` documents that X exists
    if not args:
        return
    try:
        parse_without_running(args)
    except click.exceptions.Exit as done:
        assert done.exit_code == 0, where
    except Exception as error:  # click's UsageError / BadParameter, with the reason
        pytest.fail(f"{where}\n  rumor {shlex.join(args)}\n  rejected: {error}")


def test_every_command_and_option_has_help() -> None:
    missing = []
    for path, command in all_commands():
        if path != "rumor" and not (command.help or command.short_help):
            missing.append(path)
        for param in command.params:
            is_option = isinstance(param, click.Option) and param.name != "help"
            if is_option and not getattr(param, "help", None):
                missing.append(f"{path} {param.opts[0]}")
    assert not missing, f"no help text: {missing}"


def test_parser_rejects_what_the_cli_rejects() -> None:
    """The check above can fail: a misspelt option or subcommand is caught."""
    with pytest.raises(Exception, match="No such option"):
        parse_without_running(["put", "k", "v", "--no-such-option"])
    with pytest.raises(Exception, match="No such command"):
        parse_without_running(["cluster", "upp"])
    assert parse_without_running(["chaos", "partition", "n1", "n2,n3"]) == "rumor chaos partition"


def test_help_shows_no_placeholders_for_flags() -> None:
    """A flag takes no value: its help line must not show one (typer printed ``<bool>``)."""
    for path, command in all_commands():
        text = command.get_help(click.Context(command, info_name=path))
        assert "<bool>" not in text and "BOOLEAN" not in text, path


@pytest.mark.live
def test_the_readme_curl_block_runs_in_order(cluster: LocalCluster) -> None:
    """The HTTP API's curl examples, run as written against a real cluster, in order.

    Only the addresses change (the test cluster's ports) and the `export RUMOR_API_KEY=...`
    placeholder line is left out (the key comes from the environment). Every JSON error
    body carries "error": none may appear, so e.g. the read-modify-write must find the
    key it reads.
    """
    text = README_TEXT
    block = next(b for b in fenced_blocks(text) if "read-modify-write" in b and "curl" in b)
    script = "\n".join(
        line for line in block.splitlines() if not line.startswith("export RUMOR_API_KEY=")
    )
    for index, url in enumerate(cluster.urls.values(), start=1):
        script = script.replace(f"http://127.0.0.1:800{index}", url)
    env = {**os.environ, "RUMOR_API_KEY": cluster.document["admin_key"]}
    done = subprocess.run(
        ["bash", "-c", "set -eu -o pipefail\n" + script],
        capture_output=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    output = done.stdout.decode(errors="replace")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert '"error"' not in output, output
    assert '"key":"greeting"' in output.replace(" ", "")
    eventually(lambda: cluster.value_on("n1", "greeting") is None, 15, "the delete replicated")


README_TEXT = (REPO / "README.md").read_text(encoding="utf-8")
