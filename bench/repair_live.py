"""The live half of ``bench.repair_bench``: anti-entropy repair between real node processes.

Three ``rumor node`` processes on loopback (random 127.x.y.z addresses, ports and discovery
port, so concurrent runs never meet). 10 000 keys are loaded and replicated; then node n3
is cut off with ``POST /faults`` (it neither sends nor receives node-to-node traffic) for
less than the suspicion timeout, 1% of the keys are rewritten through n1, and we wait until
the rumors about them have run out (they went into the partition). Then the fault heals
and we time until n3 holds every rewritten version, and count the node-to-node bytes sent
by all nodes meanwhile (``rumor_gossip_bytes_total{direction="out"}``), against the size
of the whole data set as loaded. Every process is stopped at the end, also on failure.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

RUMOR = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "rumor")
VALUE_BYTES = 100
LOAD_CONCURRENCY = 16
RUMOR_DRAIN_S = 1.5  # 4 retransmits x 200 ms gossip rounds, with margin
TIMEOUT_S = 120.0


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LiveCluster:
    def __init__(self, nodes: int, interval_ms: int) -> None:
        rng = random.SystemRandom()
        self.hosts = [
            f"127.{rng.randint(100, 250)}.{rng.randint(1, 250)}.{i + 1}" for i in range(nodes)
        ]
        self.port = _free_port(self.hosts[0])
        self.key = secrets.token_urlsafe(24)
        self.dir = Path(tempfile.mkdtemp(prefix="rumor-repair-"))
        self.interval_ms = interval_ms
        self.procs: list[subprocess.Popen[bytes]] = []
        self.discovery_port = rng.randint(20_000, 32_000)
        self.secret = secrets.token_urlsafe(24)

    def url(self, i: int) -> str:
        return f"http://{self.hosts[i]}:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "RUMOR_CLUSTER_SECRET": self.secret, "RUMOR_ADMIN_KEY": self.key}
        for i, host in enumerate(self.hosts):
            argv = [
                RUMOR, "node", "--host", host, "--port", str(self.port), "--node-id", f"n{i + 1}",
                "--data-dir", str(self.dir / f"n{i + 1}"), "--durability", "batch",
                "--discovery-port", str(self.discovery_port), "--allow-faults",
                "--anti-entropy-interval-ms", str(self.interval_ms), "--log-level", "warning",
            ]  # fmt: skip
            log = (self.dir / f"n{i + 1}.log").open("wb")
            self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env))
            log.close()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


async def _poll(predicate: Any, timeout_s: float, interval_s: float = 0.1) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        try:
            if await predicate():
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        await asyncio.sleep(interval_s)
    raise TimeoutError(f"condition not met within {timeout_s} s")


async def _bytes_out(client: httpx.AsyncClient, cluster: LiveCluster) -> float:
    total = 0.0
    for i in range(len(cluster.hosts)):
        text = (await client.get(f"{cluster.url(i)}/metrics")).text
        for line in text.splitlines():
            if line.startswith('rumor_gossip_bytes_total{direction="out"}'):
                total += float(line.split()[-1])
    return total


async def _put_all(client: httpx.AsyncClient, url: str, items: list[tuple[str, bytes]]) -> None:
    slots = asyncio.Semaphore(LOAD_CONCURRENCY)

    async def put(key: str, value: bytes) -> None:
        async with slots:
            reply = await client.put(f"{url}/kv/{key}", content=value)
            reply.raise_for_status()

    await asyncio.gather(*(put(k, v) for k, v in items))


async def _versions(client: httpx.AsyncClient, url: str, keys: list[str]) -> list[Any]:
    out = []
    for key in keys:
        reply = await client.get(f"{url}/kv/{key}", params={"meta": "true"})
        out.append(reply.json().get("hlc") if reply.status_code == 200 else None)
    return out


async def measure(cluster: LiveCluster, keys: int) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {cluster.key}"}
    async with httpx.AsyncClient(headers=headers, timeout=10.0, trust_env=False) as client:
        urls = [cluster.url(i) for i in range(len(cluster.hosts))]

        async def all_members() -> bool:
            views = [(await client.get(f"{u}/cluster")).json() for u in urls]
            return all(sum(m["state"] == "alive" for m in v["members"]) == len(urls) for v in views)

        await _poll(all_members, TIMEOUT_S, 0.3)
        rng = random.Random(7)
        items = [(f"key/{i:06d}", rng.randbytes(VALUE_BYTES)) for i in range(keys)]
        await _put_all(client, urls[0], items)

        async def replicated() -> bool:
            views = [(await client.get(f"{u}/cluster")).json() for u in urls]
            return all(v["keys"] == keys for v in views)

        await _poll(replicated, TIMEOUT_S, 0.5)
        differing = [key for key, _ in items[:: max(1, keys // (keys // 100))]][: keys // 100]
        peers = [f"n{i + 1}" for i in range(len(urls) - 1)]
        reply = await client.post(f"{urls[-1]}/faults", json={"block": peers})
        reply.raise_for_status()
        cut_at = time.monotonic()
        await _put_all(client, urls[0], [(k, b"rewritten" * 11) for k in differing])
        await asyncio.sleep(RUMOR_DRAIN_S)
        wanted = await _versions(client, urls[0], differing)
        held = await _versions(client, urls[-1], differing)
        stale = sum(a != b for a, b in zip(wanted, held, strict=True))
        before = await _bytes_out(client, cluster)
        (await client.delete(f"{urls[-1]}/faults")).raise_for_status()
        partition_s = time.monotonic() - cut_at

        async def repaired() -> bool:
            return await _versions(client, urls[-1], differing) == wanted

        took_s = await _poll(repaired, TIMEOUT_S, 0.05)
        after = await _bytes_out(client, cluster)
    full = sum(len(k) + len(v) for k, v in items)
    return {
        "mode": "live",
        "nodes": len(urls),
        "keys": keys,
        "differing": len(differing),
        "stale_on_n3_at_heal": stale,
        "partition_s": round(partition_s, 2),
        "anti_entropy_interval_ms": cluster.interval_ms,
        "heal_to_identical_s": round(took_s, 3),
        "target_s": 2 * cluster.interval_ms / 1000 + 1,
        "bytes_out_all_nodes": int(after - before),
        "full_data_bytes": full,
        "repair_share": round((after - before) / full, 4),
    }


def live(keys: int, interval_ms: int) -> dict[str, object]:
    cluster = LiveCluster(3, interval_ms)
    try:
        cluster.start()
        return asyncio.run(measure(cluster, keys))
    finally:
        cluster.stop()
