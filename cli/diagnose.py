"""``rumor status`` and ``rumor why``: what the cluster looks like, and why a key is so."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from rumordb import api
from rumordb.cli.connect import (
    MAX_NODES,
    connection_options,
    json_option,
    resolve_api_key,
    resolve_urls,
)
from rumordb.cli.output import EXIT_CODES, ExitCode, console, emit_json, fail
from rumordb.cli.probe import Probe, fetch_cluster, node_urls, probe_all

STATE_STYLE = {"alive": "green", "suspect": "yellow", "dead": "red", "left": "dim"}


@click.command(epilog=EXIT_CODES)
@connection_options
@json_option
def status(
    urls: tuple[str, ...], api_key: str | None, cluster_dir: Path, json_output: bool
) -> None:
    """The cluster as one node sees it: members, state, heartbeat age, keys, ownership."""
    key = resolve_api_key(api_key, cluster_dir)
    cluster = fetch_cluster(resolve_urls(urls, cluster_dir)[0], key)
    members = cluster["members"][:MAX_NODES]
    own = {member["id"]: member["url"] for member in members if member["id"] != cluster["node_id"]}
    counts = {cluster["node_id"]: cluster}
    for probe in probe_all(list(own.values()), api.cluster(), key):
        if probe.status == 200 and isinstance(probe.body, dict):
            counts[probe.body.get("node_id", "")] = probe.body
    for member in members:
        seen = counts.get(member["id"])
        member["keys"] = seen.get("keys") if seen else None
        member["tombstones"] = seen.get("tombstones") if seen else None
    if json_output:
        emit_json(cluster)
        return
    print_status(cluster)


def print_status(cluster: dict[str, Any]) -> None:
    from rich.table import Column, Table

    out = console()
    sharding = "on, replicas " + str(cluster.get("replicas")) if cluster.get("sharding") else "off"
    out.print(f"as seen by [bold]{cluster['node_id']}[/] ({cluster['url']}), sharding {sharding}")
    ownership = cluster.get("ownership") or {}
    table = Table(
        "node", "state", "incarnation", "heartbeat age", "keys", "owns",
        Column("address", overflow="fold"),
    )  # fmt: skip
    for member in sorted(cluster["members"], key=lambda m: str(m["id"])):
        style = STATE_STYLE.get(member["state"], "")
        age = member.get("last_heartbeat_age_s")
        share = ownership.get(member["id"])
        table.add_row(
            str(member["id"]) + (" *" if member["id"] == cluster["node_id"] else ""),
            f"[{style}]{member['state']}[/]" if style else str(member["state"]),
            str(member.get("incarnation", "")),
            "-" if age is None else f"{age:.1f} s",
            "?" if member.get("keys") is None else str(member["keys"]),
            "-" if share is None else f"{100 * share:.1f} %",
            str(member["url"]),
        )
    out.print(table)


# ---------------------------------------------------------------------------- why


@dataclass(frozen=True, slots=True)
class NodeVersion:
    """One node's version of a key, from ``GET /kv/{key}?meta=true``."""

    node: str
    url: str
    meta: dict[str, Any]

    @property
    def identity(self) -> tuple[object, ...]:
        meta = self.meta
        return (
            tuple(sorted(meta["clock"].items())),
            meta["hlc"],
            meta["origin"],
            meta["tombstone"],
            meta["value_sha256"],
        )

    def record(self) -> Any:
        from rumordb.core.record import Record

        # The merge rules never look at the bytes of versions with distinct (hlc, origin).
        meta = self.meta
        return Record(
            value=meta["value_sha256"].encode(),
            content_type=meta.get("content_type") or "",
            clock=dict(meta["clock"]),
            hlc=int(meta["hlc"]),
            origin=str(meta["origin"]),
            tombstone=bool(meta["tombstone"]),
        )


def label(meta: dict[str, Any]) -> str:
    kind = "tombstone" if meta.get("tombstone") else f"value sha256 {meta['value_sha256'][:12]}"
    clock = ",".join(f"{k}:{v}" for k, v in sorted(meta["clock"].items()))
    return f"{kind}, clock {{{clock}}}, hlc {meta['hlc']}, origin {meta['origin']}"


def pick_winner(versions: list[NodeVersion]) -> tuple[NodeVersion, list[dict[str, str]]]:
    """The version every node will converge to, and which rule beats each other version."""
    from rumordb.core.merge import Outcome, decide

    winner = versions[0]
    for version in versions[1:]:
        if decide(winner.record(), version.record()).applied:
            winner = version
    beaten = []
    for version in versions:
        if version.identity == winner.identity:
            continue
        outcome = decide(version.record(), winner.record())
        rule = "descendant" if outcome is Outcome.DESCENDANT else "lww"
        beaten.append({"node": version.node, "rule": rule, "version": label(version.meta)})
    return winner, beaten


def last_conflict(versions: list[NodeVersion]) -> dict[str, Any] | None:
    """The most recent concurrent version LWW threw away on any node, if any."""
    found = [(v.meta["discarded"], v.node) for v in versions if v.meta.get("discarded")]
    if not found:
        return None
    discarded, node = max(found, key=lambda item: (item[0]["hlc"], item[0]["origin"]))
    nodes = sorted({n for d, n in found if d == discarded})
    return {"rule": "lww", "discarded": discarded, "nodes": nodes or [node]}


def explain(
    versions: list[NodeVersion],
    winner: NodeVersion | None,
    beaten: list[dict[str, str]],
    conflict: dict[str, Any] | None,
) -> str:
    if winner is None:
        return "no reachable node holds this key"
    holders = sorted(v.node for v in versions if v.identity == winner.identity)
    if not beaten:
        lines = ["every node that holds the key holds the same version"]
    else:
        lines = [f"nodes disagree; all will converge to the version {', '.join(holders)} hold"]
        for item in beaten:
            why = (
                "it descends from theirs (vector clock)"
                if item["rule"] == "descendant"
                else "concurrent versions: the larger (HLC, origin) wins"
            )
            lines.append(f"  over {item['node']}'s {item['version']}: {why}")
    if conflict is None:
        lines.append(
            "no conflict resolved on any node: each version replaced one it descended "
            "from (descendant rule), nothing was discarded"
        )
    else:
        lines.append(
            "last conflict: concurrent versions, decided by LWW on (HLC, origin); discarded "
            f"{label(conflict['discarded'])} (recorded by {', '.join(conflict['nodes'])})"
        )
    return "\n".join(lines)


@click.command(epilog=EXIT_CODES)
@click.argument("key")
@connection_options
@json_option
def why(
    key: str, urls: tuple[str, ...], api_key: str | None, cluster_dir: Path, json_output: bool
) -> None:
    """KEY's version on every reachable node, whether they agree, and which rule decided."""
    secret = resolve_api_key(api_key, cluster_dir)
    nodes = node_urls(urls, cluster_dir, secret)
    try:
        request = api.version(key)
    except ValueError as exc:
        fail(ExitCode.USAGE, str(exc))
    probes = probe_all(list(nodes.values()), request, secret)
    rows, versions = why_rows(list(nodes), probes)
    distinct = {v.identity for v in versions}
    winner, beaten = pick_winner(versions) if versions else (None, [])
    agree = len(distinct) == 1 and not any(row["status"] == "absent" for row in rows)
    conflict = last_conflict(versions)
    explanation = explain(versions, winner, beaten, conflict)
    if json_output:
        emit_json(
            {
                "key": key,
                "agree": agree,
                "nodes": rows,
                "winner": None if winner is None else {"node": winner.node, **winner.meta},
                "beaten": beaten,
                "last_conflict": conflict,
                "explanation": explanation,
            }
        )
    else:
        print_why(key, rows, explanation)
    if winner is None:
        raise click.exceptions.Exit(int(ExitCode.NOT_FOUND))


def why_rows(
    names: list[str], probes: list[Probe]
) -> tuple[list[dict[str, Any]], list[NodeVersion]]:
    """One row per node asked; ``meta.node`` says who answered (an owner, when sharded)."""
    rows: list[dict[str, Any]] = []
    versions: list[NodeVersion] = []
    for name, probe in zip(names, probes, strict=True):
        if probe.status in (401, 403):
            fail(ExitCode.AUTH, f"{probe.url}: {probe.status} {probe.error}")
        if probe.status == 200 and isinstance(probe.body, dict):
            versions.append(NodeVersion(name, probe.url, probe.body))
            rows.append({"node": name, "url": probe.url, "status": "ok", "meta": probe.body})
        elif probe.status == 404:
            rows.append({"node": name, "url": probe.url, "status": "absent", "meta": None})
        else:
            rows.append({"node": name, "url": probe.url, "status": "unreachable",
                         "error": probe.error, "meta": None})  # fmt: skip
    return rows, versions


def print_why(key: str, rows: list[dict[str, Any]], explanation: str) -> None:
    from rich.table import Column, Table

    table = Table("node", Column("version", overflow="fold"), title=f"why {key}")
    for row in sorted(rows, key=lambda r: str(r["node"])):
        if row["status"] == "ok":
            text = label(row["meta"])
        elif row["status"] == "absent":
            text = "[dim]never seen[/]"
        else:
            text = f"[red]unreachable[/] {row.get('error') or ''}"
        answered_by = (row["meta"] or {}).get("node")
        name = str(row["node"])
        if answered_by and answered_by != row["node"]:
            name += f" -> {answered_by}"  # sharded: the node forwarded to an owner
        table.add_row(name, text)
    out = console()
    out.print(table)
    out.print(explanation, markup=False)
