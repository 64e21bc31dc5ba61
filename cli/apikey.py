"""``rumor apikey create``: add a hashed API key to a keys file and print the key once.

Only the key goes to stdout (so ``KEY=$(rumor apikey create ...)`` works); what was done
goes to stderr. The file keeps the key's SHA-256 only: a lost key cannot be recovered,
only replaced.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group(no_args_is_help=True)
def apikey() -> None:
    """Manage API keys (hashed, in a keys file)."""


@apikey.command("create")
@click.option(
    "--role",
    type=click.Choice(["reader", "admin"]),
    required=True,
    help="reader (GET, listing) or admin (all).",
)
@click.option(
    "--keys-file",
    envvar="RUMOR_KEYS_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="JSON keys file (created, mode 600; env RUMOR_KEYS_FILE).",
)
@click.option("--name", help="A label for the key (unique).")
def create(role: str, keys_file: Path, name: str | None) -> None:
    """Create a key with ROLE, store its hash in KEYS_FILE, print the key once."""
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
