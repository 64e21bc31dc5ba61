"""``rumor watch PREFIX``: print every change applied on a node, as it arrives.

One line per change: ``key = value`` (text; other bytes as ``<N bytes>``), ``key
deleted`` for a tombstone (a delete or an expired TTL), then where it came from. With
``--json``, one JSON object per line (``rumordb.types.Change``, the value as UTF-8 or
base64 with its ``encoding``). ``--from POSITION`` resumes after a position printed
before (``--json`` prints it with every change). Ctrl-C ends it (exit 0).
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import click

from rumordb.cli.connect import (
    connection_options,
    json_option,
    open_client,
    resolve_api_key,
    resolve_urls,
)
from rumordb.cli.output import EXIT_CODES, fail_with


@click.command(epilog=EXIT_CODES)
@click.argument("prefix", default="")
@click.option("--from", "position", metavar="POSITION", help="Resume after this position.")
@connection_options
@json_option
def watch(
    prefix: str,
    position: str | None,
    urls: tuple[str, ...],
    api_key: str | None,
    cluster_dir: Path,
    json_output: bool,
) -> None:
    """Print changes to keys starting with PREFIX as the node applies them."""
    from rumordb.errors import RumorError

    key = resolve_api_key(api_key, cluster_dir)
    db = open_client(resolve_urls(urls, cluster_dir), key, cluster_dir=cluster_dir)
    try:
        for change in db.watch(prefix, position=position):
            click.echo(json.dumps(change_document(change)) if json_output else describe(change))
            sys.stdout.flush()
    except KeyboardInterrupt:
        return
    except RumorError as error:
        fail_with(error, f"watch {prefix!r}")
    finally:
        db.close()


def describe(change: Any) -> str:
    source = f"from {change.origin}" + (", replicated" if change.replicated else "")
    if change.tombstone:
        return f"{change.key} deleted  ({source})"
    try:
        text = change.value.decode("utf-8")
    except UnicodeDecodeError:
        text = f"<{len(change.value)} bytes>"
    return f"{change.key} = {text}  ({source})"


def change_document(change: Any) -> dict[str, object]:
    document: dict[str, object] = change._asdict()
    value = change.value
    if value is not None:
        try:
            document["value"], document["encoding"] = value.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            document["value"] = base64.b64encode(value).decode()
            document["encoding"] = "base64"
    return document
