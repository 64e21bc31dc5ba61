"""Server CPU per HTTP request, for one node of each given source tree, rounds alternating.

Throughput on a shared 2-core machine swings by tens of percent with the other users' load;
the CPU time the server process spends per request does not (much). For each tree (a
checkout with its own ``.venv``), this starts ONE node the way that tree's CLI does
(``.venv/bin/rumor node``, loopback, a free port, a temporary data dir, pinned to CPU 0),
puts ``--keys`` keys, then drives requests with ``wrk -t1 -c64`` pinned to CPU 1 and
reports, per round, the server's CPU microseconds per request (utime+stime from
``/proc/PID/stat``, every thread of the process, over the wrk run, divided by the
requests wrk completed) and req/s.

Run: ``make bench-request-cost REF=../other-checkout`` or
``python -m bench.request_cost ../other-checkout .`` (``--method PUT`` for writes).
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
    tree: Path
    proc: subprocess.Popen[bytes]
    url: str
    cpu_us_per_request: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)


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


def start(tree: Path, work: Path, extra: list[str]) -> Node:
    port = free_port()
    rumor = str(tree / ".venv" / "bin" / "rumor")
    args = [rumor, "node", "--host", "127.0.0.1", "--port", str(port), "--node-id", "c1",
            "--data-dir", str(work / "data"), "--cluster-secret", SECRET, "--admin-key", KEY,
            "--broadcast", "off", "--log-level", "warning", *extra]  # fmt: skip
    log = open(work / "node.log", "wb")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *args], stdout=log, stderr=subprocess.STDOUT, cwd=work
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1.0).status_code < 500:
                return Node(tree, proc, url)
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"{tree}: node did not come up: {(work / 'node.log').read_text()[-2000:]}")


def populate(node: Node, keys: int) -> None:
    with httpx.Client(timeout=10.0) as client:
        for i in range(keys):
            client.put(f"{node.url}/kv/key{i}", content=VALUE,
                       headers={"X-API-Key": KEY}).raise_for_status()  # fmt: skip


def wrk_round(node: Node, script: Path, duration_s: int, connections: int) -> None:
    args = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration_s}s",
            "-s", str(script), node.url]  # fmt: skip
    before = cpu_s(node.proc.pid)
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    spent = cpu_s(node.proc.pid) - before
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if bad:
        print(f"  warning: {bad.group(1)} non-2xx responses from {node.tree}")
    node.cpu_us_per_request.append(spent / max(requests, 1) * 1e6)
    node.rps.append(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)))  # type: ignore[union-attr]


def stop(node: Node) -> None:
    if node.proc.poll() is None:
        node.proc.send_signal(signal.SIGTERM)
        try:
            node.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", type=Path, help="checkouts with a .venv")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--method", choices=("GET", "PUT"), default="GET")
    parser.add_argument("--node-arg", action="append", default=[], help="flag for every node")
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
                nodes.append(start(tree.resolve(), work, args.node_arg))
                populate(nodes[-1], args.keys)
            for _ in range(args.rounds):
                for node in nodes:
                    wrk_round(node, script, args.duration, args.connections)
        finally:
            for node in nodes:
                stop(node)
    print(f"{args.method} /kv/<key>, {args.keys} keys, wrk -t1 -c{args.connections} "
          f"-d{args.duration}s x {args.rounds} alternating rounds; load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'tree':<40}{'us/req (median)':>16}{'req/s (median)':>16}  rounds us/req")
    for node in nodes:
        rounds = " ".join(f"{x:.0f}" for x in node.cpu_us_per_request)
        print(f"{node.tree!s:<40}{statistics.median(node.cpu_us_per_request):>16.1f}"
              f"{statistics.median(node.rps):>16.0f}  {rounds}")  # fmt: skip


if __name__ == "__main__":
    main()
