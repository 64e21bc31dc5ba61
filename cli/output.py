"""How every command ends: exit codes, error lines, JSON documents, and rich tables.

Human output by default, ``--json`` for a stable machine shape, and exit codes a shell
can test; every client error is translated once, here, into one of them:

    0 ok   1 not found   2 usage / rejected request   3 auth   4 unreachable or server error
    5 conflict (If-Match mismatch, or --create on an existing key)

rich is imported only by the commands that draw tables (``console``), never by
``get``/``put``: it costs more start-up than the request itself.
"""

from __future__ import annotations

import enum
import json
import os
import sys
from typing import TYPE_CHECKING, NoReturn

import click

if TYPE_CHECKING:
    from rich.console import Console

    from rumordb.errors import RumorError

EXIT_CODES = (
    "Exit codes: 0 ok, 1 not found, 2 usage or invalid request, 3 auth, "
    "4 unreachable or server error, 5 conflict (If-Match / --create)."
)
PIPE_WIDTH = 160  # rich's 80 columns would fold URLs in tables piped to grep or a file


class ExitCode(enum.IntEnum):
    OK = 0
    NOT_FOUND = 1
    USAGE = 2
    AUTH = 3
    UNREACHABLE = 4
    CONFLICT = 5


def fail(code: ExitCode, message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
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


def fail_with(error: RumorError, what: str, has_key: bool = True) -> NoReturn:
    from rumordb import errors

    code = exit_code_for(error)
    if isinstance(error, errors.NotFound):
        fail(code, f"{what}: not found")
    if isinstance(error, errors.Unreachable):
        fail(code, f"cannot reach the node: {error}")
    hint = "" if has_key or code is not ExitCode.AUTH else " (no API key: pass --api-key)"
    fail(code, f"{what}: {error}{hint}")


def console(to_stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if to_stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(stderr=to_stderr, highlight=False, soft_wrap=True, width=width)
