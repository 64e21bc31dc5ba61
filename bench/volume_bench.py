"""Many keys per node: memory, write cost, scans and restarts of a 3-node loopback cluster.

For each N (``VOLUME_KEYS``, default 100 000 and 1 000 000; 10 000 000 on request) the
bench seeds three data directories with the same N records of 100 bytes, starts three
``rumor node`` processes on loopback and reports:

* ``rss_mib`` per node and ``bytes_per_key`` (RSS over N) once every digest is folded,
  and ``bytes_per_key_over_10k``: the RSS slope against the 10 000-key cluster (without
  the interpreter's fixed ~80 MiB);
* ``writes_per_s``: PUTs of random new keys (``WRITE_S`` seconds, 32 in flight) on one
  node, against the same figure on a 10 000-key cluster measured in the same run;
* ``scan_s``: paging through every key with ``GET /kv?limit=1000``, and the p99 of a GET
  issued every 10 ms during the scan against the same probe while idle;
* ``restart_to_serving_s``: one node restarted (SIGTERM, start): from the process start to
  its first answered GET of a stored key, and ``max_get_ms``, the slowest probe GET
  (every 10 ms) from then until its digests are folded and anti-entropy has run.

Loading: the batch path (``POST /kv`` batches) is not on this branch, so the data
directories are seeded through ``live.storage`` (the nodes' own storage layer, in
batches of 10 000) before the nodes start, the fastest existing path. Figures only:
nothing is asserted. Run: ``make bench-volume`` or
``VOLUME_KEYS=10000000 make bench-volume`` (a comma-separated list works too).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from rumordb.core.record import Record
from rumordb.live.storage import Storage

RUMOR = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "rumor")
VALUE_BYTES = 100
SEED_BATCH = 10_000
WRITE_S = 3.0
WRITE_CONCURRENCY = 32
PROBE_INTERVAL_S = 0.01
SETTLE_S = 8.0  # after a restart: fold slices and a few anti-entropy intervals
REFERENCE_KEYS = 10_000


def _key(i: int) -> str:
    return f"vol/{(i * 0x9E3779B97F4A7C15) & (2**64 - 1):016x}"  # spread, not sorted


async def seed(data_dir: Path, keys: int) -> None:
    """The same ``keys`` records in a node's data directory (origin n0, one HLC each)."""
    rng = random.Random(7)
    storage = Storage.open(data_dir, "batch")
    for start in range(0, keys, SEED_BATCH):
        batch = [
            (
                _key(i),
                Record(
                    rng.randbytes(VALUE_BYTES), "application/octet-stream", {"n0": 1}, i + 1, "n0"
                ),
            )
            for i in range(start, min(keys, start + SEED_BATCH))
        ]
        await storage.persist(batch, [])
    await storage.close()


class Cluster:
    def __init__(self, root: Path, nodes: int = 3) -> None:
        rng = random.SystemRandom()
        self.root = root
        self.hosts = [f"127.{rng.randint(100, 250)}.{rng.randint(1, 250)}.{i + 1}" for i in range(nodes)]  # fmt: skip
        self.port = rng.randint(20_000, 32_000)
        self.discovery_port = self.port + 1
        self.key, self.secret = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def url(self, i: int) -> str:
        return f"http://{self.hosts[i]}:{self.port}"

    def start(self, i: int) -> None:
        env = {**os.environ, "RUMOR_CLUSTER_SECRET": self.secret, "RUMOR_ADMIN_KEY": self.key}
        argv = [
            RUMOR, "node", "--host", self.hosts[i], "--port", str(self.port),
            "--node-id", f"n{i + 1}", "--data-dir", str(self.root / f"n{i + 1}"),
            "--durability", "batch", "--discovery-port", str(self.discovery_port),
            "--log-level", "warning",
        ]  # fmt: skip
        with (self.root / f"n{i + 1}.log").open("ab") as log:
            self.procs[i] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)

    def stop(self, i: int) -> None:
        proc = self.procs.pop(i, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def rss_mib(self) -> list[float]:
        return [round(psutil.Process(p.pid).memory_info().rss / 2**20, 1) for p in self.procs.values()]  # fmt: skip


class Probe:
    """A GET every 10 ms; latencies after the first answer (before: not listening yet)."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client, self.url = client, url
        self.latencies_ms: list[float] = []
        self.first_answer: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def take(self) -> list[float]:
        taken, self.latencies_ms = self.latencies_ms, []
        return taken

    async def _run(self) -> None:
        while True:
            began = time.perf_counter()
            try:
                reply = await self.client.get(self.url)
                if reply.status_code == 200:
                    if self.first_answer is None:
                        self.first_answer = time.monotonic()
                    self.latencies_ms.append((time.perf_counter() - began) * 1000)
            except httpx.HTTPError:
                pass
            await asyncio.sleep(max(0.0, PROBE_INTERVAL_S - (time.perf_counter() - began)))


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2) if ordered else 0.0


async def wait_serving(client: httpx.AsyncClient, url: str, timeout_s: float = 600.0) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        try:
            if (await client.get(url)).status_code == 200:
                return time.monotonic() - began
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{url} not serving within {timeout_s} s")


async def write_rate(client: httpx.AsyncClient, url: str) -> float:
    rng = random.Random()
    done = 0
    deadline = time.monotonic() + WRITE_S

    async def writer() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            reply = await client.put(f"{url}/kv/w/{rng.getrandbits(64):016x}", content=rng.randbytes(VALUE_BYTES))  # fmt: skip
            reply.raise_for_status()
            done += 1

    await asyncio.gather(*(writer() for _ in range(WRITE_CONCURRENCY)))
    return round(done / WRITE_S)


async def scan(client: httpx.AsyncClient, url: str) -> tuple[float, int]:
    began, after, seen = time.monotonic(), "", 0
    while True:
        page = (await client.get(f"{url}/kv", params={"limit": 1000, "after": after})).json()
        seen += len(page["keys"])
        if page["next"] is None:
            return round(time.monotonic() - began, 2), seen
        after = page["next"]


async def measure(keys: int, *, full: bool) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="rumor-volume-"))
    cluster = Cluster(root)
    try:
        began = time.monotonic()
        for i in range(3):
            await seed(root / f"n{i + 1}", keys)
        row: dict[str, object] = {"keys": keys, "seed_s": round(time.monotonic() - began, 1)}
        headers = {"Authorization": f"Bearer {cluster.key}"}
        async with httpx.AsyncClient(headers=headers, timeout=60.0, trust_env=False) as client:
            probe_url = f"{cluster.url(0)}/kv/{_key(keys // 2)}"
            for i in range(3):
                cluster.start(i)
            row["start_to_serving_s"] = round(await wait_serving(client, probe_url), 2)
            for i in (1, 2):
                await wait_serving(client, f"{cluster.url(i)}/kv/{_key(0)}")
            await asyncio.sleep(SETTLE_S)
            rss = cluster.rss_mib()
            row["rss_mib"] = rss
            row["bytes_per_key"] = round(max(rss) * 2**20 / keys)
            row["writes_per_s"] = await write_rate(client, cluster.url(0))
            if full:
                row.update(await scan_and_restart(client, cluster, probe_url))
        return row
    finally:
        for i in list(cluster.procs):
            cluster.stop(i)
        shutil.rmtree(root, ignore_errors=True)


async def scan_and_restart(
    client: httpx.AsyncClient, cluster: Cluster, probe_url: str
) -> dict[str, object]:
    row: dict[str, object] = {}
    probe = Probe(client, probe_url)
    probe.start()
    await asyncio.sleep(3.0)
    row["get_p99_idle_ms"] = p99(probe.take())
    row["scan_s"], row["scanned_keys"] = await scan(client, cluster.url(1))
    during = probe.take()
    row["get_p99_scan_ms"], row["get_max_scan_ms"] = p99(during), round(max(during, default=0), 2)
    await probe.stop()
    cluster.stop(0)
    restart = Probe(client, probe_url)
    began = time.monotonic()
    cluster.start(0)
    restart.start()
    await wait_serving(client, probe_url)
    serving = restart.first_answer or time.monotonic()
    row["restart_to_serving_s"] = round(serving - began, 2)
    await asyncio.sleep(SETTLE_S)
    await restart.stop()
    after = restart.take()
    row["restart_max_get_ms"], row["restart_p99_get_ms"] = round(max(after, default=0), 2), p99(after)  # fmt: skip
    return row


async def main() -> None:
    sizes = [int(n) for n in os.environ.get("VOLUME_KEYS", "100000,1000000").split(",")]
    reference = await measure(REFERENCE_KEYS, full=False)
    print(json.dumps({"reference": reference}), flush=True)
    for keys in sizes:
        row = await measure(keys, full=True)
        # RSS over N includes the interpreter (~80 MiB); the slope against 10k keys does not
        extra = max(row["rss_mib"]) - max(reference["rss_mib"])  # type: ignore[call-overload]
        row["bytes_per_key_over_10k"] = round(extra * 2**20 / (keys - REFERENCE_KEYS))
        row["writes_vs_10k"] = round(float(row["writes_per_s"]) / float(reference["writes_per_s"]), 2)  # type: ignore[arg-type]  # fmt: skip
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
