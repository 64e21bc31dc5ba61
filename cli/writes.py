"""What ``rumor put`` and ``rumor delete`` send and print, with or without click.

The click commands (``rumordb.cli.data``) and the console script's fast path
(``rumordb.cli.launch``) both run these functions, so the two can only differ in how
they parse the command line. Nothing here imports click.
"""

from __future__ import annotations

import sys
from typing import Any

MAX_STDIN_BYTES = 64 * 1024 * 1024  # far above any node's --max-value-bytes
TOO_MUCH_STDIN = f"standard input holds more than {MAX_STDIN_BYTES} bytes"
ARGUMENT_TYPE = "text/plain; charset=utf-8"
STDIN_TYPE = "application/octet-stream"


def stdin_value() -> bytes | None:
    """Standard input, read bounded; None if it holds more than ``MAX_STDIN_BYTES``."""
    data = sys.stdin.buffer.read(MAX_STDIN_BYTES + 1)
    return None if len(data) > MAX_STDIN_BYTES else data


def write(
    db: Any, key: str, body: bytes, content_type: str, if_match: str | None, create: bool,
    ttl_s: int | None,
) -> Any:  # fmt: skip
    """``rumor put``'s request: a create (``--create``), else an upsert."""
    if create:
        return db.create(key, body, content_type=content_type, ttl_s=ttl_s)
    return db.put(key, body, content_type=content_type, if_match=if_match, ttl_s=ttl_s)


def written_document(result: Any) -> dict[str, object]:
    return {"key": result.key, "context": result.context, "hlc": result.hlc,
            "origin": result.origin, "created": result.created}  # fmt: skip


def written_line(key: str, size: int, result: Any) -> str:
    verb = "created" if result.created else "updated"
    return f"{verb} {key} ({size} bytes)  context {result.context}"


def deleted_document(result: Any) -> dict[str, object]:
    return {"key": result.key, "deleted": True, "context": result.context,
            "hlc": result.hlc, "origin": result.origin}  # fmt: skip


def deleted_line(key: str) -> str:
    return f"deleted {key}"
