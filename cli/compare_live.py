"""The live side of ``rumor sim compare``: a scenario on a local cluster, observed from outside.

The cluster is started as ``rumor cluster up`` starts one (``cli.cluster.spawn_node``:
loopback, ``--allow-faults``, fresh data directories, the scenario's gossip settings as
``RUMOR_*`` variables, and ``--durability``: ``batch`` unless asked, since the simulator
models no disk and ``sync`` puts the fsync of a shared disk into every write), on free
ports. One asyncio driver then, from one instant ``t0``:

* issues the scenario's ``OpStream`` (the simulator's workload, same seed) over HTTP, each
  operation as a task started at its instant (so a slow answer delays nothing else), and
  notes each acknowledged version ``(hlc, origin)`` and when its answer came;
* applies the fault timeline at its instants: partitions and link loss through each
  node's ``POST /faults`` (direct HTTP, bodies built in advance), heal with ``DELETE
  /faults``, crash as SIGKILL, restart as a new process on the same port and data (the
  fault clears when that node answers again);
* watches every node (``GET /kv?watch=true``): the instant each version is applied
  where (the node's ``applied_us``: its wall clock, which every node here shares with
  the driver, so the stream's delivery and the driver's own loop are not in the lag;
  how late the lines came is kept apart, ``delivery_s``);
* samples every node's ``/metrics`` gossip counters (messages and sealed bytes out);
* counts membership transitions from the nodes' logs (``member_state`` lines), and with
  ``loop_monitor_ms`` the loop turns each node logged as busy (``loop_busy``: its loop
  monitor, ``--loop-monitor-ms``: CPU and wall time of turns of that much CPU or more);
* takes the CPU the nodes' processes used from ``t0`` to the end (a crashed process's
  up to its crash, a restarted one's from when it serves) and its own: what the
  simulator's service model charges its loops is set beside it.

``Observed`` holds the raw observations; ``cli.compare_figures`` turns them into figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from rumordb.cli import credentials
from rumordb.cli.cluster import (
    ClusterState,
    NodeProcess,
    reap,
    spawn_node,
    stop_nodes,
    wait_until_joined,
)
from rumordb.core import InvalidContext, decode_context
from rumordb.core.hlc import physical_ms
from rumordb.sim.scenario import FaultSpec, Scenario
from rumordb.sim.workload import Op, OpStream

JOIN_WAIT_S = 60.0
SAMPLE_S = 0.25  # /metrics sampling interval
_COUNTER = re.compile(rb'^rumor_gossip_(messages|bytes)_total\{direction="out"\} (\S+)$', re.M)
# A node logs ``member_state`` with the new state, as JSON or as key=value text.
_BUSY = re.compile(r'"cpu_ms": ([\d.]+), "wall_ms": ([\d.]+).*"event": "loop_busy"')
_TRANSITION = re.compile(r'member_state\b.*?\bnew=(\w+)|"new": "(\w+)".*"event": "member_state"')


Arrival = tuple[float, str, str, int, str]  # t (since t0), node, key, hlc, origin


@dataclass
class Observed:
    """What the driver saw, in seconds since ``t0`` (the workload's and faults' zero)."""

    nodes: list[str]
    # t (the origin's write instant: its HLC's physical part), key, hlc, origin
    acks: list[tuple[float, str, int, str]] = field(default_factory=list)
    arrivals: list[Arrival] = field(default_factory=list)
    traffic: list[tuple[float, int, int]] = field(default_factory=list)  # t, messages, bytes
    transitions: Counter[str] = field(default_factory=Counter)
    loop_busy: list[tuple[float, float]] = field(default_factory=list)  # cpu, wall ms
    events: list[dict[str, Any]] = field(default_factory=list)  # faults as applied
    failed_ops: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # why, for the report
    ack_rtt_s: list[float] = field(default_factory=list)  # request sent -> answer read
    delivery_s: list[float] = field(default_factory=list)  # applied -> its watch line read
    fault_lateness_s: list[float] = field(default_factory=list)  # applied minus scheduled
    end_s: float = 0.0
    node_cpu_s: float = 0.0  # CPU of every node process, from t0 to the end
    driver_cpu_s: float = 0.0  # this driver's own CPU over the same time


def timed(
    node_id: str, event: dict[str, Any], read_s: float, wall0: float
) -> tuple[Arrival, float | None]:
    """A watch stream's change ``event`` as an arrival at the instant its node applied
    it (``applied_us``), and how much later its line was read here (``read_s``, since
    ``t0`` on the wall clock: the stream's and this loop's share). From a node too old
    to say: the arrival at ``read_s``, and None."""
    applied_us = event.get("applied_us")
    at_s, late_s = read_s, None
    if isinstance(applied_us, int):
        at_s = applied_us / 1e6 - wall0
        late_s = read_s - at_s
    return (at_s, node_id, event["key"], event["hlc"], event["origin"]), late_s


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def settings_env(scenario: Scenario, durability: str, loop_monitor_ms: int = 0) -> dict[str, str]:
    g = scenario.gossip
    values = {
        "fanout": g.fanout,
        "direct_mail_max": g.direct_mail_max,
        "gossip_interval_ms": g.interval_ms,
        "anti_entropy_interval_ms": g.anti_entropy_interval_ms,
        "probe_interval_ms": g.probe_interval_ms,
        "suspicion_mult": g.suspicion_mult,
        "retransmit_mult": g.retransmit_mult,
        "log_level": "info",
        "durability": durability,
        "loop_monitor_ms": loop_monitor_ms,
    }
    return {f"RUMOR_{name.upper()}": str(value) for name, value in values.items()}


class LiveCluster:
    """The nodes of one live run; ``close`` stops every process it started."""

    def __init__(
        self, scenario: Scenario, root: Path, durability: str = "batch", loop_monitor_ms: int = 0
    ) -> None:
        self.scenario = scenario
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.secrets, _ = credentials.load_or_create(root)
        self.state = ClusterState(
            scenario.cluster.sharding, scenario.cluster.replicas, self.secrets.discovery_port, []
        )
        self.nodes: dict[str, NodeProcess] = {}
        self._env = settings_env(scenario, durability, loop_monitor_ms)

    def start(self) -> None:
        for node_id in self.scenario.node_ids:
            self.nodes[node_id] = self._spawn(node_id, free_tcp_port())
        wait_until_joined(list(self.nodes.values()), self.secrets.reader_key, JOIN_WAIT_S)

    def _spawn(self, node_id: str, port: int) -> NodeProcess:
        return spawn_node(node_id, port, self.root, self.secrets, self.state, self._env)

    def kill(self, node_id: str) -> None:
        node = self.nodes[node_id]
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while not reap(node.pid) and time.monotonic() < deadline:
            time.sleep(0.01)

    def restart(self, node_id: str) -> NodeProcess:
        node = self._spawn(node_id, self.nodes[node_id].port)
        self.nodes[node_id] = node
        return node

    def cpu_s(self, node_id: str) -> float:
        """CPU time (user and system, every thread) of the node's process so far."""
        try:
            times = psutil.Process(self.nodes[node_id].pid).cpu_times()
        except psutil.NoSuchProcess:
            return 0.0
        return float(times.user + times.system)

    def log_offsets(self) -> dict[str, int]:
        return {n: Path(p.log).stat().st_size for n, p in self.nodes.items()}

    def transitions_since(self, offsets: dict[str, int]) -> Counter[str]:
        found: Counter[str] = Counter()
        for line in self._lines_since(offsets):
            match = _TRANSITION.search(line)
            state = match and (match.group(1) or match.group(2))
            if state in ("suspect", "dead", "alive"):
                found[state] += 1
        return found

    def busy_since(self, offsets: dict[str, int]) -> list[tuple[float, float]]:
        """The loop turns the nodes logged as busy: (CPU, wall) milliseconds each."""
        found = []
        for line in self._lines_since(offsets):
            match = _BUSY.search(line)
            if match:
                found.append((float(match.group(1)), float(match.group(2))))
        return found

    def _lines_since(self, offsets: dict[str, int]) -> Iterator[str]:
        """Every log line each node wrote after its offset (a restarted node's log goes
        on in the same file)."""
        for node_id, node in self.nodes.items():
            with open(node.log, encoding="utf-8", errors="replace") as log:
                log.seek(offsets.get(node_id, 0))
                yield from log

    def close(self) -> None:
        stop_nodes(list(self.nodes.values()))


class Driver:
    """Runs one scenario against a started ``LiveCluster``."""

    def __init__(self, cluster: LiveCluster) -> None:
        self.cluster = cluster
        self.scenario = s = cluster.scenario
        self.observed = Observed(list(s.node_ids))
        self.up = dict.fromkeys(s.node_ids, True)
        self._ops = OpStream(s.workload, s.node_ids, s.duration_s, s.seed)
        admin = {"Authorization": f"Bearer {cluster.secrets.admin_key}"}
        self.http = httpx.AsyncClient(
            headers=admin, timeout=httpx.Timeout(5.0), trust_env=False,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )  # fmt: skip
        # Faults go over their own connections, opened before t0: no connect (and no
        # queueing behind client writes) at the instant a fault is due.
        self.faults_http = httpx.AsyncClient(headers=admin, timeout=httpx.Timeout(10.0),
                                             trust_env=False)  # fmt: skip
        self.t0 = 0.0
        self.wall0 = 0.0  # time.time() at t0: nodes on this machine share that clock
        self._watch_ready: dict[str, asyncio.Event] = {n: asyncio.Event() for n in s.node_ids}
        self._cpu_from: dict[str, float] = {}  # each node process's CPU when counting began
        self._tasks: set[asyncio.Task[None]] = set()

    def now(self) -> float:
        return asyncio.get_running_loop().time() - self.t0

    def wall(self) -> float:
        """Seconds since t0 on the wall clock the nodes stamp their HLCs with."""
        return time.time() - self.wall0

    async def _until(self, at_s: float) -> None:
        delay = at_s - self.now()
        if delay > 0:
            await asyncio.sleep(delay)

    def url(self, node_id: str) -> str:
        return self.cluster.nodes[node_id].url

    async def run(self) -> Observed:
        loop = asyncio.get_running_loop()
        self.t0 = loop.time() + 3600  # watch arrivals before t0 are set-up traffic
        watchers = [loop.create_task(self._watch(n)) for n in self.scenario.node_ids]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in self._watch_ready.values())), 10)
        await self._each("GET", list(self.scenario.node_ids), path="/health")  # warm up
        offsets = self.cluster.log_offsets()
        self.t0 = loop.time() + 0.2
        self.wall0 = time.time() + 0.2
        self._cpu_from = {n: self.cluster.cpu_s(n) for n in self.scenario.node_ids}
        driver_cpu_s = time.process_time()
        sampler = loop.create_task(self._sample())
        try:
            await asyncio.gather(self._workload(), self._faults())
            await self._until(self.scenario.duration_s)
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=5.0)
        finally:
            self.observed.end_s = self.now()
            for name in list(self._cpu_from):
                self._count_cpu(name)
            self.observed.driver_cpu_s = time.process_time() - driver_cpu_s
            for task in (*watchers, sampler, *self._tasks):
                task.cancel()
            await asyncio.gather(*watchers, sampler, *self._tasks, return_exceptions=True)
            await self.http.aclose()
            await self.faults_http.aclose()
        self.observed.transitions = self.cluster.transitions_since(offsets)
        self.observed.loop_busy = self.cluster.busy_since(offsets)
        return self.observed

    # --- the workload ------------------------------------------------------------------
    async def _workload(self) -> None:
        for op in self._ops:
            await self._until(op.at_s)
            node = self._ops.pick(op, lambda name: self.up[name])
            if node is None or op.kind not in ("put", "delete"):
                self.observed.failed_ops += node is None
                continue
            task = asyncio.get_running_loop().create_task(self._write(node, op))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _write(self, node_id: str, op: Op) -> None:
        url = f"{self.url(node_id)}/kv/{op.key}"
        sent = self.now()
        try:
            if op.kind == "delete":
                response = await self.http.delete(url)
            else:
                headers = {"content-type": "application/octet-stream"}
                if op.conditional:
                    read = await self.http.get(url)
                    if read.status_code == 200 and read.headers.get("etag"):
                        headers["if-match"] = read.headers["etag"]
                response = await self.http.put(url, content=op.value or b"", headers=headers)
        except httpx.HTTPError as exc:
            self._failed(type(exc).__name__)
            return
        if response.status_code not in (200, 201):
            if response.status_code != 404:  # a delete of an absent key is no failure
                self._failed(f"http_{response.status_code}")
            return
        body = response.json()
        hlc = int(body["hlc"])
        # The write's instant is when its origin took it (the HLC's wall-clock part), as
        # in the simulator; the client's answer comes after the commit and our own loop.
        # That part is the clock floored to the millisecond: the middle of its millisecond
        # is the unbiased estimate (the floor read every live lag 0.5 ms long on average).
        written = (physical_ms(hlc) + 0.5) / 1000 - self.wall0
        self.observed.acks.append((written, op.key, hlc, str(body["origin"])))
        self.observed.ack_rtt_s.append(self.now() - sent)

    def _failed(self, why: str) -> None:
        self.observed.failed_ops += 1
        self.observed.failures[why] += 1

    # --- faults --------------------------------------------------------------------------
    async def _faults(self) -> None:
        for fault in sorted(self.scenario.faults, key=lambda f: f.at_s):
            await self._until(fault.at_s)
            await self._apply(fault)
            self.observed.fault_lateness_s.append(self.now() - fault.at_s)

    async def _apply(self, fault: FaultSpec) -> None:
        nodes = list(fault.nodes or [])
        at_s = self.now()
        if fault.action == "partition":
            await self._post_each(self._partition_bodies(fault.groups or []))
        elif fault.action == "heal":
            await self._each("DELETE", [n for n in self.up if self.up[n]])
        elif fault.action == "link":
            if fault.links is not None:
                raise ValueError("live links change every link: `links` must be unset")
            body: dict[str, Any] = {}
            if fault.loss is not None:
                body["loss"] = fault.loss
            if fault.latency_ms is not None:
                body["delay_ms"] = round(fault.latency_ms)
            await self._post_each({n: body for n in self.up if self.up[n]})
        elif fault.action == "crash":
            for name in nodes:
                self.up[name] = False
                self._count_cpu(name)
                await asyncio.to_thread(self.cluster.kill, name)
        elif fault.action == "restart":
            for name in nodes:
                await asyncio.to_thread(self.cluster.restart, name)
            await self._ready(nodes)
            for name in nodes:
                self.up[name] = True
                self._cpu_from[name] = self.cluster.cpu_s(name)  # not its start-up
            at_s = self.now()  # the fault clears when the node serves again
        else:
            raise ValueError(f"compare cannot apply a {fault.action!r} fault live")
        self.observed.events.append({"at_s": at_s, "action": fault.action, "nodes": nodes})

    def _count_cpu(self, node_id: str) -> None:
        """Add what the node's process used since counting began (it stops now)."""
        if node_id in self._cpu_from:
            used_s = self.cluster.cpu_s(node_id) - self._cpu_from.pop(node_id)
            self.observed.node_cpu_s += max(0.0, used_s)

    def _partition_bodies(self, groups: list[list[str]]) -> dict[str, dict[str, Any]]:
        group_of = {node: i for i, group in enumerate(groups) for node in group}
        bodies: dict[str, dict[str, Any]] = {}
        for node in self.scenario.node_ids:
            mine = group_of.get(node, -1)
            others = [n for n in self.scenario.node_ids if group_of.get(n, -1) != mine]
            bodies[node] = {"block": others}
        return bodies

    async def _post_each(self, bodies: dict[str, dict[str, Any]]) -> None:
        await asyncio.gather(
            *(self._fault_request("POST", n, "/faults", json.dumps(b)) for n, b in bodies.items())
        )

    async def _each(self, method: str, nodes: list[str], path: str = "/faults") -> None:
        await asyncio.gather(*(self._fault_request(method, n, path) for n in nodes))

    async def _fault_request(self, method: str, node: str, path: str, body: str = "") -> None:
        """One fault request, retried until the node takes it (it must not be skipped)."""
        headers = {"content-type": "application/json"} if body else {}
        for _ in range(20):
            try:
                response = await self.faults_http.request(
                    method, f"{self.url(node)}{path}", content=body or None, headers=headers
                )
                if response.status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{node} did not take {method} {path}")

    async def _ready(self, nodes: list[str]) -> None:
        deadline = self.now() + JOIN_WAIT_S
        for name in nodes:
            while self.now() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await self.http.get(f"{self.url(name)}/health")).status_code == 200:
                        break
                await asyncio.sleep(0.02)

    # --- observers -----------------------------------------------------------------------
    async def _watch(self, node_id: str) -> None:
        """Every change ``node_id`` applies, with the instant it arrived here."""
        arrivals = self.observed.arrivals
        connected_before = False
        while True:
            try:
                url = f"{self.url(node_id)}/kv?watch=true"
                async with self.http.stream("GET", url, timeout=None) as response:
                    async for line in response.aiter_lines():
                        if not line:
                            continue
                        event = json.loads(line)
                        if event.get("type") == "start":
                            self._watch_ready[node_id].set()
                            if connected_before:  # restarted: what it took meanwhile
                                await self._resync(node_id)
                            connected_before = True
                        elif event.get("type") == "change":
                            arrival, late_s = timed(node_id, event, self.wall(), self.wall0)
                            arrivals.append(arrival)
                            if late_s is not None and arrival[0] >= 0:  # not set-up traffic
                                self.observed.delivery_s.append(late_s)
            except (httpx.HTTPError, json.JSONDecodeError, KeyError):
                pass
            await asyncio.sleep(0.02)  # a crashed node: watch it again once it is back

    async def _resync(self, node_id: str) -> None:
        """The versions a restarted node holds of every key written so far (it may have
        taken some before its watch stream was back), as arrivals now."""
        origins = {(key, hlc): origin for _, key, hlc, origin in self.observed.acks}
        for key in sorted({key for _, key, _, _ in self.observed.acks}):
            try:
                response = await self.http.get(f"{self.url(node_id)}/kv/{key}")
                context = response.headers.get("x-rumor-context")
                if response.status_code != 200 or not context:
                    continue
                hlc = decode_context(context).hlc
            except (httpx.HTTPError, InvalidContext):
                continue
            origin = origins.get((key, hlc), "")
            self.observed.arrivals.append((self.wall(), node_id, key, hlc, origin))

    async def _sample(self) -> None:
        totals: dict[str, tuple[int, int]] = {}
        base: dict[str, tuple[int, int]] = {}  # counts of earlier processes of a node
        first = True
        while True:
            found = await asyncio.gather(
                *(self._counters(n) for n in self.scenario.node_ids if self.up[n])
            )
            for node_id, counts in found:
                if counts is None:
                    continue
                last = totals.get(node_id, (0, 0))
                if counts[0] < last[0]:  # a restarted process counts from zero again
                    old = base.get(node_id, (0, 0))
                    base[node_id] = (old[0] + last[0], old[1] + last[1])
                totals[node_id] = counts
            messages = sum(totals[n][0] + base.get(n, (0, 0))[0] for n in totals)
            sent = sum(totals[n][1] + base.get(n, (0, 0))[1] for n in totals)
            if first:
                self.observed.traffic.append((0.0, messages, sent))
                first = False
            self.observed.traffic.append((self.now(), messages, sent))
            await asyncio.sleep(SAMPLE_S)

    async def _counters(self, node_id: str) -> tuple[str, tuple[int, int] | None]:
        try:
            response = await self.http.get(f"{self.url(node_id)}/metrics")
        except httpx.HTTPError:
            return node_id, None
        values = {kind.decode(): int(float(v)) for kind, v in _COUNTER.findall(response.content)}
        if "messages" not in values:
            return node_id, None
        return node_id, (values["messages"], values.get("bytes", 0))


def run_live(
    scenario: Scenario, root: Path, durability: str = "batch", loop_monitor_ms: int = 0
) -> Observed:
    """One live run of ``scenario`` with its nodes under ``root``; every process stopped."""
    cluster = LiveCluster(scenario, root, durability, loop_monitor_ms)
    try:
        cluster.start()
        return asyncio.run(Driver(cluster).run())
    finally:
        cluster.close()
