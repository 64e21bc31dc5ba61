"""A RumorDB cluster inside a namespace lab: one ``rumor node`` per host, clients in ``ctl``.

Nodes find each other only by UDP broadcast to the lab's bridge (``--broadcast
10.77.0.255``, no seeds). Each namespace has its own network stack, so every node uses
the same HTTP port and discovery port without colliding with anything else on the machine.
Timings are tightened so that the scenarios fit in a minute each: probes every 500 ms,
suspicion after 4 probe intervals (2 s), dead 2 s later; anti-entropy every 500 ms.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rumordb.live.checker import Report, classify, dump_history, load_history, load_snapshot
from tests.multihost.netns import BROADCAST, PYTHON, ROOT, Lab

HTTP_PORT = 8000
DISCOVERY_PORT = 7946
RUMOR = str(ROOT / ".venv" / "bin" / "rumor")
PROBE_INTERVAL_MS = 500
SUSPICION_MULT = 4
ANTI_ENTROPY_INTERVAL_MS = 500


@dataclass(slots=True)
class LabCluster:
    lab: Lab
    workdir: Path
    sharding: bool = False
    replicas: int = 3
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    # Random keys may start with "-": always pass them as --api-key=VALUE (argparse).
    admin_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    reader_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    nodes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)  # more `rumor node` flags

    # --- nodes -------------------------------------------------------------------------
    @staticmethod
    def node_id(host: str) -> str:
        return "n" + host.removeprefix("h")

    def url(self, host: str) -> str:
        return self.lab.hosts[host].url(HTTP_PORT)

    def urls(self, hosts: list[str] | None = None) -> list[str]:
        return [self.url(h) for h in (hosts or list(self.nodes))]

    def start(self, host: str) -> None:
        address = self.lab.hosts[host].address
        argv = [
            RUMOR, "node", "--host", address, "--port", str(HTTP_PORT),
            "--node-id", self.node_id(host), "--data-dir", str(self.workdir / host),
            "--broadcast", BROADCAST, "--discovery-port", str(DISCOVERY_PORT),
            "--discovery-interval-ms", "500", "--allow-faults", "--durability", "sync",
            "--probe-interval-ms", str(PROBE_INTERVAL_MS),
            "--suspicion-mult", str(SUSPICION_MULT),
            "--anti-entropy-interval-ms", str(ANTI_ENTROPY_INTERVAL_MS),
        ]  # fmt: skip
        if self.sharding:
            argv += ["--sharding", "--replicas", str(self.replicas)]
        argv += self.extra_args
        env = {
            "RUMOR_CLUSTER_SECRET": self.secret,
            "RUMOR_ADMIN_KEY": self.admin_key,
            "RUMOR_READER_KEY": self.reader_key,
        }
        log = self.workdir / f"{host}.log"
        self.nodes[host] = self.lab.spawn(host, argv, log=log, env=env)

    def start_all(self, hosts: list[str]) -> None:
        for host in hosts:
            self.start(host)
        self.wait_ready(hosts, members=len(hosts))

    def kill(self, host: str) -> None:
        self.lab.signal(self.nodes[host], signal.SIGKILL)
        self.nodes[host].wait(10)

    def stop_all(self) -> None:
        for proc in self.nodes.values():
            self.lab.stop(proc)

    def log_tail(self, host: str, lines: int = 20) -> str:
        path = self.workdir / f"{host}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # --- clients (in the control namespace) -------------------------------------------
    def client(self, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        return self.lab.client(*args, f"--api-key={self.admin_key}", timeout_s=timeout_s)

    def wait_ready(self, hosts: list[str], members: int, timeout_s: float = 60.0) -> float:
        urls = ",".join(self.urls(hosts))
        done = self.lab.client(
            "wait-ready", "--urls", urls, "--members", str(members),
            "--timeout", str(timeout_s), f"--api-key={self.admin_key}",
            timeout_s=timeout_s + 30, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            exits = {h: self.nodes[h].poll() for h in hosts}
            tails = {h: self.log_tail(h, 5) for h in hosts}
            raise AssertionError(
                f"cluster not ready: {done.stdout} {done.stderr[-2000:]} "
                f"node exit codes {exits}; logs {tails}"
            )
        return float(json.loads(done.stdout)["ready_s"])

    def clusters(self, hosts: list[str] | None = None) -> dict[str, Any]:
        done = self.client("clusters", "--urls", ",".join(self.urls(hosts)))
        return dict(json.loads(done.stdout))

    def workload(
        self,
        name: str,
        duration_s: float,
        rate: float = 40.0,
        keys: int = 100,
        delete_ratio: float = 0.0,
        hosts: list[str] | None = None,
        seed: int = 1,
        prefix: str | None = None,
    ) -> Workload:
        """Start a workload in ``ctl``; ``name`` names its files, keys go under ``prefix``
        (default ``name/``), so several workloads can share a keyspace."""
        out = self.workdir / f"{name}.history.json"
        prefix = prefix or f"{name}/"
        argv = [
            PYTHON, "-m", "tests.multihost.client", "workload",
            "--urls", ",".join(self.urls(hosts)), f"--api-key={self.admin_key}",
            "--prefix", prefix, "--keys", str(keys), "--rate", str(rate),
            "--duration", str(duration_s), "--delete-ratio", str(delete_ratio),
            "--seed", str(seed), "--out", str(out),
        ]  # fmt: skip
        proc = self.lab.spawn("ctl", argv, log=self.workdir / f"{name}.workload.log")
        return Workload(proc, out, prefix, time.monotonic() + duration_s)

    def converge(
        self,
        histories: list[Path],
        prefix: str,
        timeout_s: float = 60.0,
        since: float | None = None,
    ) -> tuple[Report, float | None]:
        """Wait for identical data on every running node; check every history against it.
        ``heal_to_identical_s`` counts from ``since`` (epoch s, the heal) when given."""
        merged = self.workdir / f"{prefix.strip('/')}.merged.json"
        ops = [op for path in histories for op in load_history(path.read_bytes())]
        for i, op in enumerate(ops):
            op.id = i  # histories of several workloads: ids must stay unique
        merged.write_bytes(dump_history(ops))
        out = self.workdir / f"{prefix.strip('/')}.snapshot.json"
        done = self.client(
            "converge", "--urls", ",".join(self.urls()), "--prefix", prefix,
            "--history", str(merged), "--timeout", str(timeout_s), "--out", str(out),
            timeout_s=timeout_s + 60,
        )  # fmt: skip
        result = json.loads(done.stdout)
        (self.workdir / f"{prefix.strip('/')}.trace.json").write_text(json.dumps(result["trace"]))
        print(f"convergence trace (s, keys differing): {result['trace'][:40]}")
        took, identical_at = result["identical_s"], result["identical_at"]
        if took is not None and since is not None:
            took = identical_at - since
        report = classify(ops, load_snapshot(out.read_bytes()))
        report.heal_to_identical_s = None if took is None else round(float(took), 2)
        # Identical at the first full read: the true time is shorter, this is a bound.
        report.extra["upper_bound"] = bool(result["trace"]) and result["trace"][0][1] == 0
        return report, took

    def watch(self, name: str, seconds: float) -> Watch:
        out = self.workdir / f"{name}.watch.jsonl"
        stop = self.workdir / f"{name}.watch.stop"
        argv = [
            PYTHON, "-m", "tests.multihost.client", "watch",
            "--urls", ",".join(self.urls()), f"--api-key={self.admin_key}",
            "--seconds", str(seconds), "--out", str(out), "--stop-file", str(stop),
            "--interval", "0.1",
        ]  # fmt: skip
        out.touch()
        return Watch(self.lab.spawn("ctl", argv), out, stop)


@dataclass(slots=True)
class Workload:
    proc: subprocess.Popen[bytes]
    history: Path
    prefix: str
    ends_at: float  # time.monotonic() when its operations stop being issued

    def wait(self, timeout_s: float = 60.0) -> Path:
        code = self.proc.wait(timeout_s)
        assert code == 0, f"workload exited {code}"
        return self.history


@dataclass(slots=True)
class Watch:
    """Member-state changes as the nodes see them, read while the watcher runs."""

    proc: subprocess.Popen[bytes]
    path: Path
    stop_file: Path

    def events(self) -> list[dict[str, Any]]:
        lines = self.path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def first(self, member: str, state: str, observers: set[str], after: float) -> float | None:
        """When every observer had seen ``member`` in ``state`` (epoch s), or None."""
        times: dict[str, float] = {}
        for e in self.events():
            if e["member"] == member and e["state"] == state and e["t"] >= after:
                times.setdefault(e["observer"], e["t"])
        if not observers <= set(times):
            return None
        return max(times[o] for o in observers)

    def close(self) -> None:
        self.stop_file.touch()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
