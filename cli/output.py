"""How every command ends: exit codes, error lines, JSON documents, and rich tables.

Human output by default, ``--json`` for a stable machine shape, and exit codes a shell
can test; every client error is translated once, here, into one of them:

    0 ok   1 not found   2 usage / rejected request   3 auth   4 unreachable or server error
    5 conflict (If-Match mismatch, or --create on an existing key)

rich is imported only by the commands that draw tables (``console``), never by
``get``/``put``: it costs more start-up than the request itself. Nor is click imported
here at module level: ``rumordb.cli.launch`` answers ``rumor get`` with this module's
``error_message`` and ``show_value`` without loading click at all.
"""

from __future__ import annotations

import enum
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:
    from rich.console import Console

    from rumordb.errors import RumorError

EXIT_CODES = (
    "Exit codes: 0 ok, 1 not found, 2 usage or invalid request, 3 auth, "
    "4 unreachable or server error, 5 conflict (If-Match / --create)."
)
PIPE_WIDTH = 160  # rich's 80 columns would fold URLs in tables piped to grep or a file
T = TypeVar("T")


class ExitCode(enum.IntEnum):
    OK = 0
    NOT_FOUND = 1
    USAGE = 2
    AUTH = 3
    UNREACHABLE = 4
    CONFLICT = 5


def error_line(message: str) -> str:
    return f"error: {message}"


def fail(code: ExitCode, message: str) -> NoReturn:
    import click  # loaded already by every click command that fails

    click.echo(error_line(message), err=True)
    raise click.exceptions.Exit(int(code))


def emit_json(document: object) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")


def exit_code_for(error: RumorError) -> ExitCode:
    from rumordb import errors

    if isinstance(error, errors.NotFound):
        return ExitCode.NOT_FOUND
    if isinstance(error, errors.Exists | errors.PreconditionFailed):
        return ExitCode.CONFLICT
    if isinstance(error, errors.Unauthorized | errors.Forbidden):
        return ExitCode.AUTH
    if isinstance(error, errors.Unreachable | errors.ServerError | errors.Unavailable):
        return ExitCode.UNREACHABLE
    return ExitCode.USAGE  # 400, 413, 414, 429, an invalid key


def error_message(error: RumorError, what: str, has_key: bool = True) -> tuple[ExitCode, str]:
    """The exit code and the message that end a command on ``error``."""
    from rumordb import errors

    code = exit_code_for(error)
    if isinstance(error, errors.NotFound):
        return code, f"{what}: not found"
    if isinstance(error, errors.Unreachable):
        return code, f"cannot reach the node: {error}"
    hint = "" if has_key or code is not ExitCode.AUTH else " (no API key: pass --api-key)"
    return code, f"{what}: {error}{hint}"


def fail_with(error: RumorError, what: str, has_key: bool = True) -> NoReturn:
    fail(*error_message(error, what, has_key))


def run(what: str, call: Callable[[], T]) -> T:
    """One client call; its error ends the command with the error's exit code."""
    from rumordb.errors import RumorError

    try:
        return call()
    except RumorError as error:
        fail_with(error, what)


def show_value(value: Any, json_output: bool, newline: bool) -> None:
    """What ``rumor get`` prints: the raw bytes (and a newline if ``newline`` and the
    value lacks one), or with ``--json`` the value's document."""
    if json_output:
        emit_json(value_document(value))
        return
    out = sys.stdout.buffer
    out.write(value.value)
    if newline and not value.value.endswith(b"\n"):
        out.write(b"\n")
    out.flush()


def value_document(value: Any) -> dict[str, object]:
    import base64

    try:
        text, encoding = value.value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(value.value).decode(), "base64"
    return {
        "key": value.key,
        "value": text,
        "encoding": encoding,
        "content_type": value.content_type,
        "context": value.context,
    }


def console(to_stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if to_stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(stderr=to_stderr, highlight=False, soft_wrap=True, width=width)
