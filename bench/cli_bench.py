"""How long ``rumor get KEY`` takes against a local node: the median wall time of 20 runs.

One ``rumor node`` (memory durability) on a free loopback port holds one key; then 20
rounds, each timing ``rumor get`` and, right beside it, the reference ``python -c pass``
with the same interpreter, so a slow minute on a shared machine shows in both; and the
same ``get`` through the click app (the entry point before ``rumordb.cli.launch``'s fast
path), so one run compares before and after. Prints the medians (wall and CPU), their
difference from ``python -c pass`` (what the command itself costs), and the fastest run.
Figures are printed, never asserted. The node is stopped by its pid.

The package's bytecode is compiled first, as ``pip install`` does: with
``PYTHONDONTWRITEBYTECODE`` set (as on CI) an editable install would otherwise compile
every module of the CLI from source at every start, about 30 ms that no user pays.

    make bench-cli            # or: .venv/bin/python -m bench.cli_bench --runs 20
"""

from __future__ import annotations

import argparse
import compileall
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rumordb
from rumordb import Client
from tests.live.harness import free_tcp_port, free_udp_port

PYTHON = sys.executable
RUMOR = str(Path(sys.executable).with_name("rumor"))
READY_TIMEOUT_S = 60.0
# The console script as it was before the fast path: straight into the click app.
CLICK_ENTRY = "import sys; from rumordb.cli.main import app; sys.argv[0] = 'rumor'; sys.exit(app())"
Timing = tuple[float, float, int]


def compile_package() -> None:
    """Bytecode for rumordb and its linked subpackages, as ``pip install`` writes it."""
    for folder in rumordb.__path__:
        compileall.compile_dir(folder, quiet=2)


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system of the child) and the exit code."""
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=[
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
    ])  # fmt: skip
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    return wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def start_node(data_dir: Path, api_key: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_tcp_port("127.0.0.1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUMOR_")}
    env |= {"RUMOR_CLUSTER_SECRET": secrets.token_urlsafe(16), "RUMOR_ADMIN_KEY": api_key}
    argv = [RUMOR, "node", "--host", "127.0.0.1", "--port", str(port), "--node-id", "b1",
            "--data-dir", str(data_dir), "--durability", "memory", "--broadcast", "off",
            "--discovery-port", str(free_udp_port()), "--log-level", "warning"]  # fmt: skip
    node = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)
    return node, f"http://127.0.0.1:{port}"


def wait_ready(url: str, api_key: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    with Client(url, api_key=api_key, retries=0, transport="stdlib") as db:
        while time.monotonic() < deadline:
            try:
                if db.health().get("status") == "ok":
                    db.put("bench-key", "hello")
                    return
            except Exception:
                pass
            time.sleep(0.1)
    raise SystemExit(f"the node at {url} did not start within {READY_TIMEOUT_S} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    api_key = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as tmp:
        node, url = start_node(Path(tmp) / "b1", api_key)
        try:
            wait_ready(url, api_key)
            env = {k: v for k, v in os.environ.items() if not k.startswith("RUMOR_")}
            env |= {"RUMOR_API_KEY": api_key, "RUMOR_URL": url}
            get = [RUMOR, "get", "bench-key"]
            reference = [PYTHON, "-c", "pass"]
            click_get = [PYTHON, "-c", CLICK_ENTRY, "get", "bench-key"]
            compile_package()
            assert timed(get, env)[2] == 0, "rumor get failed"  # and warms the page cache
            assert timed(click_get, env)[2] == 0, "rumor get (click) failed"
            load_before = os.getloadavg()[0]
            rows = [
                (timed(get, env), timed(reference, env), timed(click_get, env)) for _ in range(runs)
            ]
        finally:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
    report(rows, load_before, os.getloadavg()[0])


def report(
    rows: list[tuple[Timing, Timing, Timing]], load_before: float, load_after: float
) -> None:
    def median_ms(values: list[float]) -> float:
        return 1000 * statistics.median(values)

    def show(title: str, runs: list[Timing]) -> None:
        walls = [run[0] for run in runs]
        extra = [run[0] - ref[0] for run, (_, ref, _) in zip(runs, rows, strict=True)]
        print(f"{title}:")
        print(f"  median wall {median_ms(walls):6.1f} ms   (fastest {1000 * min(walls):.1f} ms)"
              f"   CPU {median_ms([run[1] for run in runs]):.1f} ms")  # fmt: skip
        print(f"  minus python -c pass, median of the pairs: {median_ms(extra):.1f} ms")

    print(f"{len(rows)} alternating rounds against a local node")
    show("rumor get (the console script: the fast path)", [g for g, _, _ in rows])
    show("rumor get through the click app (before the fast path)", [c for _, _, c in rows])
    ref = [r for _, r, _ in rows]
    print("python -c pass (the interpreter's own start-up):")
    print(f"  median wall {median_ms([r[0] for r in ref]):6.1f} ms   "
          f"(fastest {1000 * min(r[0] for r in ref):.1f} ms)   CPU {median_ms([r[1] for r in ref]):.1f} ms")  # fmt: skip
    print(f"load average (1 min) {load_before:.2f} before, {load_after:.2f} after, "
          f"on {os.cpu_count()} CPUs: wall times above ~CPU time mean a busy machine")  # fmt: skip
    if any(g[2] != 0 or c[2] != 0 for g, _, c in rows):
        print("WARNING: some runs of rumor get failed")


if __name__ == "__main__":
    main()
