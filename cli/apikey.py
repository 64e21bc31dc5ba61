"""``rumor apikey create``: add a hashed API key to a keys file and print the key once.

Only the key goes to stdout (so ``KEY=$(rumor apikey create ...)`` works); what was done
goes to stderr. The file keeps the key's SHA-256 only: a lost key cannot be recovered,
only replaced.
"""

from __future__ import annotations

import enum
from pathlib import Path

import typer

from rumordb.cli.main import app
from rumordb.live.auth import KeysFileError, Role, add_key

apikey_app = typer.Typer(help="Manage API keys (hashed, in a keys file).", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")


class RoleChoice(enum.StrEnum):
    reader = "reader"
    admin = "admin"


@apikey_app.command("create")
def create(
    role: RoleChoice = typer.Option(..., "--role", help="reader (GET, listing) or admin (all)."),
    keys_file: Path = typer.Option(
        ..., "--keys-file", envvar="RUMOR_KEYS_FILE", help="JSON keys file (created, mode 600)."
    ),
    name: str | None = typer.Option(None, "--name", help="A label for the key (unique)."),
) -> None:
    """Create a key with ROLE, store its hash in KEYS_FILE, print the key once."""
    try:
        key = add_key(keys_file, Role(role.value), name)
    except (KeysFileError, OSError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(key)
    typer.echo(
        f"created a key with role {role.value} in {keys_file}; it is shown only this once.",
        err=True,
    )
