"""The ``rumor`` command: a click group that imports a command's module only to run it.

Start-up is most of what a short command costs, so nothing here imports a command
module: ``COMMANDS`` names each command's module, and the group loads one on demand
(``rumor get`` never imports the node, the simulator, rich or httpx). Each module
defines plain click commands and imports nothing from this one: no registration by side
effect, no import circle. ``rumor --help`` lists the commands from this table, without
loading any of them.

Why click and not typer: typer 0.29 builds a pydantic ``TypeAdapter`` for every
parameter of every command at start-up (about 0.2 s for this CLI on a 2-core VM);
click, which typer wraps, parses the same flags in a few milliseconds.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

import click

from rumordb import __version__


class Entry(NamedTuple):
    target: str  # "module:attribute"
    summary: str
    section: str


COMMANDS: dict[str, Entry] = {
    "put": Entry("rumordb.cli.data:put", "Store VALUE under KEY (upsert).", "Data"),
    "get": Entry("rumordb.cli.data:get", "Print the value of KEY.", "Data"),
    "delete": Entry("rumordb.cli.data:delete", "Delete KEY (a tombstone).", "Data"),
    "list": Entry("rumordb.cli.data:list_keys", "List keys in order.", "Data"),
    "watch": Entry("rumordb.cli.watch:watch", "Print changes as a node applies them.", "Data"),
    "import": Entry(
        "rumordb.cli.bulk:import_file", "Import JSON lines through batches (idempotent).", "Data"
    ),
    "export": Entry("rumordb.cli.bulk:export", "Stream every live key as JSON lines.", "Data"),
    "shell": Entry(
        "rumordb.cli.data:shell", "Run many data commands from stdin, one connection.", "Data"
    ),
    "status": Entry("rumordb.cli.diagnose:status", "The cluster as one node sees it.", "Cluster"),
    "why": Entry(
        "rumordb.cli.diagnose:why", "KEY's version on every node, and the rule.", "Cluster"
    ),
    "chaos": Entry("rumordb.cli.chaos:chaos", "Partition, heal, delay, loss.", "Cluster"),
    "cluster": Entry(
        "rumordb.cli.cluster:cluster", "Run a local cluster of real nodes.", "Cluster"
    ),
    "check": Entry(
        "rumordb.cli.check:check", "Check that no acknowledged write is lost.", "Cluster"
    ),
    "node": Entry("rumordb.cli.node_cmd:node", "Start one RumorDB node.", "Run"),
    "apikey": Entry("rumordb.cli.apikey:apikey", "Manage API keys (hashed).", "Run"),
    "sim": Entry("rumordb.cli.sim_cmd:sim", "Simulate a RumorDB cluster.", "Run"),
}


class LazyGroup(click.Group):
    """A group whose commands are imported when they are run (or their help shown)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, _, attribute = entry.target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command), entry.target
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for name, entry in COMMANDS.items():
            sections.setdefault(entry.section, []).append((name, entry.summary))
        for section, rows in sections.items():
            with formatter.section(section):
                formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    invoke_without_command=False,
    no_args_is_help=True,
)
@click.version_option(__version__, "--version", "-V", prog_name="rumor")
def app() -> None:
    """RumorDB: a peer-to-peer, eventually consistent key-value store."""


def main(args: list[str] | None = None) -> Any:
    return app.main(args=args, prog_name="rumor")
