"""Server CPU per HTTP request, for one node of each given source tree, rounds alternating.

Throughput on a shared 2-core machine swings by tens of percent with the other users' load;
the CPU time the server process spends per request does not (much). For each tree (a
checkout with its own ``.venv``), this starts ONE node the way that tree's CLI does
(``.venv/bin/rumor node``, loopback, a free port, a temporary data dir, pinned to CPU 0),
puts ``--keys`` keys, then drives requests with ``wrk -t1 -c64`` pinned to CPU 1 and
reports, per round, the server's CPU microseconds per request (utime+stime from
``/proc/PID/stat``, every thread of the process, over the wrk run, divided by the
requests wrk completed) and req/s.

``--nodes N`` (N > 1) starts a cluster per tree instead (``--durability sync``, the others
joining the first by ``--seeds``, every node pinned to CPU 0, wrk sending to the first):
the CPU is then summed over ALL its node processes, so a replicated PUT counts the
origin's work and every replica's receive, what ``bench.http_bench``'s "replicated
durable PUT" costs the CPU they share.

Run: ``make bench-request-cost REF=../other-checkout`` or
``python -m bench.request_cost ../other-checkout .`` (``--method PUT`` for writes;
``--method PUT --nodes 3`` for the replicated write).
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

KEY = "cost-" + os.urandom(16).hex()
SECRET = "cost-secret-" + os.urandom(16).hex()
VALUE = b"v" * 100
TICKS_S = os.sysconf("SC_CLK_TCK")

LUA = """
math.randomseed(os.time())
local headers = {["X-API-Key"] = "%(key)s", ["Content-Type"] = "application/octet-stream"}
local body = string.rep("v", 100)
request = function()
  return wrk.format("%(method)s", "/kv/key" .. math.random(0, %(last)d), headers, %(body)s)
end
"""


@dataclass
class Node:
    """One tree's server: a node, or a cluster whose first node takes the requests."""

    tree: Path
    proc: subprocess.Popen[bytes]
    url: str
    cpu_us_per_request: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def procs(self) -> list[subprocess.Popen[bytes]]:
        return [self.proc, *self.others]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_s(pid: int) -> float:
    """utime + stime of ``pid``, seconds (fields 14 and 15 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_S


def start(tree: Path, work: Path, extra: list[str], nodes: int = 1) -> Node:
    """``nodes`` nodes of ``tree`` (the second and later join the first by ``--seeds``)."""
    ports = [free_port() for _ in range(nodes)]
    procs = []
    for i, port in enumerate(ports):
        seeds = ["--seeds", f"http://127.0.0.1:{ports[0]}"] if i else []
        durability = ["--durability", "sync"] if nodes > 1 else []
        procs.append(spawn(tree, work, f"c{i + 1}", port, [*durability, *seeds, *extra]))
    node = Node(tree, procs[0], f"http://127.0.0.1:{ports[0]}", others=procs[1:])
    for i, (proc, port) in enumerate(zip(procs, ports, strict=True)):
        wait_up(proc, f"http://127.0.0.1:{port}", work / f"c{i + 1}.log")
    if nodes > 1:
        wait_joined(node.url, nodes)
    return node


def spawn(
    tree: Path, work: Path, name: str, port: int, extra: list[str]
) -> subprocess.Popen[bytes]:
    rumor = str(tree / ".venv" / "bin" / "rumor")
    args = [rumor, "node", "--host", "127.0.0.1", "--port", str(port), "--node-id", name,
            "--data-dir", str(work / name), "--cluster-secret", SECRET, "--admin-key", KEY,
            "--broadcast", "off", "--log-level", "warning", *extra]  # fmt: skip
    log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *args], stdout=log, stderr=subprocess.STDOUT, cwd=work
    )
    log.close()
    return proc


def wait_up(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"{url}: node did not come up: {log.read_text()[-2000:]}")


def wait_joined(url: str, nodes: int) -> None:
    """Until the first node sees all ``nodes`` members alive (so every PUT replicates)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        view = httpx.get(url + "/cluster", headers={"X-API-Key": KEY}, timeout=2.0).json()
        if sum(m["state"] == "alive" for m in view["members"]) == nodes:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{url}: the cluster of {nodes} did not form")


def populate(node: Node, keys: int) -> None:
    with httpx.Client(timeout=10.0) as client:
        for i in range(keys):
            client.put(f"{node.url}/kv/key{i}", content=VALUE,
                       headers={"X-API-Key": KEY}).raise_for_status()  # fmt: skip


def wrk_round(node: Node, script: Path, duration_s: int, connections: int) -> None:
    args = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration_s}s",
            "-s", str(script), node.url]  # fmt: skip
    before = sum(cpu_s(proc.pid) for proc in node.procs)
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    spent = sum(cpu_s(proc.pid) for proc in node.procs) - before
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if bad:
        print(f"  warning: {bad.group(1)} non-2xx responses from {node.tree}")
    node.cpu_us_per_request.append(spent / max(requests, 1) * 1e6)
    node.rps.append(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)))  # type: ignore[union-attr]


def stop(node: Node) -> None:
    for proc in node.procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in node.procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", type=Path, help="checkouts with a .venv")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--method", choices=("GET", "PUT"), default="GET")
    parser.add_argument("--node-arg", action="append", default=[], help="flag for every node")
    parser.add_argument("--nodes", type=int, default=1, help="cluster size (CPU summed over all)")
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise SystemExit("needs wrk and taskset")
    nodes: list[Node] = []
    with tempfile.TemporaryDirectory(prefix="rumor-cost-") as tmp:
        script = Path(tmp) / "cost.lua"
        body = '"' + "v" * 100 + '"' if args.method == "PUT" else "nil"
        script.write_text(
            LUA % {"key": KEY, "method": args.method, "last": args.keys - 1, "body": body}
        )
        try:
            for i, tree in enumerate(args.trees):
                work = Path(tmp) / f"t{i}"
                work.mkdir()
                nodes.append(start(tree.resolve(), work, args.node_arg, args.nodes))
                populate(nodes[-1], args.keys)
            for _ in range(args.rounds):
                for node in nodes:
                    wrk_round(node, script, args.duration, args.connections)
        finally:
            for node in nodes:
                stop(node)
    cluster = f", {args.nodes}-node cluster (CPU of all nodes)" if args.nodes > 1 else ""
    print(f"{args.method} /kv/<key>{cluster}, {args.keys} keys, wrk -t1 -c{args.connections} "
          f"-d{args.duration}s x {args.rounds} alternating rounds; load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'tree':<40}{'us/req (median)':>16}{'req/s (median)':>16}  rounds us/req")
    for node in nodes:
        rounds = " ".join(f"{x:.0f}" for x in node.cpu_us_per_request)
        print(f"{node.tree!s:<40}{statistics.median(node.cpu_us_per_request):>16.1f}"
              f"{statistics.median(node.rps):>16.0f}  {rounds}")  # fmt: skip


if __name__ == "__main__":
    main()
