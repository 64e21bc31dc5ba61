"""Run the real ``rumor`` command: as a separate process, or in-process for speed.

``rumor()`` runs the installed executable, as a user would (real exit codes, signals).
``run_cli()`` invokes the same click app in this process: a ``rumor`` process spends
most of its start-up importing the whole app, and the client commands do not care how
they were started. Exceptions are not caught, so a crash can never pass for exit code 1.

``LocalCluster`` is a ``rumor cluster up --detach`` on free loopback ports in a temporary
directory; closing it runs ``rumor cluster down`` and, should that fail, stops whatever
pids ``cluster.json`` still lists (only if they are still those node processes).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from rumordb.cli.main import app

RUMOR = str(Path(sys.executable).with_name("rumor"))
COMMAND_TIMEOUT_S = 120.0
PORT_RANGE = (20_000, 32_000)  # below the kernel's ephemeral ports


def rumor(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    timeout_s: float = COMMAND_TIMEOUT_S,
) -> subprocess.CompletedProcess[bytes]:
    """``rumor ARGS`` with a clean environment: no RUMOR_* of the developer leaks in."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUMOR_")}
    base["COLUMNS"] = "200"  # rich tables: no wrapping inside the values the tests read
    return subprocess.run(
        [RUMOR, *args],
        env={**base, **(env or {})},
        input=stdin,
        capture_output=True,
        cwd=cwd,
        timeout=timeout_s,
        check=False,
    )


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: bytes
    stderr: bytes


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    cwd: Path | None = None,
) -> CliResult:
    """``rumor ARGS`` in this process, with the same clean environment as ``rumor()``."""
    cleared: dict[str, str | None] = {k: None for k in os.environ if k.startswith("RUMOR_")}
    with contextlib.chdir(cwd or Path.cwd()):
        result = CliRunner().invoke(
            app,
            list(args),
            input=stdin,
            env={**cleared, **(env or {})},
            catch_exceptions=False,
            prog_name="rumor",  # usage errors name the command as the console script does
        )
    return CliResult(result.exit_code, result.stdout_bytes, result.stderr_bytes)


def free_ports(count: int) -> int:
    """A base port with ``count`` consecutive free TCP ports on 127.0.0.1."""
    rng = random.SystemRandom()
    for _ in range(200):
        base = rng.randint(PORT_RANGE[0], PORT_RANGE[1] - count)
        if all(port_free(base + i) for i in range(count + 2)):  # +2: room for `cluster add`
            return base
    raise RuntimeError("no free port range found")


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def eventually(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class LocalCluster:
    root: Path
    nodes: int = 3
    extra: tuple[str, ...] = ()
    base_port: int = 0
    document: dict[str, Any] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.root / "cluster"

    def up(self) -> LocalCluster:
        self.base_port = free_ports(self.nodes)
        result = rumor(
            "cluster", "up", "-n", str(self.nodes), "--base-port", str(self.base_port),
            "--dir", str(self.dir), "--detach", "--json", *self.extra,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr.decode()
        self.document = json.loads(result.stdout)
        return self

    @property
    def urls(self) -> dict[str, str]:
        state = json.loads((self.dir / "cluster.json").read_text())
        return {node["id"]: node["url"] for node in state["nodes"]}

    @property
    def admin_env(self) -> dict[str, str]:
        return {"RUMOR_API_KEY": self.document["admin_key"]}

    def run(self, *args: str, node: str = "n1", stdin: bytes | None = None,
            env: dict[str, str] | None = None) -> CliResult:  # fmt: skip
        """``rumor ARGS --url <node>`` with the admin key, in-process."""
        return run_cli(*args, "--url", self.urls[node], env={**self.admin_env, **(env or {})},
                       stdin=stdin)  # fmt: skip

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.document['admin_key']}"}
        return httpx.Client(headers=headers, timeout=5.0, trust_env=False)

    def value_on(self, node: str, key: str) -> bytes | None:
        with self.client() as client:
            response = client.get(f"{self.urls[node]}/kv/{key}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.content

    def put_http(self, node: str, key: str, value: bytes) -> None:
        """Setup writes go straight to HTTP: a CLI process per write would be slow."""
        with self.client() as client:
            client.put(f"{self.urls[node]}/kv/{key}", content=value).raise_for_status()

    def close(self) -> None:
        state_file = self.dir / "cluster.json"
        if not state_file.exists():
            return
        pids = [node["pid"] for node in json.loads(state_file.read_text())["nodes"]]
        rumor("cluster", "down", "--dir", str(self.dir))
        for pid in pids:  # only if `down` failed: these are our children's children
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
