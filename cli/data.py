"""Data commands: ``rumor put/get/delete/list``, and ``rumor shell`` for many of them.

They feel like redis-cli for people and behave like tools for scripts. Each runs on one
``rumordb.Client`` (standard-library transport, no httpx, no rich: ``rumor get`` is a
few tens of milliseconds). ``rumor shell`` reads such commands from standard input, one
per line, and runs them all over one connection.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from rumordb.cli import writes
from rumordb.cli.connect import connection_options, data_client, json_option
from rumordb.cli.output import EXIT_CODES, ExitCode, emit_json, fail, run, show_value

LIST_LIMIT_MAX = 1_000_000


@contextmanager
def session(urls: tuple[str, ...], api_key: str | None, cluster_dir: Path) -> Iterator[Any]:
    """The shell's client when inside ``rumor shell``, else one made from the flags."""
    context = click.get_current_context()
    shared = context.find_object(SharedClient)
    if shared is not None:
        yield shared.client
        return
    client = data_client(urls, api_key, cluster_dir)
    try:
        yield client
    finally:
        client.close()


def read_value(value: str | None) -> tuple[bytes, str]:
    """The value to write and its default content type; standard input is read bounded."""
    if click.get_current_context().find_object(SharedClient) and value in (None, "-"):
        fail(ExitCode.USAGE, "in `rumor shell`, give the value on the line")
    if value is None and sys.stdin.isatty():
        fail(ExitCode.USAGE, "give VALUE, pipe the value in, or pass - to type it")
    if value is None or value == "-":
        data = writes.stdin_value()
        if data is None:
            fail(ExitCode.USAGE, writes.TOO_MUCH_STDIN)
        return data, writes.STDIN_TYPE
    return value.encode(), writes.ARGUMENT_TYPE


@click.command(epilog=EXIT_CODES)
@click.argument("key")
@click.argument("value", required=False)
@click.option(
    "--content-type",
    "-t",
    metavar="TYPE",
    help="Content-Type stored with the value (default: text/plain for an argument, "
    "application/octet-stream for standard input).",
)
@click.option(
    "--if-match",
    metavar="CONTEXT",
    help="Write only if the node's version is the one this context names "
    "(the context from `rumor get --json`).",
)
@click.option("--create", is_flag=True, help="Fail (exit 5) if the key already has a value.")
@click.option(
    "--ttl",
    "ttl_s",
    type=click.IntRange(1, 365 * 24 * 3600),
    metavar="SECONDS",
    help="Expire the value this many seconds after the write, on every node.",
)
@connection_options
@json_option
def put(
    key: str,
    value: str | None,
    content_type: str | None,
    if_match: str | None,
    create: bool,
    ttl_s: int | None,
    urls: tuple[str, ...],
    api_key: str | None,
    cluster_dir: Path,
    json_output: bool,
) -> None:
    """Store VALUE under KEY (upsert); VALUE '-' or absent: read it from standard input."""
    # Without click, `rumor put` runs the same functions (rumordb.cli.launch).
    body, default_type = read_value(value)
    kind = content_type or default_type
    with session(urls, api_key, cluster_dir) as db:
        result = run(key, lambda: writes.write(db, key, body, kind, if_match, create, ttl_s))
    if json_output:
        emit_json(writes.written_document(result))
        return
    click.echo(writes.written_line(key, len(body), result))


@click.command(epilog=EXIT_CODES)
@click.argument("key")
@connection_options
@json_option
def get(
    key: str, urls: tuple[str, ...], api_key: str | None, cluster_dir: Path, json_output: bool
) -> None:
    """Print the value of KEY (raw bytes; exit 1 if absent or deleted)."""
    # `rumor get` alone runs without click (rumordb.cli.launch), on the same functions.
    with session(urls, api_key, cluster_dir) as db:
        value = run(key, lambda: db.get(key))
    in_shell = click.get_current_context().find_object(SharedClient) is not None
    # A prompt, or the next shell command's output, starts on its own line.
    show_value(value, json_output, newline=in_shell or sys.stdout.isatty())


@click.command(epilog=EXIT_CODES)
@click.argument("key")
@click.option("--if-match", metavar="CONTEXT", help="Delete only this version.")
@connection_options
@json_option
def delete(
    key: str,
    if_match: str | None,
    urls: tuple[str, ...],
    api_key: str | None,
    cluster_dir: Path,
    json_output: bool,
) -> None:
    """Delete KEY (a tombstone that replicates like a write; exit 1 if absent)."""
    # Without click, `rumor delete` runs the same functions (rumordb.cli.launch).
    with session(urls, api_key, cluster_dir) as db:
        result = run(key, lambda: db.delete(key, if_match=if_match))
    if json_output:
        emit_json(writes.deleted_document(result))
        return
    click.echo(writes.deleted_line(key))


@click.command("list", epilog=EXIT_CODES)
@click.option("--prefix", "-p", default="", help="Only keys starting so.")
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(1, LIST_LIMIT_MAX),
    default=100,
    show_default=True,
    help="At most this many keys.",
)
@click.option("--all", "everything", is_flag=True, help="Every key (no --limit).")
@connection_options
@json_option
def list_keys(
    prefix: str,
    limit: int,
    everything: bool,
    urls: tuple[str, ...],
    api_key: str | None,
    cluster_dir: Path,
    json_output: bool,
) -> None:
    """List keys in order, following the server's pages."""
    with session(urls, api_key, cluster_dir) as db:
        keys, after = run("list", lambda: collect(db, prefix, None if everything else limit))
    if json_output:
        emit_json({"keys": keys, "next": after})
        return
    sys.stdout.write("".join(key + "\n" for key in keys))
    if after is not None:
        click.echo(f"(more keys after {after!r}: raise --limit, or pass --all)", err=True)


def collect(db: Any, prefix: str, limit: int | None) -> tuple[list[str], str | None]:
    """Up to ``limit`` keys (all if None), and the cursor after the last one if more remain."""
    from rumordb.api import PAGE_MAX

    keys: list[str] = []
    after: str | None = None
    while limit is None or len(keys) < limit:
        size = PAGE_MAX if limit is None else min(PAGE_MAX, limit - len(keys))
        page = db.list(prefix, limit=size, after=after)
        keys.extend(page.keys)
        after = page.next
        if after is None:
            break
    return keys, after


# ---------------------------------------------------------------------------- shell


class SharedClient:
    """The one client of a ``rumor shell`` session, found by the commands it runs."""

    def __init__(self, client: Any) -> None:
        self.client = client


SHELL_COMMANDS = {"put": put, "get": get, "delete": delete, "list": list_keys}


@click.command(epilog=EXIT_CODES)
@connection_options
def shell(urls: tuple[str, ...], api_key: str | None, cluster_dir: Path) -> None:
    """Run put/get/delete/list commands read from standard input, one per line, over one
    connection (blank lines and # comments are skipped; each value `get` prints ends with
    a newline). Exits with the first failing command's code, after running them all.

    \b
      printf 'put a 1\\nput b 2\\nget a\\nlist --json\\n' | rumor shell
    """
    client = data_client(urls, api_key, cluster_dir)
    first_failure = 0
    try:
        for number, line in enumerate(sys.stdin, start=1):
            code = run_line(SharedClient(client), line, number)
            first_failure = first_failure or code
    finally:
        client.close()
    raise click.exceptions.Exit(first_failure)


def run_line(shared: SharedClient, line: str, number: int) -> int:
    """Run one shell line; its exit code (errors are reported, never raised)."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError as exc:
        click.echo(f"error: line {number}: {exc}", err=True)
        return int(ExitCode.USAGE)
    if not words:
        return 0
    command = SHELL_COMMANDS.get(words[0])
    if command is None:
        click.echo(f"error: line {number}: {words[0]!r} is not one of "
                   f"{', '.join(SHELL_COMMANDS)}", err=True)  # fmt: skip
        return int(ExitCode.USAGE)
    try:
        # Not standalone: click returns an Exit's code instead of leaving the process.
        code = command.main(words[1:], prog_name=words[0], standalone_mode=False, obj=shared)
    except click.exceptions.Exit as done:
        code = done.exit_code
    except click.ClickException as exc:
        click.echo(f"error: line {number}: {exc.format_message()}", err=True)
        code = exc.exit_code
    sys.stdout.flush()
    return code if isinstance(code, int) else 0
