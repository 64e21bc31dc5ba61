"""Where client commands connect, with which key: flags, ``RUMOR_*``, then ``--dir``.

The endpoint comes from ``--url`` / ``RUMOR_URL``, else from the nodes of the local
cluster running from ``--dir`` / ``RUMOR_DIR`` (default ``.rumor``), else
``http://127.0.0.1:8001``. The key comes from ``--api-key`` / ``RUMOR_API_KEY``, else from
the admin key in ``DIR/credentials``: after ``rumor cluster up --dir X``, ``rumor get k
--dir X`` needs nothing else.

click is imported by the option decorators only, never at module level: the resolution
below also serves ``rumordb.cli.launch``, which answers ``rumor get`` without click.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rumordb.cli import credentials
from rumordb.cli.output import ExitCode, fail

DEFAULT_URL = "http://127.0.0.1:8001"
MAX_NODES = 256  # bound on the members a fan-out command contacts
TIMEOUT_S = 5.0

F = TypeVar("F", bound=Callable[..., Any])

if TYPE_CHECKING:
    import click


def url_option(function: F) -> F:
    import click

    return click.option(
        "--url",
        "urls",
        envvar="RUMOR_URL",
        multiple=True,
        metavar="URL",
        help="Node URL (env RUMOR_URL); repeat it (or comma-separate) to name several nodes. "
        f"Default: the nodes of the cluster in --dir, else {DEFAULT_URL}.",
    )(function)


def api_key_option(function: F) -> F:
    import click

    return click.option(
        "--api-key",
        envvar="RUMOR_API_KEY",
        metavar="KEY",
        help="API key (env RUMOR_API_KEY); default: the admin key in DIR/credentials.",
    )(function)


def dir_option(function: F) -> F:
    import click

    return click.option(
        "--dir",
        "cluster_dir",
        envvar="RUMOR_DIR",
        type=click.Path(file_okay=False, path_type=Path),
        default=credentials.DEFAULT_DIR,
        show_default=True,
        help="Local cluster directory (env RUMOR_DIR): its credentials and node URLs.",
    )(function)


def json_option(function: F) -> F:
    import click

    return click.option(
        "--json", "json_output", is_flag=True, help="Machine-readable JSON output."
    )(function)


def _remember_cacert(context: click.Context, _: click.Parameter, value: str | None) -> None:
    context.meta["rumor.cacert"] = value


def cacert_option(function: F) -> F:
    import click

    return click.option(
        "--cacert",
        envvar="RUMOR_CACERT",
        metavar="FILE",
        expose_value=False,
        callback=_remember_cacert,
        help="CA file to check HTTPS nodes against (env RUMOR_CACERT); default: DIR/ca.pem "
        "if `rumor cluster up --tls` made one, else the system's CAs.",
    )(function)


def connection_options(function: F) -> F:
    return url_option(api_key_option(dir_option(cacert_option(function))))


def cacert(cluster_dir: Path | None = None, given: str | None = None) -> bool | str:
    """What HTTPS nodes are verified against: --cacert, DIR/ca.pem, else the system's CAs.

    ``given``: the --cacert flag; by default that of the running click command (without
    click loaded, none is running: the fast path passes its flag itself)."""
    click = sys.modules.get("click")
    if given is None and click is not None:
        context = click.get_current_context(silent=True)
        given = context.meta.get("rumor.cacert") if context is not None else None
    if given:
        return str(given)
    local = (cluster_dir or credentials.DEFAULT_DIR) / "ca.pem"
    return str(local) if local.exists() else True


def split_urls(urls: tuple[str, ...] | list[str] | None) -> list[str]:
    """``--url a --url b,c`` and ``RUMOR_URL="a b"`` all name the nodes a, b and c."""
    found = named_urls(urls)
    for url in found:
        if not is_http_url(url):
            fail(ExitCode.USAGE, f"--url must start with http:// or https://, got {url!r}")
    return found[:MAX_NODES]


def named_urls(urls: tuple[str, ...] | list[str] | None) -> list[str]:
    found = [part.strip().rstrip("/") for url in urls or () for part in url.split(",")]
    return [url for url in found if url]


def is_http_url(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def local_urls(cluster_dir: Path) -> list[str]:
    """The node URLs that ``cluster.json`` in ``cluster_dir`` records, if any."""
    try:
        state = json.loads((cluster_dir / "cluster.json").read_text(encoding="utf-8"))
        return [str(node["url"]) for node in state["nodes"]][:MAX_NODES]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def resolve_urls(urls: tuple[str, ...] | list[str] | None, cluster_dir: Path) -> list[str]:
    return split_urls(urls) or local_urls(cluster_dir) or [DEFAULT_URL]


def resolve_api_key(api_key: str | None, cluster_dir: Path) -> str | None:
    if api_key:
        return api_key
    try:
        return credentials.admin_key_from(cluster_dir)
    except credentials.CredentialsError as exc:
        fail(ExitCode.AUTH, str(exc))


def open_client(
    urls: list[str],
    api_key: str | None,
    retries: int = 2,
    cluster_dir: Path | None = None,
    cacert_file: str | None = None,
) -> Any:
    """A ``rumordb.Client`` on the standard-library transport (no httpx import)."""
    from rumordb.client import Client

    return Client(
        urls,
        api_key=api_key,
        timeout_s=TIMEOUT_S,
        retries=retries,
        transport="stdlib",
        verify=cacert(cluster_dir, cacert_file),
    )


def data_client(
    urls: tuple[str, ...] | list[str] | None,
    api_key: str | None,
    cluster_dir: Path,
    cacert_file: str | None = None,
) -> Any:
    """The client of a data command: it tries every node named before it gives up."""
    key = resolve_api_key(api_key, cluster_dir)
    nodes = resolve_urls(urls, cluster_dir)
    return open_client(nodes, key, max(2, len(nodes)), cluster_dir, cacert_file)
