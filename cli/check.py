"""``rumor check``: a Jepsen-style set check of a running cluster, for users.

It runs the set workload of ``live.checker`` (unique values written and deleted through
random nodes, every operation logged), optionally with chaos through the nodes' fault
endpoints (random partitions, one-way cuts, delay, loss, heals; the nodes need
``--allow-faults``), then heals, waits until every node holds identical data, reads every
key from every node and prints what the checker found. Exit code 0 only when nothing the
cluster acknowledged was lost; 1 when something was; 2 for bad usage; 4 when the cluster
cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx

from rumordb.cli import credentials
from rumordb.cli.connect import dir_option
from rumordb.live.checker import Report, Workload, classify, wait_identical

DEFAULT_URL = "http://127.0.0.1:8001"
MAX_NODES = 64
MAX_FINDINGS_SHOWN = 20
CHAOS_INTERVAL_S = 3.0  # one fault change per interval


class CheckError(Exception):
    """The check could not run (unreachable cluster, faults not enabled)."""


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def split_urls(text: str | None) -> list[str]:
    urls = [part.strip().rstrip("/") for part in (text or "").split(",") if part.strip()]
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise click.BadParameter(f"a node URL starts with http:// or https://, got {url!r}")
    return urls[:MAX_NODES]


async def cluster_members(client: httpx.AsyncClient, url: str, api_key: str | None) -> list[str]:
    """The URLs of the members that ``url`` sees alive (itself included)."""
    reply = await client.get(f"{url}/cluster", headers=_headers(api_key))
    if reply.status_code != 200:
        raise CheckError(f"GET {url}/cluster answered {reply.status_code}: {reply.text[:200]}")
    view = reply.json()
    urls = [m["url"].rstrip("/") for m in view["members"] if m.get("state") == "alive"]
    return sorted(set(urls))[:MAX_NODES] or [url]


async def node_ids(client: httpx.AsyncClient, urls: list[str], api_key: str | None) -> list[str]:
    ids = []
    for url in urls:
        reply = await client.get(f"{url}/cluster", headers=_headers(api_key))
        if reply.status_code != 200:
            raise CheckError(f"GET {url}/cluster answered {reply.status_code}")
        ids.append(str(reply.json()["node_id"]))
    return ids


# --- chaos through the fault endpoints ----------------------------------------------------
@dataclass(slots=True)
class Chaos:
    """Random faults on the nodes' node-to-node traffic, one change every few seconds."""

    urls: list[str]
    ids: list[str]
    api_key: str | None
    rng: random.Random
    log: list[dict[str, Any]]

    async def post(self, client: httpx.AsyncClient, index: int, body: dict[str, Any]) -> None:
        url = self.urls[index]
        reply = await client.post(f"{url}/faults", json=body, headers=_headers(self.api_key))
        if reply.status_code == 404:
            raise CheckError(f"{url} has no fault endpoints: start the nodes with --allow-faults")
        reply.raise_for_status()

    async def heal(self, client: httpx.AsyncClient) -> None:
        for url in self.urls:
            reply = await client.delete(f"{url}/faults", headers=_headers(self.api_key))
            if reply.status_code == 404:
                raise CheckError(f"{url} has no fault endpoints: start nodes with --allow-faults")
            reply.raise_for_status()
        self.log.append({"t": time.time(), "fault": "heal"})

    async def step(self, client: httpx.AsyncClient) -> None:
        await self.heal(client)
        n = len(self.urls)
        kind = self.rng.choice(["halves", "isolate", "one_way", "delay", "loss", "none"])
        order = self.rng.sample(range(n), n)
        if kind == "halves" and n > 1:
            left, right = order[: n // 2], order[n // 2 :]
            for a, b in ((left, right), (right, left)):
                for i in a:
                    await self.post(client, i, {"block": [self.ids[j] for j in b]})
        elif kind == "isolate" and n > 1:
            others = [self.ids[j] for j in order[1:]]
            await self.post(client, order[0], {"block": others})
        elif kind == "one_way" and n > 1:
            await self.post(client, order[0], {"block_to": [self.ids[order[1]]]})
        elif kind == "delay":
            await self.post(client, order[0], {"delay_ms": self.rng.randint(20, 300)})
        elif kind == "loss":
            await self.post(client, order[0], {"loss": round(self.rng.uniform(0.1, 0.5), 2)})
        self.log.append({"t": time.time(), "fault": kind, "nodes": [self.ids[i] for i in order]})

    async def run(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.step(client)
            try:
                await asyncio.wait_for(stop.wait(), CHAOS_INTERVAL_S)
            except TimeoutError:
                continue


# --- the check ----------------------------------------------------------------------------
@dataclass(slots=True)
class CheckOptions:
    urls: list[str]
    api_key: str | None
    duration_s: float
    rate: float
    keys: int
    chaos: bool
    quiet_timeout_s: float
    seed: int
    prefix: str
    delete_ratio: float = 0.1


async def run_check(
    options: CheckOptions, transport: httpx.AsyncBaseTransport | None = None
) -> Report:
    """The whole check; ``transport`` is the I/O seam (tests pass an ``httpx.MockTransport``)."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        timeout=5.0, limits=limits, trust_env=False, transport=transport
    ) as client:
        urls = options.urls
        if len(urls) == 1:
            urls = await cluster_members(client, urls[0], options.api_key)
        load = Workload(
            urls=urls,
            api_key=options.api_key,
            prefix=options.prefix,
            keys=options.keys,
            rate=options.rate,
            duration_s=options.duration_s,
            seed=options.seed,
            delete_ratio=options.delete_ratio,
        )
        faults: list[dict[str, Any]] = []
        chaos = None
        if options.chaos:
            ids = await node_ids(client, urls, options.api_key)
            chaos = Chaos(urls, ids, options.api_key, random.Random(options.seed), faults)
        stop = asyncio.Event()
        chaos_task = asyncio.create_task(chaos.run(client, stop)) if chaos else None
        try:
            await load.run(client)
        finally:
            stop.set()
            if chaos_task is not None:
                await chaos_task
        if chaos is not None:
            await chaos.heal(client)
        snap, took_s = await wait_identical(
            client, urls, load.key_names(), options.prefix, options.api_key,
            options.quiet_timeout_s,
        )  # fmt: skip
    report = classify(load.history, snap)
    report.heal_to_identical_s = None if took_s is None else round(took_s, 3)
    report.extra = {"urls": urls, "faults": len(faults), "chaos": options.chaos}
    return report


def print_report(report: Report) -> None:
    s = report.summary()
    click.echo(f"nodes {report.nodes}  keys {report.keys}  faults injected {s['faults']}")
    click.echo(
        f"operations invoked {report.invoked}: ok {report.ok}, failed {report.failed}, "
        f"unknown {report.unknown}  (availability {report.availability:.1%})"
    )
    click.echo(f"acknowledged and present  {report.present}")
    click.echo(f"lost                      {len(report.lost)}")
    click.echo(f"superseded (LWW)          {len(report.superseded)}")
    click.echo(f"unexpected                {len(report.unexpected)}")
    took = report.heal_to_identical_s
    click.echo(
        "identical data on all nodes: "
        + (f"yes, {took:.2f} s after heal" if took is not None and report.identical else "NO")
    )
    for title, findings in (("lost", report.lost), ("unexpected", report.unexpected)):
        for finding in findings[:MAX_FINDINGS_SHOWN]:
            click.echo(f"  {title}: key {finding.key!r} op {finding.op} on {finding.node}: "
                       f"{finding.reason}")  # fmt: skip
    click.echo("PASS: nothing acknowledged was lost" if report.passed else "FAIL: writes lost")


def report_document(report: Report) -> dict[str, Any]:
    def shown(findings: list[Any]) -> list[dict[str, Any]]:
        return [
            {"key": f.key, "node": f.node, "op": f.op, "reason": f.reason}
            for f in findings[:MAX_FINDINGS_SHOWN]
        ]

    return {
        **report.summary(),
        "passed": report.passed,
        "present": report.present,
        "nodes": report.nodes,
        "keys": report.keys,
        "lost_examples": shown(report.lost),
        "unexpected_examples": shown(report.unexpected),
    }


@click.command("check")
@click.option(
    "--urls",
    envvar="RUMOR_URLS",
    help="Comma-separated node URLs (env RUMOR_URLS); default: the members that --url sees.",
)
@click.option("--url", envvar="RUMOR_URL", default=DEFAULT_URL, show_default=True,
              help="A node (env RUMOR_URL).")  # fmt: skip
@click.option("--duration", type=click.FloatRange(1, 3600), default=60.0, show_default=True,
              help="Workload seconds.")  # fmt: skip
@click.option("--rate", type=click.FloatRange(1, 5000), default=50.0, show_default=True,
              help="Operations per second.")  # fmt: skip
@click.option("--keys", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="Keyspace size.")  # fmt: skip
@click.option("--chaos", is_flag=True, help="Random partitions/heals/delays via /faults.")
@click.option("--quiet-timeout", type=click.FloatRange(1, 3600), default=60.0,
              show_default=True, help="Seconds to converge.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Workload and chaos seed.")
@click.option("--delete-ratio", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Share of deletes.")  # fmt: skip
@click.option("--prefix", default="", help="Key prefix of the workload.")
@click.option("--api-key", envvar="RUMOR_API_KEY",
              help="Admin key (env RUMOR_API_KEY); default: the admin key in DIR/credentials.")  # fmt: skip
@dir_option
@click.option("--json", "json_output", is_flag=True, help="JSON output.")
def check(
    urls: str | None,
    url: str,
    duration: float,
    rate: float,
    keys: int,
    chaos: bool,
    quiet_timeout: float,
    seed: int,
    delete_ratio: float,
    prefix: str,
    api_key: str | None,
    cluster_dir: Path,
    json_output: bool,
) -> None:
    """Run a set workload (optionally with chaos), heal, and check no acknowledged write
    was lost. Exit 0 only when nothing acknowledged was lost."""
    try:
        key = api_key or credentials.admin_key_from(cluster_dir)
    except credentials.CredentialsError as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(2) from None
    nodes = split_urls(urls) or split_urls(url)
    options = CheckOptions(
        urls=nodes,
        api_key=key,
        duration_s=duration,
        rate=rate,
        keys=keys,
        chaos=chaos,
        quiet_timeout_s=quiet_timeout,
        seed=seed,
        prefix=prefix or f"check/{int(time.time())}/",
        delete_ratio=delete_ratio,
    )
    try:
        report = asyncio.run(run_check(options))
    except (CheckError, httpx.HTTPError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(4) from None
    if json_output:
        sys.stdout.write(json.dumps(report_document(report), indent=2, sort_keys=True) + "\n")
    else:
        print_report(report)
    raise click.exceptions.Exit(0 if report.passed else 1)
