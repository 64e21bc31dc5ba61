"""Bulk ingest: keys/s into a 3-node cluster through ``POST /kv`` batches, until every node
holds them, against single PUTs measured the same way in the same run.

Three nodes on 127.0.0.21-23 (``--durability sync``, replication on), all pinned to CPU 0
as in ``bench.http_bench``; the load generator (a raw keep-alive HTTP client, tens of
microseconds per request) runs here. Each round ingests ``--keys`` fresh keys with
100-byte values as batches of ``--batch`` items, ``--concurrency`` batches in flight
spread over the three nodes, and stops the clock when ``/cluster`` on every node counts
them all; then ``--single-keys`` single PUTs (64 in flight) the same way. Rounds
alternate, figures are printed (never asserted): the machine may be shared.

Run: ``make bench-ingest`` or ``python -m bench.ingest_bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.http_bench import KEY, RawHTTP, processes, start_cluster

VALUE_TEXT = "v" * 100
SINGLE_CONCURRENCY = 64


def batch_bodies(prefix: str, keys: int, size: int) -> list[bytes]:
    bodies = []
    for start in range(0, keys, size):
        items = [
            {"op": "put", "key": f"{prefix}/{i:08d}", "value_text": VALUE_TEXT}
            for i in range(start, min(keys, start + size))
        ]
        bodies.append(json.dumps({"items": items}).encode())
    return bodies


def key_counts(urls: list[str]) -> list[int]:
    return [httpx.get(u + "/cluster", headers={"X-API-Key": KEY}).json()["keys"] for u in urls]


async def until_held(urls: list[str], expected: int, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(headers={"X-API-Key": KEY}, trust_env=False) as client:
        while time.monotonic() < deadline:
            views = await asyncio.gather(*(client.get(u + "/cluster") for u in urls))
            if all(v.json()["keys"] >= expected for v in views):
                return
            await asyncio.sleep(0.01)
    raise RuntimeError(f"not every node holds {expected} keys after {timeout_s} s")


async def run_jobs(urls: list[str], jobs: list[tuple[str, str, bytes]], concurrency: int) -> int:
    """Send (method, path, body) jobs, ``concurrency`` at a time over the nodes; non-2xx count."""
    clients = [RawHTTP(u) for u in urls]
    queue = list(reversed(jobs))
    failed = 0

    async def worker(n: int) -> None:
        nonlocal failed
        client = clients[n % len(clients)]
        while queue:
            method, path, body = queue.pop()
            status, payload = await client.request(method, path, body)
            if status >= 300 or (path == "/kv" and b'"status":5' in payload):
                failed += 1

    try:
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    finally:
        for client in clients:
            await client.close()
    return failed


async def ingest(urls: list[str], held: int, jobs: list[tuple[str, str, bytes]], keys: int,
                 concurrency: int) -> tuple[float, float, int]:  # fmt: skip
    """(seconds until every node holds the keys, seconds until all were acknowledged, failed)."""
    started = time.perf_counter()
    failed = await run_jobs(urls, jobs, concurrency)
    acked = time.perf_counter() - started
    await until_held(urls, held + keys)
    return time.perf_counter() - started, acked, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000, help="keys per batch round")
    parser.add_argument("--batch", type=int, default=1000, help="items per batch")
    parser.add_argument("--concurrency", type=int, default=6, help="batches in flight")
    parser.add_argument("--single-keys", type=int, default=10_000, help="keys per PUT round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"batch": [], "single": []}
    with tempfile.TemporaryDirectory(prefix="rumor-ingest-") as tmp, processes() as procs:
        urls = start_cluster(Path(tmp), procs)
        for round_ in range(args.rounds):
            held = max(key_counts(urls))
            jobs = [("POST", "/kv", body)
                    for body in batch_bodies(f"b{round_}", args.keys, args.batch)]  # fmt: skip
            total_s, acked_s, failed = asyncio.run(
                ingest(urls, held, jobs, args.keys, args.concurrency)
            )
            rates["batch"].append(args.keys / total_s)
            print(f"round {round_} batches: {args.keys} keys, acked in {acked_s:.2f} s, on every "
                  f"node in {total_s:.2f} s: {args.keys / total_s:,.0f} keys/s "
                  f"(failed batches {failed})")  # fmt: skip
            held = max(key_counts(urls))
            body = VALUE_TEXT.encode()
            jobs = [("PUT", f"/kv/s{round_}/{i:08d}", body) for i in range(args.single_keys)]
            total_s, acked_s, failed = asyncio.run(
                ingest(urls, held, jobs, args.single_keys, SINGLE_CONCURRENCY)
            )
            rates["single"].append(args.single_keys / total_s)
            print(f"round {round_} single PUTs: {args.single_keys} keys, on every node in "
                  f"{total_s:.2f} s: {args.single_keys / total_s:,.0f} keys/s (failed {failed})")  # fmt: skip
    batch, single = statistics.median(rates["batch"]), statistics.median(rates["single"])
    ratios = " ".join(f"{b / s:.1f}" for b, s in zip(rates["batch"], rates["single"], strict=True))
    print(f"\ningest into 3 nodes (CPU 0), 100-byte values, batches of {args.batch}, "
          f"{args.concurrency} in flight: median {batch:,.0f} keys/s; single PUTs "
          f"{single:,.0f} keys/s; ratio {batch / single:.1f}x (rounds: {ratios})")  # fmt: skip


if __name__ == "__main__":
    main()
