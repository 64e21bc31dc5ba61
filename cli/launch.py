"""The ``rumor`` console script: ``rumor get KEY`` without click, all else through it.

A short command's cost is its start-up, and for ``rumor get`` importing click was a
third of it (about 25 ms of CPU on a 2-core VM, more than the request itself). So the
script first tries ``get`` alone, in its plain shape: one KEY and only the flags
``--json``, ``--url``, ``--api-key``, ``--dir``, ``--cacert`` (``--opt VALUE`` or
``--opt=VALUE``) with click's ``RUMOR_*`` environment defaults. Anything else (help,
another flag, a second argument, a bad URL, unreadable credentials) goes to the click
app untouched, which parses it and reports what is wrong; nothing has been sent or
printed by then.

The fast path runs the same functions as the click command (``connect`` resolves the
nodes and the key and opens the client, ``output`` translates errors and prints the
value), so its output, exit codes and ``--json`` shape are the click command's;
``tests/cli/test_launch.py`` checks both the parsing and the answers against click's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, NoReturn

# --flag -> (the get command's parameter, its environment default)
VALUED = {
    "--url": ("urls", "RUMOR_URL"),
    "--api-key": ("api_key", "RUMOR_API_KEY"),
    "--dir": ("cluster_dir", "RUMOR_DIR"),
    "--cacert": ("cacert", "RUMOR_CACERT"),
}


class GetCall(NamedTuple):
    key: str
    urls: tuple[str, ...]
    api_key: str | None
    cluster_dir: Path
    json_output: bool
    cacert: str | None


def parse_get(argv: Sequence[str], env: Mapping[str, str]) -> GetCall | None:
    """``rumor get`` in its plain shape, as click would parse it; None for anything else."""
    if not argv or argv[0] != "get":
        return None
    given: dict[str, list[str]] = {}
    keys: list[str] = []
    json_output = False
    words = iter(argv[1:])
    for word in words:
        flag, has_value, value = word.partition("=")
        if word == "--json":
            json_output = True
        elif flag in VALUED:
            found = value if has_value else next(words, None)
            if found is None or found == "":
                return None  # click's error message, or its odd reading of an empty value
            given.setdefault(flag, []).append(found)
        elif word.startswith("-"):
            return None  # -h, --help, --, -, another flag: click's business
        else:
            keys.append(word)
    if len(keys) != 1:
        return None
    urls = tuple(given.get("--url") or env.get("RUMOR_URL", "").split())
    single = {flag: (given[flag][-1] if flag in given else env.get(name) or None)
              for flag, (_, name) in VALUED.items()}  # fmt: skip
    cluster_dir = Path(single["--dir"]) if single["--dir"] else None
    from rumordb.cli.credentials import DEFAULT_DIR

    return GetCall(keys[0], urls, single["--api-key"], cluster_dir or DEFAULT_DIR,
                   json_output, single["--cacert"])  # fmt: skip


def plain_get(call: GetCall) -> int | None:
    """Run ``call`` like the click command does; None if click must handle it instead."""
    from rumordb.cli import connect, credentials
    from rumordb.cli.output import error_line, error_message, show_value
    from rumordb.errors import RumorError

    if call.cluster_dir.exists() and not call.cluster_dir.is_dir():
        return None  # click refuses a --dir that is a file
    if not all(connect.is_http_url(url) for url in connect.named_urls(call.urls)):
        return None  # click says which --url is wrong
    try:
        call.api_key or credentials.admin_key_from(call.cluster_dir)
    except credentials.CredentialsError:
        return None  # click says what is wrong with the file
    db = connect.data_client(call.urls, call.api_key, call.cluster_dir, call.cacert)
    try:
        value = db.get(call.key)
    except RumorError as error:
        code, message = error_message(error, call.key)
        sys.stderr.write(error_line(message) + "\n")
        return int(code)
    finally:
        db.close()
    show_value(value, call.json_output, newline=sys.stdout.isatty())
    return 0


def main() -> NoReturn:
    call = parse_get(sys.argv[1:], os.environ)
    try:
        code = plain_get(call) if call is not None else None
    except BrokenPipeError:
        # The reader left (`rumor get k | head -c1`): exit 1 quietly, as click does; the
        # interpreter's last flush goes to /dev/null (the Python docs' recipe for SIGPIPE).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    if code is None:
        from rumordb.cli.main import app

        app()  # click exits by itself (standalone mode)
    sys.exit(code)
