"""Measuring the live send path's constants for the simulator (``rumor sim calibrate``).

Framing bytes come from the real encoders: an ``Envelope`` with none, one and two
messages, the seal around a payload, the gossip client's request head.

Service times (``sim.service``: each node's event loop is one server) come from real
requests of three post shapes (one message of one version, ``WIDE`` messages, one
message of ``WIDE`` versions) and a client ``PUT``, in alternating rounds (the machine's
speed swings, so every kind sees the same swings); medians of the rounds are split into
parts per post, per message and per version (``_split``). Two ways:

* ``node_costs_us`` (the default): a node process (batch durability) on loopback. Its CPU
  is read for every thread from ``/proc`` (uvicorn's parsing, the app, the storage
  writer thread), less its idle CPU over the same wall time; the sender's share is this
  process's CPU as the lean gossip path sends (``PooledTransport.round_trip``).
* ``service_costs_us`` (``--in-process``): the real app in this process over
  ``httpx.ASGITransport`` minus a null app that only reads the body (the sender's
  share). No HTTP server, so cheaper than a node pays.

The spread of one post's service time (``service_spread``): the node's CPU for each of
``SPREAD_POSTS`` narrow posts on its own (a node process: its threads' CPU around each
post, after its post-response work, less its idle CPU over that time; in-process: this
process's CPU per post of the real app), as quantiles over their mean.

CPU time, not wall time, so other load on the machine matters less. Two figures are
wall time on purpose: ``commit_cost_us``, one ``sync`` group commit (its fsync) on the
disk under the temporary directory live compare runs use; ``wakeup_us``, how late a
sleeping event loop gets the CPU back, which is what other load does to every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import platform
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import msgspec
from starlette.types import Receive, Scope, Send

from rumordb.core import Record, encode
from rumordb.core.hlc import pack
from rumordb.core.membership import MemberEntry
from rumordb.core.messages import Push, Update
from rumordb.live.app import create_app
from rumordb.live.gossip_client import GOSSIP_PATH, Envelope, post_head, seal_envelope
from rumordb.live.http_transport import PooledTransport
from rumordb.live.settings import Settings
from rumordb.live.storage import Storage
from rumordb.live.wire import Signer

WIDE = 16  # messages per post (versions per message) in the wide rounds
WAKEUP_QUANTILES = 50  # the wake-up distribution's resolution (the 1st to 99th percentile)
SPREAD_POSTS = 300  # posts timed one by one for the service time's spread
SETTLE_S = 0.002  # after a post's answer, for the node's work after it (persist) to end
VALUE_BYTES = 100
STARTUP_POLL_S = 0.005  # how often a starting node is asked whether it serves
HOST = "127.0.0.1:18001"  # a typical loopback netloc, for the head's length


def framing_bytes() -> dict[str, int]:
    """Envelope, seal and head bytes around a post's messages, from the real encoders."""
    encoder = msgspec.msgpack.Encoder()
    body = b"x" * VALUE_BYTES
    empty = len(encoder.encode(Envelope("", [])))
    one = len(encoder.encode(Envelope("", [body])))
    two = len(encoder.encode(Envelope("", [body, body])))
    signer = Signer(secrets.token_urlsafe(16))
    head = post_head(httpx.URL(f"http://{HOST}{GOSSIP_PATH}"), "")
    return {
        "envelope_post_bytes": empty,
        "envelope_message_bytes": two - one - VALUE_BYTES,
        "seal_bytes": len(signer.seal(b"", time.time(), "", "")),
        "http_head_bytes": len(head) + len(b"\r\n\r\n"),
    }


Shape = tuple[int, int, int]  # (messages in a post, versions each, members each)
# narrow; wide in messages, in versions, in membership entries (a live message carries
# its sender's view of every member: ``MEMBERS`` entries of live-length addresses)
SHAPES: tuple[Shape, ...] = ((1, 1, 0), (WIDE, 1, 0), (1, WIDE, 0))
# Last, as the receiver keeps the members it learns (then they are known, as in a
# cluster): narrow posts against posts whose message carries ``WIDE`` entries.
MEMBER_SHAPES: tuple[Shape, ...] = ((1, 1, 0), (1, 1, WIDE))
MEMBERS = "members "  # the key prefix of the member rounds' samples


async def service_costs_us(rounds: int = 9, posts: int = 60) -> dict[str, Any]:
    """Each node's event-loop work, in microseconds of CPU: a received post (per post,
    message, version: the real app minus a null app that only reads the body), a sent
    post (the null app's rounds: seal, HTTP client, transport), a client PUT."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="rumor-calibrate-") as tmp:
        settings = _settings(Path(tmp))
        signer = Signer(str(settings.cluster_secret))
        app = create_app(settings, discovery=False)
        admin = {"Authorization": f"Bearer {settings.admin_key}"}
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://c0", headers=admin
            ) as real,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=_null_app), base_url="http://c0"
            ) as null,
        ):
            samples: dict[tuple[str, str], list[float]] = {}
            counter = itertools.count()
            for _ in range(rounds):  # alternating, so every shape sees the same swings
                for name, http in (("real", real), ("null", null)):
                    for shape in SHAPES:
                        post = partial(_post, http, signer, counter, shape)
                        samples.setdefault((name, str(shape)), []).append(
                            await _cpu_us(post, posts)
                        )
                    put = partial(_put, http, counter)
                    samples.setdefault((name, "put"), []).append(await _cpu_us(put, posts))
            narrow = partial(_post, real, signer, counter, SHAPES[0])
            spread = [await _cpu_us(narrow, 1) for _ in range(SPREAD_POSTS)]
            for _ in range(rounds):
                for name, http in (("real", real), ("null", null)):
                    for shape in MEMBER_SHAPES:
                        post = partial(_post, http, signer, counter, shape)
                        samples.setdefault((name, MEMBERS + str(shape)), []).append(
                            await _cpu_us(post, posts)
                        )
    return {**_split(samples), "service_spread": spread_quantiles(spread)}


def _split(samples: dict[tuple[str, str], list[float]]) -> dict[str, float]:
    """The medians, split into parts per post, per message and per version."""
    cost = {key: statistics.median(values) for key, values in samples.items()}
    narrow, wide_messages, wide_updates = (
        cost[("real", str(shape))] - cost[("null", str(shape))] for shape in SHAPES
    )
    message = max(0.0, (wide_messages - narrow) / (WIDE - 1))
    update = max(0.0, (wide_updates - narrow) / (WIDE - 1))
    bare, wide_members = (
        cost[("real", MEMBERS + str(shape))] - cost[("null", MEMBERS + str(shape))]
        for shape in MEMBER_SHAPES
    )
    member = max(0.0, (wide_members - bare) / WIDE)  # the narrow post carries none
    sent, sent_wide = cost[("null", str(SHAPES[0]))], cost[("null", str(SHAPES[1]))]
    send_message = max(0.0, (sent_wide - sent) / (WIDE - 1))
    return {
        "post_cost_us": round(max(0.0, narrow - message - update), 1),
        "message_cost_us": round(message, 1),
        "update_cost_us": round(update, 1),
        "member_cost_us": round(member, 1),
        "send_post_cost_us": round(max(0.0, sent - send_message), 1),
        "send_message_cost_us": round(send_message, 1),
        "write_cost_us": round(max(0.0, cost[("real", "put")] - cost[("null", "put")]), 1),
    }


def spread_quantiles(costs: list[float]) -> list[float]:
    """``WAKEUP_QUANTILES`` equally spaced quantiles of ``costs`` over their mean (the
    constants are means: CPU per round over its posts, so a draw keeps them on average)."""
    ordered = sorted(max(0.0, cost) for cost in costs)
    mean = statistics.fmean(ordered) if ordered else 0.0
    if mean <= 0:
        return []
    picks = ((i + 0.5) / WAKEUP_QUANTILES for i in range(WAKEUP_QUANTILES))
    return [round(ordered[int(q * len(ordered))] / mean, 3) for q in picks]


async def _cpu_us(job: Callable[[], Awaitable[None]], times: int) -> float:
    """This process's CPU time per run of ``job``, in microseconds."""
    started = time.process_time()
    for _ in range(times):
        await job()
    return (time.process_time() - started) / times * 1e6


async def commit_cost_us(commits: int = 40) -> float:
    """Wall time of one durable group commit (``sync``: one transaction and its fsync)
    of one version, on the disk under the temporary directory live compare runs use."""
    import tempfile

    elapsed: list[float] = []
    with tempfile.TemporaryDirectory(prefix="rumor-calibrate-disk-") as tmp:
        storage = Storage.open(Path(tmp), "sync")
        try:
            stamp = pack(int(time.time() * 1000))
            for i in range(commits):
                record = Record(
                    b"v" * VALUE_BYTES, "text/plain", {"c1": stamp + i}, stamp + i, "c1"
                )
                started = time.perf_counter()
                await storage.persist([(f"k{i}", record)], [])
                elapsed.append(time.perf_counter() - started)
        finally:
            await storage.close()
    return round(statistics.median(elapsed) * 1e6, 1)


async def wakeup_us(samples: int = 400, sleep_s: float = 0.002) -> list[float]:
    """How late a sleeping event loop runs again (``WAKEUP_QUANTILES`` equally spaced
    quantiles, microseconds): the scheduler's delay on the machine at hand, which every
    live node pays when a post, a client or a timer wakes it; ~0.1 ms when idle."""
    loop = asyncio.get_running_loop()
    late: list[float] = []
    for _ in range(samples):
        due = loop.time() + sleep_s
        await asyncio.sleep(sleep_s)
        late.append(max(0.0, loop.time() - due))
    late.sort()
    picks = ((i + 0.5) / WAKEUP_QUANTILES for i in range(WAKEUP_QUANTILES))
    return [round(late[int(q * len(late))] * 1e6, 1) for q in picks]


async def _null_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the request body and answers 204: what the client side alone costs."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _post(
    http: httpx.AsyncClient, signer: Signer, counter: Iterator[int], shape: Shape
) -> None:
    response = await http.post(GOSSIP_PATH, content=_sealed_post(signer, counter, shape, "c0"))
    if response.status_code not in (200, 204):
        raise RuntimeError(f"calibration post refused: {response.status_code} {response.text}")


def _sealed_post(signer: Signer, counter: Iterator[int], shape: Shape, recipient: str) -> bytes:
    """One sealed post from ``c1`` of real ``Push`` messages: ``shape`` = (messages,
    versions each, members each), every version of a new key."""
    messages, versions, member_count = shape
    members = [_member(i) for i in range(member_count)]
    stamp = pack(int(time.time() * 1000))
    value = b"v" * VALUE_BYTES
    updates = []
    for _ in range(messages):
        n = next(counter)
        records = [
            Record(value, "text/plain", {"c1": stamp + i}, stamp + i, "c1") for i in range(versions)
        ]
        batch = [Update(f"k{n}.{i}", r) for i, r in enumerate(records)]
        updates.append(encode(Push("c1", members, batch)))
    return seal_envelope(signer, Envelope("c1", updates), time.time(), recipient)


def _member(index: int) -> MemberEntry:
    """A member as a live node gossips it (an address as long as a local node's); ids
    unlike any real node's, so the receiver learns them once and then only compares."""
    return MemberEntry(f"m{index}", f"http://127.0.0.1:{41000 + index}", 1, 100 + index)


async def _put(http: httpx.AsyncClient, counter: Iterator[int]) -> None:
    """One client write, as the compare driver sends it."""
    headers = {"content-type": "application/octet-stream"}
    response = await http.put(f"/kv/w{next(counter)}", content=b"v" * VALUE_BYTES, headers=headers)
    if response.status_code not in (200, 201, 204):
        raise RuntimeError(f"calibration write refused: {response.status_code} {response.text}")


def _settings(data_dir: Path) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=18001,
        node_id="c0",
        data_dir=data_dir / "c0",
        durability="batch",  # what compare runs live nodes with: the writer thread counts
        cluster_secret=secrets.token_urlsafe(24),
        admin_key="admin-" + secrets.token_urlsafe(16),
        reader_key="reader-" + secrets.token_urlsafe(16),
        broadcast="off",
    )


def machine() -> dict[str, Any]:
    """What the constants were measured on."""
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count() or 0,
        "python": sys.version.split()[0],
        "load_1m": round(os.getloadavg()[0], 2),
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


async def constants(rounds: int, costs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything ``rumor sim calibrate`` writes under ``[constants]``; ``costs``: the
    service times measured on a node process (``node_costs_us``), else in-process."""
    return {
        **framing_bytes(),
        **(costs if costs is not None else await service_costs_us(rounds)),
        "commit_cost_us": await commit_cost_us(),
        "wakeup_us": await wakeup_us(),
        "cores": os.cpu_count() or 1,
    }


# --- the same service times, measured on a node process ----------------------------------
NODE_POSTS = 200  # posts (or PUTs) per round: the node's CPU is read per round


def thread_cpu_s(pid: int) -> float:
    """CPU time of every live thread of ``pid`` (``/proc/PID/task/*/schedstat``, ns
    resolution; ``/proc/PID/stat`` counts 10 ms ticks, too coarse for a round). A thread
    that ended is not counted: a node's threads (the storage writer) live as long as it."""
    total_ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total_ns += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total_ns / 1e9


class NodeTarget(msgspec.Struct, frozen=True):
    """A running node process to measure: where it listens, its pid, its secrets."""

    host: str
    port: int
    pid: int
    cluster_secret: str
    admin_key: str


async def node_costs_us(node: NodeTarget, rounds: int = 5) -> dict[str, Any]:
    """Each service time as a live node process pays it: the node's CPU (every thread:
    uvicorn's parsing, the app, the writer thread) per post of each shape and per PUT,
    less its idle CPU over the same wall time; the sender's CPU (this process) per post
    as the lean gossip path sends it (``PooledTransport.round_trip`` over loopback)."""
    transport = PooledTransport()
    signer = Signer(node.cluster_secret)
    counter = itertools.count()
    samples: dict[tuple[str, str], list[float]] = {}
    at_rest: list[float] = []  # the lone node's CPU per second with nothing to do
    request = partial(_node_request, transport, node, signer, counter)
    try:
        for _ in range(rounds):
            at_rest.append(await _node_round(request, node.pid, (*SHAPES, "put"), "", samples))
        spread = await _node_spread_us(partial(request, SHAPES[0]), node.pid)
        observer = await observer_costs_us(node, rounds)  # before it learns more members
        for _ in range(rounds):
            await _node_round(request, node.pid, MEMBER_SHAPES, MEMBERS, samples)
    finally:
        await transport.aclose()
    return {
        **_split(samples),
        "service_spread": spread_quantiles(spread),
        "background_cost_us_per_s": round(statistics.median(at_rest) * 1e6, 1),
        **observer,
    }


async def _node_round(
    request: Callable[[Shape | str], Awaitable[None]],
    pid: int,
    kinds: tuple[Shape | str, ...],
    prefix: str,
    samples: dict[tuple[str, str], list[float]],
) -> float:
    """``NODE_POSTS`` requests of each kind: samples of this process's CPU ("null") and
    of both processes' less the node's idle CPU ("real"), per request; the idle rate."""
    idle_per_s = await _idle_cpu_per_s(pid)
    per = 1e6 / NODE_POSTS
    for kind in kinds:
        cpu_s, node_s, wall_s = await _measured(partial(request, kind), pid, NODE_POSTS)
        samples.setdefault(("null", prefix + str(kind)), []).append(cpu_s * per)
        samples.setdefault(("real", prefix + str(kind)), []).append(
            (node_s - idle_per_s * wall_s) * per + cpu_s * per
        )
    return idle_per_s


async def _node_spread_us(post: Callable[[], Awaitable[None]], pid: int) -> list[float]:
    """The node's CPU for each of ``SPREAD_POSTS`` posts, one at a time (microseconds)."""
    idle_per_s = await _idle_cpu_per_s(pid)
    costs = []
    for _ in range(SPREAD_POSTS):
        node, wall = thread_cpu_s(pid), time.monotonic()
        await post()
        await asyncio.sleep(SETTLE_S)
        used_s = thread_cpu_s(pid) - node - idle_per_s * (time.monotonic() - wall)
        costs.append(used_s * 1e6)
    return costs


async def _idle_cpu_per_s(pid: int, wall_s: float = 0.3) -> float:
    started = thread_cpu_s(pid)
    await asyncio.sleep(wall_s)
    return (thread_cpu_s(pid) - started) / wall_s


async def _measured(
    job: Callable[[], Awaitable[None]], pid: int, times: int
) -> tuple[float, float, float]:
    """(this process's CPU, the node's CPU, wall) seconds for ``times`` runs of ``job``."""
    cpu, node, wall = time.process_time(), thread_cpu_s(pid), time.monotonic()
    for _ in range(times):
        await job()
    return time.process_time() - cpu, thread_cpu_s(pid) - node, time.monotonic() - wall


async def _node_request(
    transport: PooledTransport,
    node: NodeTarget,
    signer: Signer,
    counter: Iterator[int],
    shape: Shape | str,
) -> None:
    host = f"{node.host}:{node.port}"
    if shape == "put":
        path, body = f"/kv/w{next(counter)}", b"v" * VALUE_BYTES
        lines = [f"PUT {path} HTTP/1.1", f"Host: {host}", f"Authorization: Bearer {node.admin_key}"]
        lines += ["content-type: application/octet-stream", "Content-Length: "]
        head = "\r\n".join(lines).encode()
    else:
        assert not isinstance(shape, str)
        body = _sealed_post(signer, counter, shape, "c0")
        head = post_head(httpx.URL(f"http://{host}{GOSSIP_PATH}"), "c1")
    status, _, content = await transport.round_trip(
        (node.host, node.port),
        head + str(len(body)).encode() + b"\r\n\r\n",
        body,
        connect_s=2.0,
        read_s=10.0,
    )
    if status not in (200, 201, 204):
        raise RuntimeError(f"calibration request refused: {status} {content[:200]!r}")


async def startup_ms(url: str, since_s: float, wait_s: float = 60.0) -> float:
    """Milliseconds from ``since_s`` (``time.monotonic()`` when the node process was
    started) to its first ``GET /health`` answer: what a restart keeps a node down."""
    deadline = since_s + wait_s
    async with httpx.AsyncClient(trust_env=False, timeout=1.0) as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{url}/health")).status_code == 200:
                    return round((time.monotonic() - since_s) * 1000, 1)
            await asyncio.sleep(STARTUP_POLL_S)
    raise RuntimeError(f"the node at {url} did not answer in {wait_s:.0f} s")


# --- what an observer costs: the compare driver's watch stream and /metrics samples -----
class _WatchReader:
    """A watch stream read as the compare driver reads it (``httpx`` lines, JSON)."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.lines = 0
        self.ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read(http, url))

    async def _read(self, http: httpx.AsyncClient, url: str) -> None:
        async with http.stream("GET", url, timeout=None) as response:
            async for line in response.aiter_lines():
                if not line:
                    continue
                event = json.loads(line)
                if event.get("type") == "start":
                    self.ready.set()
                elif event.get("type") == "change":
                    self.lines += 1

    async def caught_up(self, lines: int, wait_s: float = 10.0) -> None:
        deadline = time.monotonic() + wait_s
        while self.lines < lines and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await self._task


async def observer_costs_us(node: NodeTarget, rounds: int = 5) -> dict[str, float]:
    """What one observer adds, in microseconds of CPU: per version the node applies, the
    node's fan-out of its watch line (``watch_cost_us``) and the observer's reading of it
    (``observer_event_cost_us``); per ``GET /metrics`` sample, the node's rendering
    (``metrics_cost_us``) and the observer's request (``observer_sample_cost_us``); per
    client write it sends, the observer's request (``observer_write_cost_us``, ``httpx``
    as the driver). Rounds of narrow posts without and with a watch stream open (the
    difference is the stream's), of samples and of writes; medians of the rounds."""
    transport = PooledTransport()
    signer = Signer(node.cluster_secret)
    counter = itertools.count()
    base = f"http://{node.host}:{node.port}"
    headers = {"Authorization": f"Bearer {node.admin_key}"}
    found: dict[str, list[float]] = {}
    post = partial(_node_request, transport, node, signer, counter, SHAPES[0])
    async with httpx.AsyncClient(
        base_url=base, headers=headers, trust_env=False, timeout=10.0
    ) as http:
        try:
            for _ in range(rounds):
                for name, value in (await _observer_round(node.pid, http, post, counter)).items():
                    found.setdefault(name, []).append(value)
        finally:
            await transport.aclose()
    return {name: round(max(0.0, statistics.median(v)), 1) for name, v in found.items()}


async def _observer_round(
    pid: int,
    http: httpx.AsyncClient,
    post: Callable[[], Awaitable[None]],
    counter: Iterator[int],
) -> dict[str, float]:
    idle_per_s = await _idle_cpu_per_s(pid)
    cpu_s, node_s, wall_s = await _measured(post, pid, NODE_POSTS)
    alone_us = (node_s - idle_per_s * wall_s) / NODE_POSTS * 1e6
    sender_us = cpu_s / NODE_POSTS * 1e6
    reader = _WatchReader(http, "/kv?watch=true")
    try:
        await asyncio.wait_for(reader.ready.wait(), 10.0)
        cpu, node_cpu, wall = time.process_time(), thread_cpu_s(pid), time.monotonic()
        lines = reader.lines
        for _ in range(NODE_POSTS):
            await post()
        await reader.caught_up(lines + NODE_POSTS)
        cpu_s, node_s, wall_s = (
            time.process_time() - cpu, thread_cpu_s(pid) - node_cpu, time.monotonic() - wall
        )  # fmt: skip
        lines = max(1, reader.lines - lines)
    finally:
        await reader.close()
    watched_us = (node_s - idle_per_s * wall_s) / NODE_POSTS * 1e6
    cpu_m, node_m, wall_m = await _measured(partial(_metrics_sample, http), pid, NODE_POSTS)
    cpu_w, _, _ = await _measured(partial(_put, http, counter), pid, NODE_POSTS)
    return {
        "watch_cost_us": watched_us - alone_us,
        "observer_event_cost_us": (cpu_s * 1e6 - sender_us * NODE_POSTS) / lines,
        "metrics_cost_us": (node_m - idle_per_s * wall_m) / NODE_POSTS * 1e6,
        "observer_sample_cost_us": cpu_m / NODE_POSTS * 1e6,
        "observer_write_cost_us": cpu_w / NODE_POSTS * 1e6,
    }


async def _metrics_sample(http: httpx.AsyncClient) -> None:
    """One ``/metrics`` sample, as the compare driver takes it."""
    response = await http.get("/metrics")
    if response.status_code != 200:
        raise RuntimeError(f"calibration /metrics refused: {response.status_code}")
