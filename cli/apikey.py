"""``rumor apikey create|list|revoke``: API keys on a running cluster, or in a keys file.

Against a running cluster (the connection options of every client command: ``--url``,
``--api-key``, ``--dir``), keys go to the cluster's replicated keyring (``POST
/admin/keys``): a key created on one node works on every node, a revoked name is refused
everywhere within seconds. With ``--keys-file`` (bootstrapping, before any node runs),
``create`` appends the key's hash to that file instead, for ``rumor node --keys-file``.

Only the key goes to stdout (so ``KEY=$(rumor apikey create ...)`` works); what was done
goes to stderr. Only the key's SHA-256 is kept anywhere: a lost key cannot be recovered,
only replaced.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from rumordb.cli.connect import connection_options, json_option
from rumordb.cli.data import session
from rumordb.cli.output import emit_json, run

MAX_EXPIRES_IN_S = 10 * 366 * 86_400  # core.keyring's bound, without importing the core


@click.group(no_args_is_help=True)
def apikey() -> None:
    """Manage API keys: on a running cluster's keyring, or in a keys file (--keys-file)."""


@apikey.command("create")
@click.option(
    "--role",
    type=click.Choice(["reader", "admin"]),
    required=True,
    help="reader (GET, listing) or admin (all).",
)
@click.option(
    "--keys-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Offline: add the key's hash to this JSON keys file (created, mode 600) instead "
    "of the running cluster's keyring.",
)
@click.option("--name", help="A unique name for the key, [A-Za-z0-9._-]{1,64}.")
@click.option(
    "--expires-in-s",
    type=click.IntRange(1, MAX_EXPIRES_IN_S),
    help="The key stops working this many seconds from now (cluster keyring only).",
)
@connection_options
@json_option
def create(
    role: str,
    keys_file: Path | None,
    name: str | None,
    expires_in_s: int | None,
    urls: tuple[str, ...],
    api_key: str | None,
    cluster_dir: Path,
    json_output: bool,
) -> None:
    """Create a key with ROLE and print it once."""
    if keys_file is not None:
        if expires_in_s is not None:
            raise click.UsageError("--expires-in-s needs the cluster keyring, not --keys-file")
        _create_in_file(role, keys_file, name)
        return
    name = name or f"{role}-{secrets.token_hex(4)}"
    with session(urls, api_key, cluster_dir) as client:
        created = run(
            f"create key {name}",
            lambda: client.create_api_key(name, role, expires_in_s=expires_in_s),
        )
    if json_output:
        emit_json(created)
        return
    click.echo(created["key"])
    expires = created.get("expires") or "never"
    click.echo(
        f"created key {name!r} with role {role} on the cluster (expires: {expires}); "
        "it is shown only this once.",
        err=True,
    )


def _create_in_file(role: str, keys_file: Path, name: str | None) -> None:
    from rumordb.live.auth import KeysFileError, Role, add_key

    try:
        key = add_key(keys_file, Role(role), name)
    except (KeysFileError, OSError) as error:
        click.echo(f"error: {error}", err=True)
        raise click.exceptions.Exit(2) from None
    click.echo(key)
    click.echo(
        f"created a key with role {role} in {keys_file}; it is shown only this once.", err=True
    )


@apikey.command("list")
@connection_options
@json_option
def list_(urls: tuple[str, ...], api_key: str | None, cluster_dir: Path, json_output: bool) -> None:
    """The cluster keyring's keys: name, role, created, expires, state (never secrets)."""
    with session(urls, api_key, cluster_dir) as client:
        keys = run("list keys", client.api_keys)
    if json_output:
        emit_json({"keys": keys})
        return
    for key in keys:
        expires = key.get("expires") or "never"
        click.echo(
            f"{key['name']}\t{key['role']}\t{key['state']}\tcreated {key['created']}"
            f"\texpires {expires}"
        )


@apikey.command("revoke")
@click.argument("name")
@connection_options
@json_option
def revoke(
    name: str, urls: tuple[str, ...], api_key: str | None, cluster_dir: Path, json_output: bool
) -> None:
    """Revoke every key named NAME on every node (a revoked name cannot be reused)."""
    with session(urls, api_key, cluster_dir) as client:
        revoked = run(f"revoke key {name}", lambda: client.revoke_api_key(name))
    if json_output:
        emit_json(revoked)
        return
    click.echo(f"revoked key {name!r}; every node refuses it within seconds.", err=True)
