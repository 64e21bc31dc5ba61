"""Many keys per node: memory, write cost, scans, restarts and event-loop stalls of 3 loopback nodes.

For each N (``VOLUME_KEYS``, default 100 000 and 1 000 000; 10 000 000 on request) the
bench starts three empty ``rumor node`` processes on loopback, loads N records of 100
bytes into one of them through the batch path (``POST /kv``, MessagePack batches of
1 000 items, a few in flight; pushes replicate them to the others) and reports:

* ``load_s``: the load (every batch answered), ``replicated_s``: until every node holds
  the N keys (None: not within 20 minutes);
* ``rss_mib`` per node and ``bytes_per_key`` (RSS over N) once every digest is folded,
  and ``bytes_per_key_over_10k``: the RSS slope against the 10 000-key cluster;
* ``writes_per_s``: PUTs of random new keys (``WRITE_S`` seconds, 32 in flight) on one
  node, against the same figure on a 10 000-key cluster measured in the same run;
* ``scan_s``: paging through every key with ``GET /kv?limit=1000``;
* restart: node 1 stopped (SIGTERM), 1 % more keys written to node 2 meanwhile, node 1
  started again: ``restart_first_read_s`` from the process start to its first answered
  GET of a stored key, ``restart_health_ok_s`` to ``/health`` ok, ``repair_s`` from
  then until it holds every key.

The stall probe: a separate process (so the bench's own work never delays it) GETs a
random stored key of each node every 10 ms throughout and logs each answer. Per phase
(``load``, ``idle`` (anti-entropy over full digests), ``scan``, ``restart`` (start to
``/health`` ok), ``repair`` (to every key held, plus ``SETTLE_S``)) and node, the table
shows the answers, the p99 and max latency and the longest gap between two answers (a
stalled node answers late and also starts the next probe late). A node that is down
has no answers: its gaps count from its first answer in the phase. Beside the wall
figures, each node's loop monitor (``live.loop_monitor``, ``VOLUME_MONITOR_MS``, default
20) logs every loop turn of that much CPU time, which holds on a loaded machine where
wall latencies do not: ``busy_ms`` is the phase's longest turn (CPU ms), ``busy_gc_ms``
the garbage collection in it (wall ms), ``busy_50`` the turns of 50 ms or more, and
``where`` the stack sampled most often in the longest one. Figures only:
nothing is asserted. Run: ``make bench-volume``, ``VOLUME_KEYS=100000 make bench-volume``
for a quick check (a comma-separated list works too).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
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
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psutil

RUMOR = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "rumor")
VALUE_BYTES = 100
LOAD_BATCH = 1000
LOAD_IN_FLIGHT = 3
WRITE_S = 3.0
WRITE_CONCURRENCY = 32
PROBE_INTERVAL_S = 0.01
IDLE_S = 10.0  # full digests, anti-entropy every second
SETTLE_S = 5.0  # after the repair: a few more anti-entropy intervals
REFERENCE_KEYS = 10_000
MISSED_SHARE = 0.01  # keys written while the restarted node is down
MSGPACK = {"Content-Type": "application/msgpack"}
# Each node logs every loop turn of at least this much CPU (``live.loop_monitor``); the
# table shows each phase's longest turn (``busy_ms``) and the stack sampled in it.
MONITOR_MS = int(os.environ.get("VOLUME_MONITOR_MS", "20"))


def _key(i: int) -> str:
    return f"vol/{(i * 0x9E3779B97F4A7C15) & (2**64 - 1):016x}"  # spread, not sorted


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
        env["RUMOR_LOOP_MONITOR_MS"] = str(MONITOR_MS)
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
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def rss_mib(self) -> list[float]:
        return [round(psutil.Process(p.pid).memory_info().rss / 2**20, 1) for p in self.procs.values()]  # fmt: skip


# --- the stall probe (its own process) -------------------------------------------------
async def _probe_node(client: httpx.AsyncClient, node: int, url: str, keys: int) -> None:
    rng = random.Random(node)
    out = sys.stdout
    while True:
        began = time.monotonic()
        try:
            status = (await client.get(f"{url}/kv/{_key(rng.randrange(keys))}")).status_code
        except httpx.HTTPError:
            status = 0
        ended = time.monotonic()
        out.write(f"{node} {began:.6f} {ended:.6f} {status}\n")
        await asyncio.sleep(max(0.0, PROBE_INTERVAL_S - (ended - began)))


async def _probe_main(api_key: str, keys: int, urls: list[str]) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(headers=headers, timeout=30.0, trust_env=False) as client:
        await asyncio.gather(*(_probe_node(client, i, url, keys) for i, url in enumerate(urls)))


class StallProbe:
    """The probe process; ``phase`` marks time spans, ``table`` cuts its log by them."""

    def __init__(self, root: Path, cluster: Cluster, keys: int) -> None:
        self.path = root / "probe.log"
        self.phases: list[tuple[str, float, float]] = []
        self._opened: tuple[str, float] | None = None
        argv = [sys.executable, "-m", "bench.volume_bench", "probe", str(keys)]
        argv += [cluster.url(i) for i in range(len(cluster.hosts))]
        env = {**os.environ, "VOLUME_PROBE_KEY": cluster.key}
        with self.path.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, env=env, cwd=Path(__file__).parents[1])

    def phase(self, name: str | None) -> None:
        """Close the open phase (if any) and open ``name`` (None: none)."""
        now = time.monotonic()
        if self._opened is not None:
            self.phases.append((self._opened[0], self._opened[1], now))
        self._opened = None if name is None else (name, now)

    def stop(self) -> None:
        self.phase(None)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def answers(self) -> Iterator[tuple[int, float, float, int]]:
        for line in self.path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:
                yield int(parts[0]), float(parts[1]), float(parts[2]), int(parts[3])

    def table(self) -> list[dict[str, object]]:
        answers = list(self.answers())
        rows: list[dict[str, object]] = []
        for name, start, end in self.phases:
            for node in sorted({a[0] for a in answers}):
                mine = [a for a in answers if a[0] == node and start <= a[1] < end]
                turns = [t for t in busy_turns(self.path.parent / f"n{node + 1}.log") if start <= t["mono"] < end]  # fmt: skip
                rows.append({"phase": name, "node": f"n{node + 1}", **phase_stats(mine), **busy_stats(turns)})  # fmt: skip
        return rows


def busy_turns(log: Path) -> list[dict[str, Any]]:
    """The ``loop_busy`` lines a node logged (``live.loop_monitor``)."""
    turns = []
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        if '"loop_busy"' in line:
            with contextlib.suppress(ValueError):
                turns.append(json.loads(line))
    return turns


def busy_stats(turns: list[dict[str, Any]]) -> dict[str, object]:
    """The longest loop turn (CPU ms), how many reached 50 ms, and where the longest was."""
    worst = max(turns, key=lambda t: t["cpu_ms"], default=None)
    where = ""
    if worst is not None and worst["stacks"]:
        stack = Counter(tuple(s) for s in worst["stacks"]).most_common(1)[0][0]
        where = " < ".join(f.rsplit(":", 1)[0].removeprefix("rumordb.") for f in stack[:4])
    return {
        "busy_ms": worst["cpu_ms"] if worst else 0,
        "busy_gc_ms": worst["gc_ms"] if worst else 0,
        "busy_50": sum(t["cpu_ms"] >= 50 for t in turns),
        "where": where,
    }


def phase_stats(answers: list[tuple[int, float, float, int]]) -> dict[str, object]:
    answered = [a for a in answers if a[3] > 0]  # 404 too: a key not loaded yet
    latencies = sorted((a[2] - a[1]) * 1000 for a in answered)
    ends = [a[2] for a in answered]
    gaps = [(b - a) * 1000 for a, b in itertools.pairwise(ends)]
    return {
        "probes": len(answers),
        "ok": sum(a[3] == 200 for a in answered),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1)
        if latencies
        else None,
        "max_ms": round(latencies[-1], 1) if latencies else None,
        "gap_ms": round(max(gaps), 1) if gaps else None,
    }


def print_table(rows: list[dict[str, object]]) -> None:
    columns = ["phase", "node", "probes", "ok", "p99_ms", "max_ms", "gap_ms", "busy_ms", "busy_gc_ms", "busy_50"]  # fmt: skip
    print(" ".join(f"{c:>8}" for c in columns), "  where (the longest turn)")
    for row in rows:
        print(" ".join(f"{row[c]!s:>8}" for c in columns), " ", row["where"])


# --- the workload ----------------------------------------------------------------------
async def load(client: httpx.AsyncClient, url: str, first: int, count: int) -> None:
    """``count`` records from key ``first`` on, through ``POST /kv`` batches."""
    rng = random.Random(first)
    encode = msgspec.msgpack.Encoder().encode
    starts = iter(range(first, first + count, LOAD_BATCH))

    async def sender() -> None:
        for start in starts:
            end = min(first + count, start + LOAD_BATCH)
            items = [
                {"op": "put", "key": _key(i), "value": rng.randbytes(VALUE_BYTES)}
                for i in range(start, end)
            ]
            for _ in range(600):  # 503 overloaded (the batch, or items): retry a moment later
                reply = await client.post(
                    f"{url}/kv", content=encode({"items": items}), headers=MSGPACK
                )
                if reply.status_code == 200:
                    # an item refused 503 (writes paused: the clock watch, a failed commit)
                    results = msgspec.msgpack.decode(reply.content)["results"]
                    items = [it for it, r in zip(items, results, strict=True) if r["status"] == 503]  # fmt: skip
                    if not items:
                        break
                elif reply.status_code != 503:
                    break
                await asyncio.sleep(0.05)
            reply.raise_for_status()
            if reply.status_code == 200 and items:
                raise RuntimeError(f"{len(items)} items still refused after retries")

    await asyncio.gather(*(sender() for _ in range(LOAD_IN_FLIGHT)))


async def key_count(client: httpx.AsyncClient, url: str) -> int:
    try:
        reply = await client.get(f"{url}/cluster")
    except httpx.HTTPError:
        return -1
    return int(reply.json()["keys"]) if reply.status_code == 200 else -1


async def wait_for(check: object, timeout_s: float = 1200.0, step_s: float = 0.01) -> float:
    """Poll ``check`` (an async callable) until truthy; returns the seconds it took."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if await check():  # type: ignore[operator]
            return time.monotonic() - began
        await asyncio.sleep(step_s)
    raise TimeoutError(f"not done within {timeout_s} s")


async def holds(client: httpx.AsyncClient, cluster: Cluster, nodes: range, keys: int) -> bool:
    counts = [await key_count(client, cluster.url(i)) for i in nodes]
    return all(c >= keys for c in counts)


async def answers(client: httpx.AsyncClient, url: str, path: str, want: str = "") -> bool:
    try:
        reply = await client.get(url + path)
    except httpx.HTTPError:
        return False
    return reply.status_code == 200 and (not want or reply.json().get("status") == want)


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
    probe: StallProbe | None = None
    try:
        headers = {"Authorization": f"Bearer {cluster.key}"}
        async with httpx.AsyncClient(headers=headers, timeout=120.0, trust_env=False) as client:
            for i in range(3):
                cluster.start(i)
            for i in range(3):
                await wait_for(lambda i=i: answers(client, cluster.url(i), "/health", "ok"))
            await wait_for(lambda: holds_members(client, cluster))
            if full:
                probe = StallProbe(root, cluster, keys)
            row: dict[str, object] = {"keys": keys}
            began = time.monotonic()
            if probe:
                probe.phase("load")
            await load(client, cluster.url(0), 0, keys)
            row["load_s"] = round(time.monotonic() - began, 1)
            try:  # the pushes, then anti-entropy for what they dropped
                await wait_for(lambda: holds(client, cluster, range(3), keys), step_s=0.2)
                row["replicated_s"] = round(time.monotonic() - began, 1)
            except TimeoutError:
                row["replicated_s"] = None  # reported, and the phases go on
            if probe:
                probe.phase("idle")
            await asyncio.sleep(IDLE_S)
            rss = cluster.rss_mib()
            row["rss_mib"], row["bytes_per_key"] = rss, round(max(rss) * 2**20 / keys)
            if probe:
                probe.phase(None)
            row["writes_per_s"] = await write_rate(client, cluster.url(0))
            if full and probe:
                row.update(await scan_and_restart(client, cluster, probe, keys))
        return row
    finally:
        if probe is not None:
            probe.stop()
        for i in list(cluster.procs):
            cluster.stop(i)
        shutil.rmtree(root, ignore_errors=True)


async def holds_members(client: httpx.AsyncClient, cluster: Cluster) -> bool:
    for i in range(3):
        try:
            members = (await client.get(f"{cluster.url(i)}/cluster")).json()["members"]
        except (httpx.HTTPError, KeyError, ValueError):
            return False
        if sum(m["state"] == "alive" for m in members) < 3:
            return False
    return True


async def scan_and_restart(
    client: httpx.AsyncClient, cluster: Cluster, probe: StallProbe, keys: int
) -> dict[str, object]:
    row: dict[str, object] = {}
    probe.phase("scan")
    row["scan_s"], row["scanned_keys"] = await scan(client, cluster.url(1))
    probe.phase(None)
    cluster.stop(0)
    missed = max(1, int(keys * MISSED_SHARE))
    await load(client, cluster.url(1), 10 * keys, missed)  # node 1 misses these
    held = await key_count(client, cluster.url(1))  # the N keys, the PUTs and the missed
    probe.phase("restart")
    began = time.monotonic()
    cluster.start(0)
    url = cluster.url(0)
    first_read = asyncio.ensure_future(wait_for(lambda: answers(client, url, f"/kv/{_key(keys // 2)}")))  # fmt: skip
    row["restart_health_ok_s"] = round(await wait_for(lambda: answers(client, url, "/health", "ok")), 2)  # fmt: skip
    row["restart_first_read_s"] = round(await first_read, 2)
    probe.phase("repair")
    began = time.monotonic()
    try:
        await wait_for(lambda: holds(client, cluster, range(1), held), step_s=0.1)
        row["repair_s"] = round(time.monotonic() - began, 2)
    except TimeoutError:
        row["repair_s"] = None
    await asyncio.sleep(SETTLE_S)
    probe.stop()
    row["stalls"] = probe.table()
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
        stalls = row.pop("stalls", [])
        print(json.dumps(row), flush=True)
        print_table(stalls)  # type: ignore[arg-type]
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:2] == ["probe"]:
        signal.signal(signal.SIGTERM, lambda *_: (sys.stdout.flush(), os._exit(0)))
        asyncio.run(_probe_main(os.environ["VOLUME_PROBE_KEY"], int(sys.argv[2]), sys.argv[3:]))
    else:
        asyncio.run(main())
    sys.exit(0)
