"""How fast a revocation reaches the cluster: ``DELETE /admin/keys/{name}`` to 401 elsewhere.

A 3-node loopback cluster with the default timers (``bench.http_bench.start_cluster``:
``--durability sync``, servers pinned to CPU 0). Each try creates a key on one node,
waits until every node accepts it, then revokes it on the next node while the two other
nodes are polled, as fast as a client can, with the revoked key; the time of a try is
from sending the DELETE to the *last* of the two answering 401 (the revoker's own group
commit included). The pollers use a fresh loopback source address per try, so the
failed-authentication limiter (per client address) never answers 429 instead of 401.

Run: ``make bench-keyring`` or ``python -m bench.keyring_bench --tries 20``. Figures are
printed (p50 and max over the tries), never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.http_bench import KEY, processes, start_cluster

ADMIN = {"Authorization": f"Bearer {KEY}"}
POLL_PAUSE_S = 0.0005
TRY_TIMEOUT_S = 30.0


async def until_status(client: httpx.AsyncClient, url: str, key: str, status: int) -> float:
    """Poll ``GET url/kv`` with ``key`` until it answers ``status``; the perf_counter then."""
    deadline = time.perf_counter() + TRY_TIMEOUT_S
    while time.perf_counter() < deadline:
        response = await client.get(url + "/kv?limit=1", headers={"X-API-Key": key})
        if response.status_code == status:
            return time.perf_counter()
        await asyncio.sleep(POLL_PAUSE_S)
    raise RuntimeError(f"{url} did not answer {status} within {TRY_TIMEOUT_S} s")


async def one_try(urls: list[str], index: int) -> tuple[float, float]:
    """(ms from DELETE to 401 on both other nodes, ms of the DELETE itself)."""
    creator, revoker = urls[index % 3], urls[(index + 1) % 3]
    others = [url for url in urls if url != revoker]
    source = f"127.0.0.{101 + index % 150}"  # one fresh client address per try
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(transport=transport, timeout=5.0, trust_env=False) as client:
        name = f"bench-{index}"
        made = await client.post(
            creator + "/admin/keys", json={"name": name, "role": "reader"}, headers=ADMIN
        )
        made.raise_for_status()
        key = made.json()["key"]
        await asyncio.gather(*(until_status(client, url, key, 200) for url in urls))
        started = time.perf_counter()
        pollers = [asyncio.create_task(until_status(client, url, key, 401)) for url in others]
        revoked = await client.delete(f"{revoker}/admin/keys/{name}", headers=ADMIN)
        delete_ms = (time.perf_counter() - started) * 1000
        revoked.raise_for_status()
        refused_at = await asyncio.gather(*pollers)
    return (max(refused_at) - started) * 1000, delete_ms


async def run(urls: list[str], tries: int) -> tuple[list[float], list[float]]:
    spreads, deletes = [], []
    for index in range(tries):
        spread_ms, delete_ms = await one_try(urls, index)
        spreads.append(spread_ms)
        deletes.append(delete_ms)
    return spreads, deletes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rumor-keyring-bench-"))
    try:
        with processes() as procs:
            urls = start_cluster(work, procs)
            spreads, deletes = asyncio.run(run(urls, args.tries))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"revocation: DELETE /admin/keys/{{name}} on one node -> 401 on both others, "
          f"3 loopback nodes, {args.tries} tries")  # fmt: skip
    print(
        f"  to 401 everywhere: p50 {statistics.median(spreads):.1f} ms, max {max(spreads):.1f} ms"
    )
    print(
        f"  the DELETE itself: p50 {statistics.median(deletes):.1f} ms, max {max(deletes):.1f} ms"
    )
    print("  per try (ms): " + " ".join(f"{ms:.1f}" for ms in spreads))


if __name__ == "__main__":
    main()
