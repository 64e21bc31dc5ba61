"""``rumor chaos``: fault injection through the nodes' ``/faults`` (admin key, nodes
started with ``--allow-faults``): partition the cluster, heal it, add delay or loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from rumordb.cli.connect import connection_options, json_option, open_client, resolve_api_key
from rumordb.cli.output import EXIT_CODES, ExitCode, console, emit_json, fail, fail_with
from rumordb.cli.probe import node_urls

# The node's own bounds (live.faults): a CLI that accepted more would only pass on a 400.
MAX_DELAY_MS = 60_000
MAX_LOSS_PCT = 100.0


@click.group(no_args_is_help=True)
def chaos() -> None:
    """Inject faults through nodes started with --allow-faults (admin key): partition the
    cluster, heal it, add delay or loss. `rumor cluster up` enables faults."""


def resolve_names(names: list[str], nodes: dict[str, str]) -> list[str]:
    unknown = [name for name in names if name not in nodes]
    if unknown:
        fail(ExitCode.USAGE,
             f"unknown node(s) {', '.join(unknown)}; known: {', '.join(sorted(nodes))}")  # fmt: skip
    return names


def partition_groups(groups: list[str], nodes: dict[str, str]) -> list[list[str]]:
    """``A,B C`` -> [[A, B], [C], [everyone else]]; a node may be in one group only."""
    parsed = [resolve_names([n for n in group.split(",") if n], nodes) for group in groups]
    named = [name for group in parsed for name in group]
    if len(named) != len(set(named)):
        fail(ExitCode.USAGE, "a node can be in only one side of a partition")
    rest = sorted(set(nodes) - set(named))
    sides = [group for group in parsed if group] + ([rest] if rest else [])
    if len(sides) < 2:
        fail(ExitCode.USAGE, "a partition needs at least two sides (name a subset of the nodes)")
    return sides


def apply_faults(
    plan: dict[str, dict[str, Any] | None],
    nodes: dict[str, str],
    api_key: str | None,
    json_output: bool,
) -> None:
    """Add (or, for None, heal) faults on each node of ``plan``; report per node."""
    from rumordb.errors import NotFound, ResponseError, RumorError

    results: dict[str, Any] = {}
    failed = False
    for name, faults in plan.items():
        with open_client([nodes[name]], api_key, retries=1) as db:
            try:
                results[name] = db.faults(faults, heal=faults is None)
            except NotFound:
                fail(ExitCode.USAGE, f"{name} does not accept faults: start it with --allow-faults")
            except ResponseError as error:
                if error.status in (401, 403) or error.status >= 500:
                    fail_with(error, name)
                failed = True
                results[name] = {"error": f"{error.code}: {error.detail}"}
            except RumorError as error:
                fail_with(error, name)
    if json_output:
        emit_json({"nodes": results})
    else:
        print_faults(results, nodes)
    if failed:
        raise click.exceptions.Exit(int(ExitCode.USAGE))


def print_faults(results: dict[str, Any], nodes: dict[str, str]) -> None:
    from rich.table import Column, Table

    table = Table("node", Column("url", overflow="fold"), Column("faults now", overflow="fold"))
    for name, result in results.items():
        table.add_row(name, nodes[name], describe_faults(result))
    console().print(table)


def describe_faults(faults: dict[str, Any]) -> str:
    if "error" in faults:
        return f"error: {faults['error']}"
    parts = []
    to, frm = set(faults.get("block_to") or []), set(faults.get("block_from") or [])
    if to & frm:
        parts.append("cut off from " + ",".join(sorted(to & frm)))
    if to - frm:
        parts.append("cannot send to " + ",".join(sorted(to - frm)))
    if frm - to:
        parts.append("cannot hear " + ",".join(sorted(frm - to)))
    if faults.get("delay_ms"):
        parts.append(f"delay {faults['delay_ms']} ms")
    if faults.get("loss"):
        parts.append(f"loss {100 * faults['loss']:g} %")
    if faults.get("pause_gossip"):
        parts.append("gossip paused")
    return "; ".join(parts) or "none (healthy)"


@chaos.command(epilog=EXIT_CODES)
@click.argument("groups", nargs=-1, required=True)
@connection_options
@json_option
def partition(
    groups: tuple[str, ...],
    urls: tuple[str, ...],
    api_key: str | None,
    cluster_dir: Path,
    json_output: bool,
) -> None:
    """Cut the cluster into sides (GROUPS: comma-separated node ids, e.g. n1,n2 n3; nodes
    not named form one more side) that cannot talk to each other until `heal`."""
    secret = resolve_api_key(api_key, cluster_dir)
    nodes = node_urls(urls, cluster_dir, secret)
    sides = partition_groups(list(groups), nodes)
    plan: dict[str, dict[str, Any] | None] = {}
    for side in sides:
        others = sorted(set(nodes) - set(side))
        for name in side:
            plan[name] = {"block": others}
    apply_faults(plan, nodes, secret, json_output)


@chaos.command(epilog=EXIT_CODES)
@connection_options
@json_option
def heal(urls: tuple[str, ...], api_key: str | None, cluster_dir: Path, json_output: bool) -> None:
    """Remove every fault from every node."""
    secret = resolve_api_key(api_key, cluster_dir)
    nodes = node_urls(urls, cluster_dir, secret)
    apply_faults(dict.fromkeys(sorted(nodes)), nodes, secret, json_output)


@chaos.command(epilog=EXIT_CODES)
@click.argument("node")
@click.argument("ms", type=click.IntRange(0, MAX_DELAY_MS))
@connection_options
@json_option
def delay(
    node: str, ms: int, urls: tuple[str, ...], api_key: str | None, cluster_dir: Path,
    json_output: bool,
) -> None:  # fmt: skip
    """Delay every message NODE (a node id) sends by MS milliseconds (at most 60000)."""
    fault_one_node(node, {"delay_ms": ms}, urls, api_key, cluster_dir, json_output)


@chaos.command(epilog=EXIT_CODES)
@click.argument("node")
@click.argument("pct", type=click.FloatRange(0, MAX_LOSS_PCT))
@connection_options
@json_option
def loss(
    node: str, pct: float, urls: tuple[str, ...], api_key: str | None, cluster_dir: Path,
    json_output: bool,
) -> None:  # fmt: skip
    """Drop PCT percent of the messages NODE (a node id) sends."""
    fault_one_node(node, {"loss": pct / 100}, urls, api_key, cluster_dir, json_output)


def fault_one_node(
    node: str,
    fault: dict[str, Any],
    urls: tuple[str, ...],
    api_key: str | None,
    cluster_dir: Path,
    json_output: bool,
) -> None:
    """Apply ``fault`` to ``node`` alone (the node is named by id, found through /cluster)."""
    secret = resolve_api_key(api_key, cluster_dir)
    nodes = node_urls(urls, cluster_dir, secret)
    resolve_names([node], nodes)
    apply_faults({node: fault}, nodes, secret, json_output)
