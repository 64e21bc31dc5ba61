"""The ``rumor`` command: one typer app; each command group lives in its own module."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="rumor",
    help="RumorDB: a peer-to-peer, eventually consistent key-value store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Command modules register themselves on ``app``; keep one line per module.
# ruff: noqa: E402, F401, I001
import rumordb.cli.apikey
from rumordb.cli import node_cmd
from rumordb.cli import client
from rumordb.cli import cluster
from rumordb.cli import sim_cmd
from rumordb.cli import check
