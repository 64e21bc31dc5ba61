"""HTTP benchmark of a live node against a bare FastAPI app, side by side in one run.

What issue 4 asks, measured the same way: every server pinned to CPU 0, wrk pinned to
CPU 1, 64 connections, 100-byte values over 1 000 keys, loopback only.

* ``bare``: a plain FastAPI KV app (in-memory dict, the API key from a ``Header()``
  parameter, ``HTTPException`` for errors): the baseline every ratio divides by;
* ``node GET``: GET on one node of a 3-node cluster;
* ``node PUT``: PUT on the same cluster, ``--durability sync``, replication on (each write
  group-committed to SQLite and pushed to both peers before its acknowledgement);
* ack -> visible: at ``--rate`` writes/s for ``--lag-s`` seconds, from a PUT's
  acknowledgement on n1 until *every* other node applied it, taken apart by the nodes'
  applied instants (``bench.lag_figures``: the driver's view, the nodes' own, commit,
  fan-out, watch delivery), with the nodes' CPU per write, their traffic per write and
  how long their event loops waited for a CPU (starvation). ``--nodes 5`` (or 7) runs it
  on a larger cluster; ``--lag-only`` skips the wrk rounds; ``--no-pin`` lets the nodes
  use every CPU; ``--node-arg`` passes a flag to every node (e.g.
  ``--node-arg=--direct-mail-max=0`` for the sampled push, ``--node-arg=--durability=batch``
  to take the fsync out, ``--node-arg=--loop-monitor-ms=5`` to count long loop turns).

Run: ``make bench-http`` (installs wrk if missing) or ``python -m bench.http_bench``.
Figures are printed, never asserted: the machine may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI, Header, HTTPException, Request, Response

from bench.lag_figures import (
    Observed,
    ProcSample,
    cpu_pressure_us,
    lag_figures,
    last_to_apply,
    percentile,
)
from rumordb.live import certs
from rumordb.live.tls import client_context

KEY = "bench-" + os.urandom(8).hex()
SECRET = "bench-secret-" + os.urandom(8).hex()
KEYS = 1000
VALUE = b"v" * 100
POLL_S = 0.002  # ack -> visible resolution
Verify = ssl.SSLContext | bool
RUMOR = str(Path(sys.executable).parent / "rumor")


# --- the baseline ----------------------------------------------------------------------
def create_bare_app() -> FastAPI:
    """The same endpoint shape, the way a FastAPI tutorial would write it."""
    app = FastAPI()
    store: dict[str, tuple[bytes, str]] = {}

    def check(x_api_key: str | None) -> None:
        if x_api_key != os.environ.get("BENCH_KEY", KEY):
            raise HTTPException(status_code=401, detail="bad key")

    @app.get("/kv/{key}")
    async def get(key: str, x_api_key: str | None = Header(default=None)) -> Response:
        check(x_api_key)
        if key not in store:
            raise HTTPException(status_code=404, detail="not found")
        value, content_type = store[key]
        return Response(value, media_type=content_type)

    @app.put("/kv/{key}")
    async def put(
        key: str, request: Request, x_api_key: str | None = Header(default=None)
    ) -> dict[str, str]:
        check(x_api_key)
        created = key not in store
        store[key] = (await request.body(), request.headers.get("content-type", ""))
        return {"key": key, "status": "created" if created else "updated"}

    return app


# --- processes -----------------------------------------------------------------------
def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def pinned(cpu: int, args: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *args] if shutil.which("taskset") else args


def wait_http(url: str, timeout_s: float = 60.0, verify: Verify = True) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0, verify=verify).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


# --- wrk -----------------------------------------------------------------------------
LUA_GET = """
math.randomseed(os.time())
local headers = {["X-API-Key"] = "%(key)s"}
request = function()
  return wrk.format("GET", "/kv/key" .. math.random(0, 999), headers)
end
"""
LUA_PUT = """
math.randomseed(os.time())
local headers = {["X-API-Key"] = "%(key)s", ["Content-Type"] = "application/octet-stream"}
local body = string.rep("v", 100)
request = function()
  return wrk.format("PUT", "/kv/key" .. math.random(0, 999), headers, body)
end
"""


def wrk(url: str, script: str, work: Path, duration_s: int, connections: int) -> dict[str, float]:
    path = work / f"script-{abs(hash(script))}.lua"
    path.write_text(script % {"key": KEY})
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency", "-s", str(path), url]
    out = subprocess.run(pinned(1, args), capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out)
    return {
        "rps": rps,
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
        "p99_ms": _ms(p99.group(1), p99.group(2)) if p99 else float("nan"),
    }


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def populate(url: str, verify: Verify = True) -> None:
    with httpx.Client(timeout=10.0, verify=verify) as client:
        for i in range(KEYS):
            response = client.put(f"{url}/kv/key{i}", content=VALUE, headers={"X-API-Key": KEY})
            response.raise_for_status()


# --- the runs ------------------------------------------------------------------------
def start_bare(work: Path, procs: list[subprocess.Popen[bytes]]) -> str:
    port = free_port("127.0.0.1")
    url = f"http://127.0.0.1:{port}"
    procs.append(
        subprocess.Popen(
            pinned(0, [sys.executable, "-m", "uvicorn", "bench.http_bench:create_bare_app",
                       "--factory", "--host", "127.0.0.1", "--port", str(port),
                       "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                       "--log-level", "warning"]),
            env={**os.environ, "BENCH_KEY": KEY},
        )
    )  # fmt: skip
    wait_http(url + "/docs")
    populate(url)
    return url


def start_cluster(
    work: Path,
    procs: list[subprocess.Popen[bytes]],
    tls_dir: Path | None = None,
    nodes: int = 3,
    node_args: tuple[str, ...] = (),
    pin: bool = True,
) -> list[str]:
    """``nodes`` nodes on 127.0.0.21...; with ``tls_dir``, HTTPS with certificates from its CA.

    ``pin``: every node on CPU 0 (else the scheduler spreads them over every core)."""
    discovery_port = free_udp_port()
    urls = []
    name = "t" if tls_dir else "n"
    for i in range(1, nodes + 1):
        host = f"127.0.0.{20 + i}"
        port = free_port(host)
        tls_args = (
            certs.ensure_node_files(tls_dir, f"{name}{i}", [host]).node_args() if tls_dir else []
        )
        log = open(work / f"{name}{i}.log", "wb")  # noqa: SIM115 - the child owns it
        args = [RUMOR, "node", "--host", host, "--port", str(port),
                "--node-id", f"{name}{i}", "--data-dir", str(work / f"{name}{i}"),
                "--durability", "sync", "--cluster-secret", SECRET,
                "--admin-key", KEY, "--discovery-port", str(discovery_port),
                "--log-level", "warning", *tls_args, *node_args]  # fmt: skip
        procs.append(
            subprocess.Popen(
                pinned(0, args) if pin else args,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        log.close()
        urls.append(f"{'https' if tls_dir else 'http'}://{host}:{port}")
    verify: Verify = client_context(tls_dir / certs.CA_FILE) if tls_dir else True
    for url in urls:
        wait_http(url + "/health", verify=verify)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        views = [
            httpx.get(u + "/cluster", headers={"X-API-Key": KEY}, verify=verify).json()
            for u in urls
        ]
        if all(sum(m["state"] == "alive" for m in v["members"]) == nodes for v in views):
            return urls
        time.sleep(0.2)
    raise RuntimeError("the cluster did not form")


class RawHTTP:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams.

    httpx costs about a millisecond of CPU per request; at 200 writes/s plus polling, the
    load generator itself would become the bottleneck and the figure would measure it.
    This client costs tens of microseconds: the latency measured is the cluster's.
    """

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._all: list[asyncio.StreamWriter] = []

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = ""
    ) -> tuple[int, bytes]:
        if self._idle:
            reader, writer = self._idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self._all.append(writer)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nX-API-Key: {KEY}\r\n"
            + (f"Content-Type: {content_type}\r\n" if content_type else "")
            + f"Content-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        status_line = await reader.readline()
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        payload = await reader.readexactly(length)
        self._idle.append((reader, writer))
        return int(status_line.split()[1]), payload

    async def close(self) -> None:
        for writer in self._all:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def watch_lines(url: str, path: str) -> AsyncIterator[bytes]:
    """The lines of a chunked NDJSON answer (a watch stream), read straight off the socket.

    httpx's line iterator costs the driver about as much CPU per change as the node spends
    sending it; with one stream per node of a 7-node cluster the driver fell behind and
    its own delay became most of the figure. This reads the chunked framing by hand."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {KEY}\r\n\r\n".encode())
        status = await reader.readline()
        if int(status.split()[1]) != 200:
            raise OSError(f"watch answered {status!r}")
        while (await reader.readline()) not in (b"\r\n", b""):
            pass  # the headers: the answer is chunked NDJSON
        pending = b""
        while size := int((await reader.readline()).split(b";")[0], 16):
            pending += (await reader.readexactly(size + 2))[:-2]
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line
    finally:
        writer.close()


async def ack_to_visible(
    urls: list[str], rate: int, duration_s: float, observe: str = "watch"
) -> Observed:
    """Each PUT's ack on urls[0], and its arrival on every node (``bench.lag_figures``).

    ``observe="watch"`` (the default): one watch stream per node, the origin's included
    (``GET /kv?watch=true&prefix=lag``); a node writes each change to it as it applies it,
    so the observation costs the nodes one small write per change, not a request, and
    each change carries the node's ``applied_us``. With ``"poll"``, one poller per
    observer lists the keys written so far every ``POLL_S`` (the measurement used before
    watch existed: at 5+ nodes on one CPU its thousands of listings a second compete with
    the replication it measures; it has no applied instants). Keys are unique per write,
    so seen means replicated. Every instant is the host's wall clock (``applied_us``'s).
    """
    clients = [RawHTTP(url) for url in urls]
    count = int(rate * duration_s)
    observed = Observed(count, len(urls))
    failed = 0
    streams_ready = [asyncio.Event() for _ in urls]

    async def writer() -> None:
        await asyncio.gather(*(ready.wait() for ready in streams_ready))
        start = time.perf_counter()
        puts = []
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            puts.append(asyncio.create_task(put(i)))
        await asyncio.gather(*puts)

    async def put(i: int) -> None:
        nonlocal failed
        status, _ = await clients[0].request("PUT", f"/kv/lag{i:06d}", VALUE)
        if status in (200, 201):
            observed.acked[i] = time.time()
        else:
            failed += 1

    def done(found: dict[int, float]) -> bool:
        return len(found) >= count - failed

    async def poller(client: RawHTTP, found: dict[int, float], ready: asyncio.Event) -> None:
        ready.set()
        deadline = time.perf_counter() + duration_s + 30.0
        oldest = 0
        while not done(found) and time.perf_counter() < deadline:
            while oldest in found:
                oldest += 1
            after = f"lag{oldest - 1:06d}" if oldest else ""
            status, body = await client.request("GET", f"/kv?prefix=lag&after={after}&limit=1000")
            now = time.time()
            if status == 200:
                for key in json.loads(body)["keys"]:
                    found.setdefault(int(key[3:]), now)
            await asyncio.sleep(POLL_S)

    async def watcher(n: int, ready: asyncio.Event) -> None:
        found, applied = observed.seen[n], observed.applied[n]
        async for line in watch_lines(urls[n], "/kv?watch=true&prefix=lag"):
            event = json.loads(line)
            if event["type"] == "start":
                ready.set()
            elif event["type"] == "change":
                i = int(event["key"][3:])
                found.setdefault(i, time.time())
                applied.setdefault(i, event["applied_us"] / 1e6)
            if done(found) and len(observed.acked) + failed >= count:
                return

    async def observer(n: int) -> None:
        if observe == "poll":
            if n:  # the origin's applied instants come from watch only
                await poller(clients[n], observed.seen[n], streams_ready[n])
            streams_ready[n].set()
            return
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
            await asyncio.wait_for(watcher(n, streams_ready[n]), duration_s + 30.0)
        streams_ready[n].set()

    async def observers() -> None:
        await asyncio.gather(*(observer(n) for n in range(len(urls))))

    try:
        watching = asyncio.create_task(observers())
        await writer()
        deadline = time.perf_counter() + 30.0
        while (
            not all(done(found) for found in observed.seen[1:]) and time.perf_counter() < deadline
        ):
            await asyncio.sleep(0.05)
        if observe == "watch":  # the origin's stream too, for its applied instants
            while not done(observed.seen[0]) and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
    finally:
        for client in clients:
            await client.close()
    return observed


Results = dict[str, list[dict[str, float]]]


@dataclass(frozen=True)
class Cluster:
    nodes: int = 3
    node_args: tuple[str, ...] = ()
    pin: bool = True  # every node on CPU 0 (else wherever the scheduler puts them)


@dataclass
class LagRun:
    """One lag phase: what the driver observed, and the CPU the processes had meanwhile."""

    observed: Observed
    wall_s: float
    nodes: list[ProcSample]  # deltas over the phase, n1 first
    driver: ProcSample
    pressure_us: int | None  # PSI cpu "some" over the phase (None without PSI)
    load: tuple[float, float, float]  # os.getloadavg() at the end
    began_mono: float  # the phase's span on the host's monotonic clock
    ended_mono: float
    sent: dict[str, float]  # ``TRAFFIC`` over the phase
    busy_turns: list[dict[str, float]]  # ``loop_busy`` lines in the span (``--loop-monitor-ms``)


TRAFFIC = {  # what a lag phase counts of the nodes' traffic (sums over every node)
    "posts": "rumor_gossip_posts_total",
    "messages": 'rumor_gossip_messages_total{direction="out"}',
    "bytes": 'rumor_gossip_bytes_total{direction="out"}',
}


def traffic(urls: list[str]) -> dict[str, float]:
    """``TRAFFIC`` summed over the nodes' ``/metrics`` (posts, replies and rounds alike)."""
    totals = dict.fromkeys(TRAFFIC, 0.0)
    for url in urls:
        text = httpx.get(url + "/metrics", headers={"X-API-Key": KEY}, timeout=10.0).text
        for line in text.splitlines():
            for name, sample in TRAFFIC.items():
                if line.startswith(sample + " "):
                    totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


def lag_phase(
    urls: list[str], pids: list[int], rate: int, duration_s: float, observe: str
) -> LagRun:
    """``ack_to_visible`` with /proc samples of the nodes and the driver around it, and
    the nodes' traffic counters."""
    me = os.getpid()
    traffic_before = traffic(urls)
    nodes_before, driver_before = [ProcSample.read(p) for p in pids], ProcSample.read(me)
    pressure_before, began = cpu_pressure_us(), time.monotonic()
    observed = asyncio.run(ack_to_visible(urls, rate, duration_s, observe))
    wall_s = time.monotonic() - began
    pressure_after = cpu_pressure_us()
    sent = {k: v - traffic_before[k] for k, v in traffic(urls).items()}
    nodes = [ProcSample.read(p).since(b) for p, b in zip(pids, nodes_before, strict=True)]
    pressure = None if pressure_before is None or pressure_after is None else pressure_after - pressure_before  # fmt: skip
    return LagRun(observed, wall_s, nodes, ProcSample.read(me).since(driver_before), pressure,
                  os.getloadavg(), began, began + wall_s, sent, [])  # fmt: skip


def busy_turns(log: Path) -> list[dict[str, float]]:
    """The CPU and wall ms of each ``loop_busy`` line a node logged (``live.loop_monitor``)."""
    turns = []
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        if '"loop_busy"' in line:
            with contextlib.suppress(ValueError, KeyError):
                event = json.loads(line)
                turns.append({k: event[k] for k in ("cpu_ms", "wall_ms", "mono")})
    return turns


def bench_rounds(
    work: Path,
    duration_s: int,
    connections: int,
    rounds: int,
    rate: int,
    cluster: Cluster,
    observe: str = "watch",
    lag_s: float = 5.0,
) -> tuple[Results, LagRun, int]:
    """Both servers stay up; their wrk runs alternate, so a noisy moment hits both alike."""
    runs: Results = {name: [] for name in ("bare GET", "bare PUT", "node GET", "node PUT")}
    with processes() as procs:
        bare = start_bare(work, procs) if rounds else ""
        first = len(procs)
        urls = start_cluster(work, procs, nodes=cluster.nodes, node_args=cluster.node_args,
                             pin=cluster.pin)  # fmt: skip
        pids = [proc.pid for proc in procs[first:]]  # taskset execs: the nodes' own pids
        populate(urls[0])
        for _ in range(rounds):
            runs["bare GET"].append(wrk(bare, LUA_GET, work, duration_s, connections))
            runs["node GET"].append(wrk(urls[0], LUA_GET, work, duration_s, connections))
            runs["bare PUT"].append(wrk(bare, LUA_PUT, work, duration_s, connections))
            runs["node PUT"].append(wrk(urls[0], LUA_PUT, work, duration_s, connections))
        if hasattr(os, "sched_setaffinity"):  # the load generator takes wrk's CPU
            os.sched_setaffinity(0, {1})
        lag = lag_phase(urls, pids, rate, lag_s, observe)
    logs = [(work / f"n{i}.log").read_bytes() for i in range(1, cluster.nodes + 1)]
    log_errors = sum(line.count(b'"level": "error"') for log in logs for line in log.splitlines())
    lag.busy_turns = [
        turn
        for i in range(1, cluster.nodes + 1)
        for turn in busy_turns(work / f"n{i}.log")
        if lag.began_mono <= turn["mono"] <= lag.ended_mono
    ]
    return runs, lag, log_errors


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median throughput (its p99 and error counts come along)."""
    return sorted(runs, key=lambda run: run["rps"])[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=int, default=200, help="writes/s for ack -> visible")
    parser.add_argument(
        "--lag-s", type=float, default=5.0, help="seconds of writes for ack -> visible"
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating wrk runs per server")
    parser.add_argument("--nodes", type=int, default=3, help="cluster size (up to 9)")
    parser.add_argument("--lag-only", action="store_true", help="only ack -> visible")
    parser.add_argument("--no-pin", action="store_true", help="nodes on any CPU, not all on CPU 0")
    parser.add_argument("--node-arg", action="append", default=[], help="flag for every node")
    parser.add_argument("--observe", choices=("watch", "poll"), default="watch",
                        help="how ack -> visible sees a key arrive on the other nodes")  # fmt: skip
    args = parser.parse_args()
    if not 2 <= args.nodes <= 9:
        sys.exit("--nodes must be 2..9")
    if args.lag_only:
        args.rounds = 0
    elif shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk (make bench-http does it)")
    cluster = Cluster(args.nodes, tuple(args.node_arg), pin=not args.no_pin)
    with tempfile.TemporaryDirectory(prefix="rumor-bench-") as tmp:
        runs, lag, log_errors = bench_rounds(
            Path(tmp), args.duration, args.connections, args.rounds, args.rate, cluster,
            args.observe, args.lag_s,
        )  # fmt: skip
    if args.rounds:
        print_wrk(runs, args)
    print_lag(lag, args)
    print(f"error lines in the node logs: {log_errors}")


def print_wrk(runs: Results, args: argparse.Namespace) -> None:
    print(f"\nHTTP benchmark: servers on CPU 0, wrk on CPU 1, {args.connections} connections, "
          f"{args.duration} s x {args.rounds} alternating rounds, 100-byte values over {KEYS} "
          f"keys (cpus: {os.cpu_count()}); medians, and every round's ratio")  # fmt: skip
    print(f"{'run':<34}{'req/s':>10}{'p99 ms':>10}{'non-2xx':>10}{'ratio':>8}  rounds")
    rows = [
        ("bare FastAPI GET", "bare GET", "bare GET"),
        ("bare FastAPI PUT", "bare PUT", "bare PUT"),
        (f"node GET ({args.nodes}-node cluster)", "node GET", "bare GET"),
        (f"node PUT (sync, replicated x{args.nodes})", "node PUT", "bare PUT"),
    ]
    for name, kind, base in rows:
        result, baseline = median_run(runs[kind]), median_run(runs[base])
        per_round = " ".join(
            f"{run['rps'] / ref['rps']:.2f}"
            for run, ref in zip(runs[kind], runs[base], strict=True)
        )
        print(f"{name:<34}{result['rps']:>10.0f}{result['p99_ms']:>10.1f}"
              f"{sum(r['non2xx'] for r in runs[kind]):>10.0f}"
              f"{result['rps'] / baseline['rps']:>7.2f}x  {per_round}")  # fmt: skip


LAG_ROWS = (
    ("driver", "ack read -> change read on all (driver)"),
    ("nodes", "ack read -> applied on all (applied_us)"),
    ("cluster", "applied on n1 -> applied on all"),
    ("first", "applied on n1 -> applied on the first other"),
    ("spread", "applied on the first other -> on the last"),
    ("commit", "applied on n1 -> ack read (commit, answer)"),
    ("delivery", "applied -> read by the driver (watch)"),
)


def print_lag(lag: LagRun, args: argparse.Namespace) -> None:
    """Ack -> visible taken apart (``bench.lag_figures``), then the CPU each process had."""
    figures = lag_figures(lag.observed)
    where = "all on CPU 0" if not args.no_pin else "unpinned"
    print(f"\nack -> visible on all {args.nodes - 1} other nodes ({args.observe}), {args.rate} "
          f"writes/s, {lag.observed.count} writes, nodes {where}, driver on CPU 1; "
          f"never visible {len(figures['never'])}")  # fmt: skip
    print(f"  {'ms':<46}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'mean':>8}")
    for name, label in LAG_ROWS:
        values = figures[name]
        if not values:
            continue
        cells = "".join(f"{percentile(values, q):>8.1f}" for q in (0.5, 0.9, 0.99, 1.0))
        print(f"  {label:<46}{cells}{statistics.fmean(values):>8.1f}")
    if figures["cluster"]:
        last = last_to_apply(lag.observed, 0.01)
        print("  last to apply, slowest 1% (cluster): "
              + ", ".join(f"n{n + 1} x{k}" for n, k in sorted(last.items())))  # fmt: skip
    print_cpu(lag, any("--loop-monitor-ms" in arg for arg in args.node_arg))


def print_cpu(lag: LagRun, monitored: bool) -> None:
    """What part of the lag the CPU explains: the nodes' CPU per write, and how long their
    event loops (main threads) waited for a CPU while runnable (``schedstat``'s run delay:
    none on an idle machine; compare it between runs, as a Firecracker guest's kernel was
    seen to count more of it than the wall time for a thread of a busy process)."""
    wall, writes = lag.wall_s, max(1, lag.observed.count)
    cpu = sum(n.cpu_s for n in lag.nodes)
    pressure = (
        "" if lag.pressure_us is None else f", PSI cpu some {lag.pressure_us / 1e4 / wall:.0f}%"
    )
    print(f"CPU over the lag phase ({wall:.1f} s, load {' '.join(f'{x:.1f}' for x in lag.load)}"
          f"{pressure}):")  # fmt: skip
    print(f"  nodes: {cpu * 1000 / writes:.2f} ms CPU per write (all nodes), "
          f"{cpu / wall:.0%} of a core")  # fmt: skip
    sent = lag.sent
    print(f"  node-to-node per write: {sent['posts'] / writes:.2f} posts, "
          f"{sent['messages'] / writes:.2f} messages, {sent['bytes'] / writes:.0f} bytes "
          f"(every node's, gossip rounds and replies included)")  # fmt: skip
    for i, n in enumerate(lag.nodes):
        print(f"    n{i + 1}: loop on CPU {n.run_s / wall:.0%}, runnable but waiting {n.wait_s / wall:.0%} "
              f"of the wall time, {n.wait_per_slice_ms():.2f} ms per wake-up ({n.slices} wake-ups)")  # fmt: skip
    d = lag.driver
    print(f"  driver: on CPU {d.run_s / wall:.0%}, waited {d.wait_s / wall:.0%}, "
          f"{d.wait_per_slice_ms():.2f} ms per wake-up")  # fmt: skip
    if monitored:
        worst = max(lag.busy_turns, key=lambda t: t["cpu_ms"], default=None)
        longest = f", longest {worst['cpu_ms']:.1f} ms CPU ({worst['wall_ms']:.1f} ms wall)" if worst else ""  # fmt: skip
        print(f"  loop turns over --loop-monitor-ms, all nodes: {len(lag.busy_turns)}{longest}")


if __name__ == "__main__":
    main()
