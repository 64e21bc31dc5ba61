"""Ask every node at once: the fan-out under ``status``, ``why`` and ``chaos``.

Each node gets its own ``rumordb.AsyncClient`` with no retries and no failover: the
point is what *that* node says. The answers come back as ``Probe`` values, never as
exceptions, so one dead node cannot hide the others.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from rumordb import api
from rumordb.cli.connect import MAX_NODES, cacert, open_client, resolve_urls
from rumordb.cli.output import ExitCode, fail, fail_with

PROBE_TIMEOUT_S = 2.0  # per node


@dataclass(frozen=True, slots=True)
class Probe:
    """One node's answer: a JSON body, an error status, or why there was none."""

    url: str
    status: int | None
    body: Any
    error: str | None


async def _probe_one(url: str, request: api.Request, api_key: str | None) -> Probe:
    from rumordb.async_client import AsyncClient
    from rumordb.errors import RumorError, error_from

    verify = cacert()
    async with AsyncClient(
        url, api_key=api_key, timeout_s=PROBE_TIMEOUT_S, retries=0, verify=verify
    ) as db:
        try:
            response = await db.send(request)
        except RumorError as exc:
            return Probe(url, None, None, str(exc))
    try:
        body = response.json()
    except ValueError:
        body = None
    error = None
    if response.status >= 400:
        error = str(error_from(response.status, response.body, response.headers, url))
    return Probe(url, response.status, body, error)


async def _probe_all(urls: list[str], request: api.Request, api_key: str | None) -> list[Probe]:
    return list(await asyncio.gather(*(_probe_one(url, request, api_key) for url in urls)))


def probe_all(urls: list[str], request: api.Request, api_key: str | None) -> list[Probe]:
    """Send ``request`` to every node at once (bounded by ``MAX_NODES``)."""
    return asyncio.run(_probe_all(urls[:MAX_NODES], request, api_key))


def fetch_cluster(url: str, api_key: str | None) -> dict[str, Any]:
    from rumordb.errors import RumorError

    with open_client([url], api_key, retries=1) as db:
        try:
            return db.cluster()  # type: ignore[no-any-return]
        except RumorError as error:
            fail_with(error, "cluster", has_key=api_key is not None)


def node_urls(urls: tuple[str, ...], cluster_dir: Any, api_key: str | None) -> dict[str, str]:
    """Node id -> URL: the members of one node's /cluster, or exactly the URLs given."""
    given = resolve_urls(urls, cluster_dir)
    if len(given) == 1:
        cluster = fetch_cluster(given[0], api_key)
        found = {member["id"]: member["url"] for member in cluster["members"]}
        found[cluster["node_id"]] = given[0]  # the one we reached, at the address we used
        return found
    found = {}
    for probe in probe_all(given, api.health(), api_key):
        if probe.status != 200 or not isinstance(probe.body, dict):
            fail(ExitCode.UNREACHABLE, f"cannot reach {probe.url}: {probe.error}")
        found[str(probe.body["node_id"])] = probe.url
    return found
