"""The live half of ``bench.repair_bench``: anti-entropy repair between real node processes.

Three ``rumor node`` processes on loopback (random 127.x.y.z addresses, ports and discovery
port, so concurrent runs never meet). 10 000 keys are loaded and replicated; then node n3
is cut off with ``POST /faults`` (it neither sends nor receives node-to-node traffic) for
less than the suspicion timeout, 1% of the keys are rewritten through n1, and we wait until
the rumors about them have run out (they went into the partition). Then the fault heals
and we time until n3 holds every rewritten version, and count the node-to-node bytes sent
by all nodes meanwhile (``rumor_gossip_bytes_total{direction="out"}``), against the size
of the whole data set as loaded. Every process is stopped at the end, also on failure.

``missing`` (issue 14: 1 % missing keys on a node with 1M keys, at most 3x the missing
records' bytes, under 5 s): the N keys are loaded through ``POST /kv`` batches
(``bench.volume_bench.load``), and while n3 is cut off 1 % *new* keys are written
through n1, so n3 lacks them. From the heal we time until n3 holds every key (its
``/cluster`` count, then every missing key read back) and count the node-to-node bytes
of every node meanwhile (heartbeats and gossip rounds included: an upper bound of the
repair's own; ``over_record_bytes_net`` takes off what the idle cluster sent in as long
before the cut), against the missing records' bytes, each encoded alone as anti-entropy
ships it (``SyncRecords``; same key, value and metadata sizes). Run:
``make repair-live`` (``REPAIR_KEYS``, default 1 000 000) or
``.venv/bin/python -m bench.repair_live --keys N [--nodes 2] [--load]``. By default every
node starts on a copy of one pre-written data directory (``bench.scan_bench``: the same
records everywhere); ``--load`` loads them through the API instead (many minutes at 1M
on a busy host, and pushes dropped under load leave anti-entropy a backlog first).
Either way the bench waits until anti-entropy sends no key over 3 intervals, then
repairs one key the same way (``warmup_one_key_s``: sessions also run, sending nothing,
while a restarted node still folds its digest) before the 1 % are cut off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

from bench.volume_bench import _key, load
from rumordb.core.messages import SyncRecords, Update, encode
from rumordb.core.record import Record

RUMOR = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "rumor")
VALUE_BYTES = 100
LOAD_CONCURRENCY = 16
RUMOR_DRAIN_S = 1.5  # 4 retransmits x 200 ms gossip rounds, with margin
TIMEOUT_S = 120.0
MISSING_SHARE = 0.01
REPAIR_TIMEOUT_S = 900.0  # from the heal (a restarted 1M-key node may still be folding)
QUIET_S = 3.0  # the background traffic of an idle cluster in sync, measured this long


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
            return all(
                sum(m["state"] == "alive" for m in v.get("members", [])) == len(urls) for v in views
            )

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


async def _key_count(client: httpx.AsyncClient, url: str) -> int:
    return int((await client.get(f"{url}/cluster")).json()["keys"])


def missing_record_bytes(keys: list[str], hlc: int) -> int:
    """The missing records as anti-entropy ships them, each in a message of its own
    (key, 100-byte value, content type, a one-entry clock, HLC and origin: their sizes)."""
    total = 0
    for i, key in enumerate(keys):
        record = Record(b"x" * VALUE_BYTES, "application/octet-stream", {"n1": 10**6 + i}, hlc + i, "n1")  # fmt: skip
        total += len(encode(SyncRecords("n1", 1, [Update(key, record)], [])))
    return total


async def _counter(client: httpx.AsyncClient, url: str, name: str) -> float:
    for line in (await client.get(f"{url}/metrics")).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


async def in_sync(client: httpx.AsyncClient, cluster: LiveCluster) -> bool:
    """Every node started anti-entropy sessions over a few intervals and sent no key
    (identical records: nothing to send once the digests are folded and compare)."""
    urls = [cluster.url(i) for i in range(len(cluster.hosts))]
    names = ("rumor_anti_entropy_sessions_total", "rumor_anti_entropy_keys_sent_total")
    before = [[await _counter(client, u, n) for n in names] for u in urls]
    await asyncio.sleep(3 * cluster.interval_ms / 1000)
    after = [[await _counter(client, u, n) for n in names] for u in urls]
    return all(a[0] > b[0] and a[1] == b[1] for a, b in zip(after, before, strict=True))


async def _cut_write_heal(
    client: httpx.AsyncClient, cluster: LiveCluster, first: int, count: int
) -> float:
    """Cut the last node off, write ``count`` new keys through the first, heal; the
    seconds from the heal until the last node holds as many keys as the first."""
    urls = [cluster.url(i) for i in range(len(cluster.hosts))]
    peers = [f"n{i + 1}" for i in range(len(urls) - 1)]
    (await client.post(f"{urls[-1]}/faults", json={"block": peers})).raise_for_status()
    await load(client, urls[0], first, count)
    await asyncio.sleep(RUMOR_DRAIN_S)
    wanted = await _key_count(client, urls[0])
    (await client.delete(f"{urls[-1]}/faults")).raise_for_status()
    healed_at = time.monotonic()

    async def repaired() -> bool:
        return await _key_count(client, urls[-1]) >= wanted

    await _poll(repaired, REPAIR_TIMEOUT_S, 0.05)
    return time.monotonic() - healed_at


async def measure_missing(
    cluster: LiveCluster, keys: int, *, prewritten: bool
) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {cluster.key}"}
    async with httpx.AsyncClient(headers=headers, timeout=120.0, trust_env=False) as client:
        urls = [cluster.url(i) for i in range(len(cluster.hosts))]

        async def all_members() -> bool:
            views = [(await client.get(f"{u}/cluster")).json() for u in urls]
            return all(
                sum(m["state"] == "alive" for m in v.get("members", [])) == len(urls) for v in views
            )

        await _poll(all_members, TIMEOUT_S if not prewritten else 1200.0, 0.3)
        began = time.monotonic()
        if not prewritten:
            await load(client, urls[0], 0, keys)
        load_s = time.monotonic() - began

        async def replicated() -> bool:
            return all([await _key_count(client, u) >= keys for u in urls])

        replicated_s = await _poll(replicated, 1200.0, 1.0)
        await _poll(lambda: in_sync(client, cluster), 1200.0, 0.5)
        # A warm-up repair of one key: sessions run while a restarted node still folds
        # (no key sent, but nothing compared either); one key repaired proves they compare.
        warmup_s = await _cut_write_heal(client, cluster, 20 * keys, 1)
        quiet_began, quiet_before = time.monotonic(), await _bytes_out(client, cluster)
        await asyncio.sleep(QUIET_S)  # heartbeats, gossip rounds, in-sync sessions
        background = (await _bytes_out(client, cluster) - quiet_before) / (time.monotonic() - quiet_began)  # fmt: skip
        missing = max(1, int(keys * MISSING_SHARE))
        peers = [f"n{i + 1}" for i in range(len(urls) - 1)]
        (await client.post(f"{urls[-1]}/faults", json={"block": peers})).raise_for_status()
        cut_at = time.monotonic()
        first = 10 * keys  # keys no node holds yet
        await load(client, urls[0], first, missing)
        await asyncio.sleep(RUMOR_DRAIN_S)
        held = await _key_count(client, urls[-1])
        wanted = await _key_count(client, urls[0])
        before = await _bytes_out(client, cluster)
        (await client.delete(f"{urls[-1]}/faults")).raise_for_status()
        healed_at = time.monotonic()

        async def repaired() -> bool:
            return await _key_count(client, urls[-1]) >= wanted

        await _poll(repaired, REPAIR_TIMEOUT_S, 0.05)
        took_s = time.monotonic() - healed_at
        after = await _bytes_out(client, cluster)
        absent = 0
        for i in range(first, first + missing):
            reply = await client.get(f"{urls[-1]}/kv/{_key(i)}")
            absent += reply.status_code != 200
    record_bytes = missing_record_bytes([_key(i) for i in range(first, first + missing)], 1 << 50)
    row_warmup = {"warmup_one_key_s": round(warmup_s, 1)}
    sent = after - before
    return {
        "mode": "live-missing" + ("-prewritten" if prewritten else ""),
        "nodes": len(urls),
        "keys": keys,
        "load_s": round(load_s, 1),
        "replicated_s": round(replicated_s, 1),
        "missing": missing,
        "missing_on_cut_node_at_heal": wanted - held,
        "partition_s": round(healed_at - cut_at, 2),
        "anti_entropy_interval_ms": cluster.interval_ms,
        **row_warmup,
        "heal_to_every_key_s": round(took_s, 2),
        "missing_keys_unreadable_after": absent,
        "bytes_out_all_nodes": int(sent),
        "missing_record_bytes": record_bytes,
        "bytes_per_missing_key": round(sent / missing),
        "over_record_bytes": round(sent / record_bytes, 2),
        # less what an idle cluster in sync sends in as long (heartbeats, gossip rounds)
        "background_bytes_per_s": round(background),
        "over_record_bytes_net": round((sent - background * took_s) / record_bytes, 2),
    }


def live_missing(keys: int, nodes: int, interval_ms: int, *, prewritten: bool) -> dict[str, object]:
    cluster = LiveCluster(nodes, interval_ms)
    try:
        if prewritten:  # the same records on every node, as a compaction leaves them
            from bench.scan_bench import write_data_dir

            write_data_dir(cluster.dir / "n1", keys)
            for i in range(1, nodes):
                shutil.copytree(cluster.dir / "n1", cluster.dir / f"n{i + 1}")
        cluster.start()
        return asyncio.run(measure_missing(cluster, keys, prewritten=prewritten))
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.repair_live")
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument(
        "--load", action="store_true",
        help="load the keys through POST /kv (default: every node starts on the same "
        "pre-written data directory: loading 1M keys takes many minutes on a busy host)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    row = live_missing(args.keys, args.nodes, args.interval_ms, prewritten=not args.load)
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
