"""How many acknowledged writes a crash loses, per ``--durability`` mode (kill -9 on loopback).

One ``rumor node`` process (the live test harness's ``NodeProcess``: loopback address,
random free port, broadcast off, so no peer can hand a lost write back) takes acknowledged
PUTs of unique keys from a paced loop (``--rate`` writes/s over ``--concurrency``
keep-alive connections). After a random 1.5-3 s of load the node is killed with SIGKILL by
its PID, mid-load; then it is restarted on the same data directory and every key whose PUT
was answered 2xx is looked up in its key listing. A key that is missing is an acknowledged
write the crash lost. Rounds alternate between the modes, so a slow moment of this shared
machine hits both alike.

This measures what the disk of one node loses. With ``--nodes 3`` the loaded node has two
peers (the harness's ``Cluster``: broadcast discovery on loopback, fast timers): a client
write is also pushed to them at once, so the bench also counts what is still missing on the
restarted node after anti-entropy has had ``REPAIR_WAIT_S``, and what no node holds. A
single-node deployment, or a power cut of every node, has only the disk. ``memory`` keeps
nothing across a restart by definition; it is worth measuring only with peers.

    make bench-durability        # or: python -m bench.durability_bench --rounds 5
    python -m bench.durability_bench --nodes 3 --modes batch,sync,memory --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.live.harness import (
    ADMIN_KEY,
    READER,
    READER_KEY,
    SECRET,
    Cluster,
    NodeProcess,
    free_tcp_port,
)

VALUE = b"v" * 100
READY_TIMEOUT_S = 30.0
LIST_PAGE = 1000
MAX_WRITES_PER_ROUND = 20_000  # bounds the load loop whatever the rate
REPAIR_WAIT_S = 15.0  # cluster: anti-entropy runs every 500 ms (the harness's fast timers)


@dataclass
class Round:
    mode: str
    acknowledged: int
    lost: int  # missing on the crashed node when it is healthy again
    load_s: float
    lost_after_repair: int | None = None  # cluster: still missing there after anti-entropy
    lost_everywhere: int | None = None  # cluster: missing on every node

    @property
    def rate(self) -> float:
        return self.acknowledged / self.load_s if self.load_s else 0.0


def node_args(host: str, port: int, data_dir: Path, durability: str) -> list[str]:
    return [
        "--host", host, "--port", str(port), "--node-id", "d1",
        "--data-dir", str(data_dir), "--durability", durability,
        "--cluster-secret", SECRET, "--admin-key", ADMIN_KEY, "--reader-key", READER_KEY,
        "--broadcast", "off", "--log-level", "warning",
    ]  # fmt: skip


async def wait_healthy(client: httpx.AsyncClient, node: NodeProcess) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if node.proc is None or node.proc.poll() is not None:
            raise RuntimeError(f"the node exited:\n{node.logs()[-2000:]}")
        try:
            if (await client.get(node.url + "/health")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the node was not healthy within {READY_TIMEOUT_S} s")


class Connection:
    """One keep-alive HTTP/1.1 connection: httpx's pool caps a client near 300 PUTs/s here,
    far below the node, so the load loop writes requests and reads answers itself."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(*await asyncio.open_connection(host, port))

    async def put(self, key: str, value: bytes) -> int:
        """The status of ``PUT /kv/{key}``; ``OSError``/``IncompleteReadError`` if cut."""
        head = (
            f"PUT /kv/{key} HTTP/1.1\r\nHost: node\r\nAuthorization: Bearer {ADMIN_KEY}\r\n"
            f"Content-Length: {len(value)}\r\n\r\n"
        )
        self.writer.write(head.encode() + value)
        answer = await self.reader.readuntil(b"\r\n\r\n")
        lines = answer.decode("latin-1").split("\r\n")
        fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        length = {name.strip().lower(): v for name, v in fields.items()}.get("content-length", "0")
        await self.reader.readexactly(int(length))
        return int(lines[0].split()[1])

    def close(self) -> None:
        self.writer.close()


async def load_until_killed(
    node: NodeProcess, rate: int, concurrency: int, kill_after_s: float
) -> tuple[set[str], float]:
    """PUT unique keys at ``rate``/s; SIGKILL the node after ``kill_after_s``; acked keys."""
    acknowledged: set[str] = set()
    start = time.monotonic()
    interval_s = concurrency / rate  # each worker's pace
    sequence = iter(range(MAX_WRITES_PER_ROUND))
    killed = asyncio.Event()

    async def worker(offset: int) -> None:
        connection = await Connection.open(node.host, node.port)
        due = start + offset * interval_s / concurrency
        try:
            for i in sequence:
                if killed.is_set():
                    return
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                due += interval_s
                key = f"w{i:06d}"
                status = await connection.put(key, VALUE)
                if 200 <= status < 300:
                    acknowledged.add(key)
        except (OSError, asyncio.IncompleteReadError):
            return  # the node died: this PUT was not answered, so not acknowledged
        finally:
            connection.close()

    async def killer() -> None:
        await asyncio.sleep(kill_after_s)
        assert node.proc is not None
        os.kill(node.proc.pid, signal.SIGKILL)  # by PID, mid-load
        killed.set()

    await asyncio.gather(killer(), *(worker(i) for i in range(concurrency)))
    return acknowledged, time.monotonic() - start


async def stored_keys(client: httpx.AsyncClient, node: NodeProcess) -> set[str]:
    keys: set[str] = set()
    after = ""
    while True:
        params = {"prefix": "w", "limit": str(LIST_PAGE), "after": after}
        response = await client.get(node.url + "/kv", params=params, headers=READER)
        response.raise_for_status()
        page = response.json()
        keys.update(page["keys"])
        if page["next"] is None:
            return keys
        after = page["next"]


async def one_round(mode: str, rate: int, concurrency: int, rng: random.Random) -> Round:
    root = Path(tempfile.mkdtemp(prefix="rumor-durability-"))
    host = f"127.0.{rng.randint(100, 250)}.{rng.randint(2, 250)}"
    port = free_tcp_port(host)
    node = NodeProcess("d1", host, port, root / "d1", [], root / "d1.log")
    node.args = node_args(host, port, node.data_dir, mode)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    try:
        async with httpx.AsyncClient(timeout=5.0, limits=limits) as client:
            node.start()
            await wait_healthy(client, node)
            acked, load_s = await load_until_killed(node, rate, concurrency, rng.uniform(1.5, 3.0))
            node.stop()  # reaps the killed process
            node.start()
            await wait_healthy(client, node)
            lost = len(acked - await stored_keys(client, node))
        return Round(mode, len(acked), lost, load_s)
    finally:
        node.stop()
        shutil.rmtree(root, ignore_errors=True)


async def cluster_round(mode: str, rate: int, concurrency: int, rng: random.Random) -> Round:
    """Three nodes; the one that takes the load is killed, restarted and repaired."""
    root = Path(tempfile.mkdtemp(prefix="rumor-durability-"))
    cluster = Cluster(root)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    try:
        async with httpx.AsyncClient(timeout=5.0, limits=limits) as client:
            nodes = [
                cluster.add(f"c{i}", "--durability", mode, "--log-level", "warning")
                for i in (1, 2, 3)
            ]
            cluster.wait_ready()
            cluster.wait_members({"c1", "c2", "c3"})
            victim = nodes[0]
            acked, load_s = await load_until_killed(
                victim, rate, concurrency, rng.uniform(1.5, 3.0)
            )
            victim.stop()
            victim.start()
            await wait_healthy(client, victim)
            lost = len(acked - await stored_keys(client, victim))
            deadline = time.monotonic() + REPAIR_WAIT_S
            missing = acked - await stored_keys(client, victim)
            while missing and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                missing -= await stored_keys(client, victim)
            everywhere = set(missing)
            for peer in nodes[1:]:
                everywhere -= await stored_keys(client, peer)
        return Round(mode, len(acked), lost, load_s, len(missing), len(everywhere))
    finally:
        cluster.close()
        shutil.rmtree(root, ignore_errors=True)


def summary(rounds: list[Round], mode: str) -> str:
    mine = [r for r in rounds if r.mode == mode]
    lost = [r.lost for r in mine]
    line = (
        f"{mode:6}: lost per crash {lost} (mean {statistics.mean(lost):.1f}, max {max(lost)}) "
        f"of ~{statistics.mean(r.acknowledged for r in mine):.0f} acknowledged per round "
        f"at {statistics.mean(r.rate for r in mine):.0f} writes/s"
    )
    if mine[0].lost_after_repair is not None:
        after = [r.lost_after_repair for r in mine]
        everywhere = [r.lost_everywhere for r in mine]
        line += f"; after repair {after}; on every node {everywhere}"
    return line


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="crashes per mode")
    parser.add_argument("--rate", type=int, default=2000, help="offered writes per second")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--modes", default="batch,sync", help="batch, sync, memory")
    parser.add_argument(
        "--nodes", type=int, choices=(1, 3), default=1, help="3: the crashed node has peers"
    )
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    modes = args.modes.split(",")
    rounds: list[Round] = []
    for n in range(args.rounds):
        for mode in modes:
            run = one_round if args.nodes == 1 else cluster_round
            result = await run(mode, args.rate, args.concurrency, rng)
            rounds.append(result)
            print(
                f"round {n + 1} {mode}: {result.acknowledged} acknowledged in "
                f"{result.load_s:.2f} s ({result.rate:.0f}/s), {result.lost} lost"
                + (
                    ""
                    if result.lost_after_repair is None
                    else f", {result.lost_after_repair} after repair, "
                    f"{result.lost_everywhere} on every node"
                ),
                flush=True,
            )
    for mode in modes:
        print(summary(rounds, mode))


if __name__ == "__main__":
    asyncio.run(main())
