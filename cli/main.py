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
import cli.apikey
from cli import node_cmd
from cli import client
from cli import cluster
from cli import sim_cmd
from cli import check
