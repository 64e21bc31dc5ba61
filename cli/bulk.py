"""``rumor import FILE`` and ``rumor export``: JSON lines in and out, through batches.

One JSON object per line, the format both commands share::

    {"key": "a", "value": "text", "content_type": "text/plain"}
    {"key": "b", "value_base64": "AAEC", "content_type": "application/octet-stream"}
    {"key": "c", "op": "delete"}
    {"key": "d", "value": "x", "version": {"clock": {"n1": 7}, "hlc": 123, "origin": "n1"}}
    {"key": "e", "value": "x", "ttl": 60}
    {"key": "f", "value": "x", "expires_ms": 1790000000000}

``value`` is UTF-8 text, ``value_base64`` any bytes (exactly one of them for a put);
``content_type`` defaults to text/plain for ``value`` and application/octet-stream for
``value_base64``; ``op`` defaults to ``put``. ``export`` writes ``value`` when the bytes
are UTF-8, else ``value_base64``; with ``--versions`` it adds each key's ``version``.

Expiry: ``ttl`` (seconds, as ``rumor put --ttl``) expires a value that long after it is
imported; ``expires_ms`` (Unix time in milliseconds) at that instant. ``export`` writes
``expires_ms`` for a value that expires, so its import restores the same instant (one
already past: the value is written expired, and reads as absent); with ``--versions``
the expiry is the version's ``expires``, the HLC as stored.

Import is idempotent: a line without a version is sent as an ``if_changed`` put (a key
that already holds the same value and content type is left alone), a line with one is
restored by LWW (the same version twice is ``unchanged``; an older one ``stale``), so
importing a file twice changes nothing (but a ``ttl`` line, whose TTL restarts at
every write: export's ``expires_ms`` re-imports ``unchanged``). The whole file is validated before the first
batch is sent: a bad line stops the import with its line number and nothing applied.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click

from rumordb.cli.connect import connection_options, json_option
from rumordb.cli.data import session
from rumordb.cli.output import EXIT_CODES, ExitCode, emit_json, fail, run

MAX_LINE_BYTES = 8 * 1024 * 1024
LINE_FIELDS = frozenset(
    {"key", "op", "value", "value_base64", "content_type", "version", "ttl", "expires_ms"}
)


class BadLine(ValueError):
    pass


def parse_line(text: str) -> Any:
    """One line as a ``rumordb.Op`` (``BadLine`` says why not); None for a blank line."""
    from rumordb.types import Op

    if not text.strip():
        return None
    try:
        item = json.loads(text)
    except ValueError as exc:
        raise BadLine(f"not JSON: {exc}") from None
    if not isinstance(item, dict):
        raise BadLine("a line is a JSON object")
    unknown = set(item) - LINE_FIELDS
    if unknown:
        raise BadLine(f"unknown field(s) {', '.join(sorted(unknown))}")
    key, op, version = item.get("key"), item.get("op", "put"), item.get("version")
    if not isinstance(key, str) or not key:
        raise BadLine("'key' is a non-empty string")
    if version is not None and not isinstance(version, dict):
        raise BadLine("'version' is an object {clock, hlc, origin}")
    if op == "delete":
        if item.get("ttl") is not None or item.get("expires_ms") is not None:
            raise BadLine("a delete takes no 'ttl' or 'expires_ms'")
        return Op.delete(key, version=version)
    if op != "put":
        raise BadLine(f"'op' is put or delete, not {op!r}")
    value = _value(item)
    kind = item.get("content_type")
    if kind is not None and not isinstance(kind, str):
        raise BadLine("'content_type' is a string")
    if kind is None and isinstance(value, bytes):
        kind = "application/octet-stream"
    ttl_s, expires_ms = _whole(item, "ttl"), _whole(item, "expires_ms")
    return Op.put(key, value, content_type=kind, if_changed=version is None, version=version,
                  ttl_s=ttl_s, expires_ms=expires_ms)  # fmt: skip


def _whole(item: dict[str, Any], name: str) -> int | None:
    number = item.get(name)
    if number is None:
        return None
    if isinstance(number, bool) or not isinstance(number, int):
        raise BadLine(f"{name!r} is a whole number")
    if item.get("version") is not None:
        raise BadLine(f"a line with a 'version' takes no {name!r}: the version's 'expires' says it")
    return number


def _value(item: dict[str, Any]) -> bytes | str:
    text, encoded = item.get("value"), item.get("value_base64")
    if (text is None) == (encoded is None):
        raise BadLine("a put has exactly one of 'value' (text) and 'value_base64'")
    if text is not None:
        if not isinstance(text, str):
            raise BadLine("'value' is a string (use 'value_base64' for bytes)")
        return text
    if not isinstance(encoded, str):
        raise BadLine("'value_base64' is a base64 string")
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise BadLine(f"'value_base64' is not base64: {exc}") from None


def read_ops(lines: IO[str]) -> Iterator[Any]:
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE_BYTES:
            raise BadLine(f"line {number}: longer than {MAX_LINE_BYTES} bytes")
        try:
            op = parse_line(line)
        except BadLine as exc:
            raise BadLine(f"line {number}: {exc}") from None
        if op is not None:
            yield op


def check_file(path: Path) -> int:
    """Validate every line before anything is sent; the number of items."""
    from rumordb.api import batch_item
    from rumordb.errors import InvalidKey

    count = 0
    with path.open(encoding="utf-8", errors="strict") as lines:
        try:
            for count, op in enumerate(read_ops(lines), start=1):
                try:
                    batch_item(op)
                except (InvalidKey, ValueError, TypeError) as exc:
                    raise BadLine(f"item {count} (key {op.key!r}): {exc}") from None
        except UnicodeDecodeError as exc:
            raise BadLine(f"the file is not UTF-8: {exc}") from None
    return count


@click.command("import", epilog=EXIT_CODES)
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "--batch-size", type=click.IntRange(1, 1000), default=1000, show_default=True,
    help="Items per POST /kv batch.",
)  # fmt: skip
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@connection_options
@json_option
def import_file(
    file: Path,
    batch_size: int,
    quiet: bool,
    urls: tuple[str, ...],
    api_key: str | None,
    cluster_dir: Path,
    json_output: bool,
) -> None:
    """Import FILE (JSON lines; - for standard input) through batches; idempotent."""
    with _spooled(file) as path:
        try:
            total = check_file(path)
        except (BadLine, OSError) as exc:
            fail(ExitCode.USAGE, f"{file}: {exc}")
        with session(urls, api_key, cluster_dir) as db:
            counts = _send(db, path, total, batch_size, quiet or json_output)
    failed = sum(n for result, n in counts.items() if result.startswith("!"))
    summary = {name.lstrip("!"): n for name, n in sorted(counts.items())}
    if json_output:
        emit_json({"items": total, "results": summary, "failed": failed})
    else:
        shown = ", ".join(f"{n} {name}" for name, n in summary.items()) or "nothing"
        click.echo(f"imported {total} items: {shown}", err=True)
    if failed:
        raise click.exceptions.Exit(int(ExitCode.CONFLICT))


def _send(db: Any, path: Path, total: int, batch_size: int, quiet: bool) -> Counter[str]:
    from rumordb.api import chunks

    counts: Counter[str] = Counter()
    with path.open(encoding="utf-8") as lines, _progress(total, quiet) as advance:
        for chunk in chunks(read_ops(lines), max_items=batch_size):
            results = run("import", functools.partial(db.batch, chunk))
            for result in results:
                counts[result.result if result.ok else "!" + result.result] += 1
                if not result.ok:
                    click.echo(f"error: {result.key}: {result.status} {result.result}", err=True)
            advance(len(chunk))
    return counts


class _spooled:
    """The file itself, or standard input copied to a temporary file (read twice)."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.temp: Any = None

    def __enter__(self) -> Path:
        if str(self.file) != "-":
            return self.file
        self.temp = tempfile.NamedTemporaryFile("wb", suffix=".jsonl")
        shutil.copyfileobj(sys.stdin.buffer, self.temp)
        self.temp.flush()
        return Path(self.temp.name)

    def __exit__(self, *exc: object) -> None:
        if self.temp is not None:
            self.temp.close()


class _progress:
    """A rich progress bar on standard error (imported only when shown)."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet = total, quiet
        self.bar: Any = None

    def __enter__(self) -> Any:
        if self.quiet:
            return lambda _: None
        from rich.console import Console
        from rich.progress import Progress

        self.bar = Progress(console=Console(stderr=True), transient=False)
        self.bar.start()
        task = self.bar.add_task("importing", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


@click.command("export", epilog=EXIT_CODES)
@click.option("--prefix", "-p", default="", help="Only keys starting so.")
@click.option(
    "--versions", is_flag=True, help="Add each key's clock, HLC, origin (and expiry HLC)."
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)  # fmt: skip
@connection_options
def export(
    prefix: str,
    versions: bool,
    output: Path | None,
    urls: tuple[str, ...],
    api_key: str | None,
    cluster_dir: Path,
) -> None:
    """Stream every live key (with PREFIX) as JSON lines, in key order."""
    out = output.open("w", encoding="utf-8") if output else sys.stdout
    try:
        with session(urls, api_key, cluster_dir) as db:
            run("export", lambda: _write_all(db.export(prefix, versions=versions), out))
    finally:
        if output:
            out.close()


def _write_all(items: Iterator[Any], out: IO[str]) -> None:
    for item in items:
        out.write(json.dumps(export_line(item), ensure_ascii=False) + "\n")
    out.flush()


def export_line(item: Any) -> dict[str, object]:
    line: dict[str, object] = {"key": item.key}
    try:
        line["value"] = item.value.decode("utf-8")
    except UnicodeDecodeError:
        line["value_base64"] = base64.b64encode(item.value).decode()
    line["content_type"] = item.content_type
    if item.expires_ms is not None:
        line["expires_ms"] = item.expires_ms
    if item.version is not None:
        line["version"] = item.version
    return line
