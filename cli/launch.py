"""The ``rumor`` console script: ``rumor get/put/delete`` without click, all else through it.

A short command's cost is its start-up, and importing click and the command modules was
a third of it (about 25 ms of CPU on a 2-core VM, more than the request itself). So the
script first tries ``get``, ``put`` and ``delete`` alone, in their plain shapes: the
command's arguments, its own flags (``put``: ``--content-type``/``-t``, ``--if-match``,
``--create``, ``--ttl``; ``delete``: ``--if-match``), ``--json``, and the connection
flags ``--url``, ``--api-key``, ``--dir``, ``--cacert`` (``--opt VALUE`` or
``--opt=VALUE``, ``-t VALUE``) with click's ``RUMOR_*`` environment defaults. Anything
else (help, another flag, a missing or extra argument, an out-of-range ``--ttl``, a bad
URL, unreadable credentials, a value to type on a terminal) goes to the click app
untouched, which parses it and reports what is wrong; nothing has been read from standard
input, sent or printed by then.

The fast path runs the same functions as the click commands (``connect`` resolves the
nodes and the key and opens the client, ``writes`` sends and prints a put or a delete,
``output`` translates errors and prints a value), so its output, exit codes and
``--json`` shapes are the click commands'; ``tests/cli/test_launch.py`` checks both the
parsing and the answers against click's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

# --flag -> (the commands' parameter, its environment default)
CONNECTION = {
    "--url": ("urls", "RUMOR_URL"),
    "--api-key": ("api_key", "RUMOR_API_KEY"),
    "--dir": ("cluster_dir", "RUMOR_DIR"),
    "--cacert": ("cacert", "RUMOR_CACERT"),
}
TTL_MAX_S = 365 * 24 * 3600  # the click option's IntRange


class Shape(NamedTuple):
    """What the fast path accepts of one command, named as the click command's parameters."""

    arguments: tuple[str, ...]  # the first is required, the others optional
    flags: dict[str, str]  # word -> parameter set True (default False)
    valued: dict[str, str]  # word -> parameter given by the next word (default None)


SHAPES = {
    "get": Shape(("key",), {"--json": "json_output"}, {}),
    "put": Shape(
        ("key", "value"),
        {"--json": "json_output", "--create": "create"},
        {
            "--content-type": "content_type",
            "-t": "content_type",
            "--if-match": "if_match",
            "--ttl": "ttl_s",
        },
    ),
    "delete": Shape(("key",), {"--json": "json_output"}, {"--if-match": "if_match"}),
}


class Call(NamedTuple):
    command: str
    params: dict[str, Any]  # what click's context.params would hold
    cacert: str | None


def parse(argv: Sequence[str], env: Mapping[str, str]) -> Call | None:
    """A plain ``get``, ``put`` or ``delete``, as click would read it; None for anything else."""
    shape = SHAPES.get(argv[0]) if argv else None
    if shape is None or not all(plain_word(word) for word in argv):
        return None
    params: dict[str, Any] = dict.fromkeys(shape.flags.values(), False)
    params |= dict.fromkeys(shape.valued.values())
    given: dict[str, list[str]] = {}
    arguments: list[str] = []
    words = iter(argv[1:])
    for word in words:
        flag, has_value, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if word in shape.flags:
            params[shape.flags[word]] = True
        elif flag in CONNECTION or flag in shape.valued:
            found = value if has_value else next(words, None)
            if not found:
                return None  # click's error message, or its odd reading of an empty value
            given.setdefault(flag, []).append(found)
        elif word.startswith("-") and word != "-":
            return None  # -h, --help, --, another flag: click's business
        else:
            arguments.append(word)
    if not 1 <= len(arguments) <= len(shape.arguments) or arguments[0] == "-":
        return None
    missing = len(shape.arguments) - len(arguments)
    params |= dict(zip(shape.arguments, [*arguments, *[None] * missing], strict=True))
    for flag, name in shape.valued.items():
        if flag in given:
            params[name] = given[flag][-1]
    if params.get("ttl_s") is not None:
        params["ttl_s"] = seconds(params["ttl_s"])
        if params["ttl_s"] is None:
            return None  # click says what is wrong with it
    return connection(argv[0], params, given, env)


def plain_word(word: str) -> bool:
    """No word click would treat differently: escapes it strips, bytes that are not text."""
    try:
        word.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x1b" not in word


def seconds(text: str) -> int | None:
    """``--ttl``'s value if click's IntRange(1, TTL_MAX_S) reads it as a number in range."""
    if not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if 1 <= value <= TTL_MAX_S else None


def connection(
    command: str, params: dict[str, Any], given: dict[str, list[str]], env: Mapping[str, str]
) -> Call:
    """The call with the connection parameters from the flags, else from ``RUMOR_*``."""
    from rumordb.cli.credentials import DEFAULT_DIR

    single = {flag: (given[flag][-1] if flag in given else env.get(name) or None)
              for flag, (_, name) in CONNECTION.items()}  # fmt: skip
    params["urls"] = tuple(given.get("--url") or env.get("RUMOR_URL", "").split())
    params["api_key"] = single["--api-key"]
    params["cluster_dir"] = Path(single["--dir"]) if single["--dir"] else DEFAULT_DIR
    return Call(command, params, single["--cacert"])


def answer(call: Call) -> int | None:
    """Run ``call`` as the click command does; None if click must handle it instead."""
    from rumordb.cli import connect, credentials

    params = call.params
    cluster_dir: Path = params["cluster_dir"]
    if cluster_dir.exists() and not cluster_dir.is_dir():
        return None  # click refuses a --dir that is a file
    if not all(connect.is_http_url(url) for url in connect.named_urls(params["urls"])):
        return None  # click says which --url is wrong
    try:
        params["api_key"] or credentials.admin_key_from(cluster_dir)
    except credentials.CredentialsError:
        return None  # click says what is wrong with the file
    if call.command == "put" and params["value"] in (None, "-"):
        return put_from_stdin(call)
    from rumordb.cli import writes

    value: str = params.get("value") or ""
    return send(call, value.encode(), writes.ARGUMENT_TYPE)


def put_from_stdin(call: Call) -> int | None:
    from rumordb.cli import writes
    from rumordb.cli.output import ExitCode, error_line

    if call.params["value"] is None and sys.stdin.isatty():
        return None  # click asks for the value
    body = writes.stdin_value()
    if body is None:
        sys.stderr.write(error_line(writes.TOO_MUCH_STDIN) + "\n")
        return int(ExitCode.USAGE)
    return send(call, body, writes.STDIN_TYPE)


def send(call: Call, body: bytes, default_type: str) -> int:
    """One request on a client made from the call's flags, its answer printed."""
    from rumordb.cli import connect
    from rumordb.cli.output import error_line, error_message
    from rumordb.errors import RumorError

    p = call.params
    db = connect.data_client(p["urls"], p["api_key"], p["cluster_dir"], call.cacert)
    try:
        result = request(db, call, body, default_type)
    except RumorError as error:
        code, message = error_message(error, p["key"])
        sys.stderr.write(error_line(message) + "\n")
        return int(code)
    finally:
        db.close()
    show(call, body, result)
    return 0


def request(db: Any, call: Call, body: bytes, default_type: str) -> Any:
    from rumordb.cli import writes

    p = call.params
    if call.command == "get":
        return db.get(p["key"])
    if call.command == "delete":
        return db.delete(p["key"], if_match=p["if_match"])
    kind = p["content_type"] or default_type
    return writes.write(db, p["key"], body, kind, p["if_match"], p["create"], p["ttl_s"])


def show(call: Call, body: bytes, result: Any) -> None:
    """What the click command prints for ``result`` (``click.echo`` is a write and a flush)."""
    from rumordb.cli import writes
    from rumordb.cli.output import emit_json, show_value

    key, json_output = call.params["key"], call.params["json_output"]
    if call.command == "get":
        show_value(result, json_output, newline=sys.stdout.isatty())
    elif json_output:
        put = call.command == "put"
        emit_json(writes.written_document(result) if put else writes.deleted_document(result))
    else:
        put = call.command == "put"
        line = writes.written_line(key, len(body), result) if put else writes.deleted_line(key)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def main() -> NoReturn:
    call = parse(sys.argv[1:], os.environ)
    try:
        code = answer(call) if call is not None else None
    except BrokenPipeError:
        # The reader left (`rumor get k | head -c1`): exit 1 quietly, as click does; the
        # interpreter's last flush goes to /dev/null (the Python docs' recipe for SIGPIPE).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    if code is None:
        from rumordb.cli.main import app

        app()  # click exits by itself (standalone mode)
    sys.exit(code)
