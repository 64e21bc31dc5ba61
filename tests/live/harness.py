"""Harnesses for the live ring: in-process apps (ASGITransport) and real node processes.

In-process: ``running_app`` builds the real FastAPI app with ``durability=memory`` and
drives its lifespan; ``RoutingTransport`` wires several such apps together so gossip and
forwarding run over ASGI without sockets. Real processes: ``Cluster`` starts ``rumor
node`` on 127.0.0.x addresses with random free ports and a random discovery port (so
concurrent test runs never hear each other), discovery only, no seeds; teardown always
kills every process it started, by PID. ``Cluster(root, tls=True)`` gives every node a
certificate from a CA in ``root`` (``tls_client_auth=True``: mutual TLS, and the test
client presents a certificate of its own).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from rumordb.live import certs
from rumordb.live.app import create_app
from rumordb.live.settings import Settings
from rumordb.live.tls import client_context

ADMIN_KEY = "admin-" + secrets.token_urlsafe(16)
READER_KEY = "reader-" + secrets.token_urlsafe(16)
SECRET = "secret-" + secrets.token_urlsafe(16)
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
READER = {"X-API-Key": READER_KEY}
RUMOR = str(Path(sys.executable).parent / "rumor")

# Fast timers so that failure detection and repair fit in a test's seconds.
FAST_TIMERS = [
    "--gossip-interval-ms", "100",
    "--probe-interval-ms", "250",
    "--suspicion-mult", "4",
    "--anti-entropy-interval-ms", "500",
    "--discovery-interval-ms", "250",
]  # fmt: skip


# --- in-process -------------------------------------------------------------------------
def settings_for(
    tmp_path: Path, node_id: str = "t1", port: int = 9001, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "node_id": node_id,
        "data_dir": tmp_path / node_id,
        "durability": "memory",
        "cluster_secret": SECRET,
        "admin_key": ADMIN_KEY,
        "reader_key": READER_KEY,
        "broadcast": "off",
        "gossip_interval_ms": 50,
        "anti_entropy_interval_ms": 200,
        "probe_interval_ms": 100,
    }
    values.update(overrides)
    return Settings(**values)


class RoutingTransport(httpx.AsyncBaseTransport):
    """Routes requests by host:port to in-process apps (ASGI, no sockets)."""

    def __init__(self) -> None:
        self.apps: dict[str, httpx.ASGITransport] = {}
        self.blocked: set[str] = set()

    def add(self, netloc: str, app: FastAPI) -> None:
        self.apps[netloc] = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        netloc = request.url.netloc.decode()
        transport = self.apps.get(netloc)
        if transport is None or netloc in self.blocked:
            raise httpx.ConnectError(f"no app at {netloc}", request=request)
        return await transport.handle_async_request(request)


@contextlib.asynccontextmanager
async def running_app(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings, transport=transport, discovery=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=settings.advertised_url()
        ) as client,
    ):
        yield app, client


async def eventually(
    check: Callable[[], Any], timeout_s: float = 10.0, step_s: float = 0.02
) -> Any:
    """Poll an async ``check`` until it returns something truthy, or fail at the deadline."""
    import anyio

    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await anyio.sleep(step_s)
    raise AssertionError(f"condition not met within {timeout_s} s (last: {last!r})")


# --- real processes ---------------------------------------------------------------------
def free_tcp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class NodeProcess:
    node_id: str
    host: str
    port: int
    data_dir: Path
    args: list[str]
    log_path: Path
    scheme: str = "http"
    proc: subprocess.Popen[bytes] | None = None
    _log: Any = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUMOR_")}
        self.proc = subprocess.Popen(
            [RUMOR, "node", *self.args], stdout=self._log, stderr=subprocess.STDOUT, env=env
        )

    def send(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGKILL, timeout_s: float = 10.0) -> int | None:
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            try:
                code = self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def tls_client(root: Path, *, certificate: bool = True) -> ssl.SSLContext:
    """A client context trusting the CA in ``root``; with a CA-signed client certificate."""
    if not certificate:
        return client_context(root / certs.CA_FILE)
    files = certs.ensure_node_files(root, "client", ("localhost",))
    return client_context(files.ca, files.cert, files.key)


@dataclass
class Cluster:
    root: Path
    tls: bool = False
    tls_client_auth: bool = False
    discovery_port: int = field(default_factory=free_udp_port)
    nodes: dict[str, NodeProcess] = field(default_factory=dict)
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        verify: ssl.SSLContext | bool = tls_client(self.root) if self.tls else True
        self.client = httpx.Client(timeout=5.0, verify=verify, trust_env=False)

    def tls_args(self, node_id: str, host: str) -> list[str]:
        if not self.tls:
            return []
        files = certs.ensure_node_files(self.root, node_id, (host, "localhost"))
        return files.node_args() + (["--tls-client-auth"] if self.tls_client_auth else [])

    def add(self, node_id: str, *extra: str, host: str | None = None) -> NodeProcess:
        host = host or f"127.0.0.{2 + len(self.nodes)}"
        port = free_tcp_port(host)
        data_dir = self.root / node_id
        args = [
            "--host", host, "--port", str(port), "--node-id", node_id,
            "--data-dir", str(data_dir), "--cluster-secret", SECRET,
            "--admin-key", ADMIN_KEY, "--reader-key", READER_KEY,
            "--discovery-port", str(self.discovery_port), "--broadcast", "auto",
            *FAST_TIMERS, *self.tls_args(node_id, host), *extra,
        ]  # fmt: skip
        log_path = self.root / f"{node_id}.log"
        scheme = "https" if self.tls else "http"
        node = NodeProcess(node_id, host, port, data_dir, args, log_path, scheme)
        self.nodes[node_id] = node
        node.start()
        return node

    def wait_ready(self, *nodes: NodeProcess, timeout_s: float = 30.0) -> None:
        for node in nodes or tuple(self.nodes.values()):
            self.poll(partial(self._healthy, node), timeout_s, f"{node.node_id} ready")

    def _healthy(self, node: NodeProcess) -> bool:
        if node.proc is None or node.proc.poll() is not None:
            raise AssertionError(f"{node.node_id} exited:\n{node.logs()[-3000:]}")
        try:
            status = self.client.get(node.url + "/health").json().get("status")
            return bool(status == "ok")
        except (httpx.HTTPError, ValueError):
            return False

    def poll(self, check: Callable[[], Any], timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = check()
            except httpx.HTTPError as exc:
                last = exc
            if last and not isinstance(last, Exception):
                return last
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")

    def members(self, node: NodeProcess) -> dict[str, str]:
        view = self.client.get(node.url + "/cluster", headers=READER).json()
        return {m["id"]: m["state"] for m in view["members"]}

    def wait_members(self, expected: set[str], timeout_s: float = 30.0) -> None:
        """Every running node sees (at least) ``expected`` alive."""
        for node in self.nodes.values():
            if node.proc is None:
                continue
            self.wait_state(node, expected, "alive", timeout_s)

    def wait_state(
        self, observer: NodeProcess, members: set[str], state: str, timeout_s: float = 30.0
    ) -> None:
        seen: dict[str, str] = {}

        def check() -> bool:
            seen.clear()
            seen.update(self.members(observer))
            return all(seen.get(m) == state for m in members)

        try:
            self.poll(check, timeout_s, f"{observer.node_id} to see {sorted(members)} {state}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; members seen: {seen}") from None

    def put(self, node: NodeProcess, key: str, value: bytes, **headers: str) -> httpx.Response:
        return self.client.put(node.url + f"/kv/{key}", content=value, headers={**ADMIN, **headers})

    def get(self, node: NodeProcess, key: str) -> httpx.Response:
        return self.client.get(node.url + f"/kv/{key}", headers=READER)

    def wait_value(
        self, node: NodeProcess, key: str, value: bytes | None, timeout_s: float = 15.0
    ) -> None:
        def check() -> bool:
            response = self.get(node, key)
            if value is None:
                return response.status_code == 404
            return response.status_code == 200 and response.content == value

        self.poll(check, timeout_s, f"{key} = {value!r} on {node.node_id}")

    def close(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.client.close()


@contextlib.contextmanager
def running_cluster(root: Path, names: tuple[str, ...]) -> Iterator[Cluster]:
    """A cluster of ``names`` started under ``root``, ready and all seeing each other;
    every node stopped at the end (also when starting failed)."""
    nodes = Cluster(root)
    try:
        for name in names:
            nodes.add(name)
        nodes.wait_ready()
        nodes.wait_members(set(names))
        yield nodes
    finally:
        nodes.close()
