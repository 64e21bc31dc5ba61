"""How long ``rumor get/put/delete`` take against a local node: median wall time of 20 runs.

One ``rumor node`` (memory durability) on a free loopback port holds one key (and one
key per ``delete`` to come); then 20 rounds, each timing ``rumor get``, ``rumor put``
and ``rumor delete`` and, right beside them, the reference ``python -c pass`` with the
same interpreter, so a slow minute on a shared machine shows in all; and the same three
commands through the click app (the entry point before ``rumordb.cli.launch``'s fast
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


def wait_ready(url: str, api_key: str, runs: int) -> None:
    """Wait for the node, then write the key to get and one key per delete to come."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    with Client(url, api_key=api_key, retries=0, transport="stdlib") as db:
        while time.monotonic() < deadline:
            try:
                if db.health().get("status") == "ok":
                    break
            except Exception:
                pass
            time.sleep(0.1)
        else:
            raise SystemExit(f"the node at {url} did not start within {READY_TIMEOUT_S} s")
        db.put("bench-key", "hello")
        for key in doomed_keys(runs + 1):
            db.put(key, "doomed")


def doomed_keys(runs: int) -> list[str]:
    return [f"bench-doomed-{i}-{path}" for i in range(runs) for path in ("fast", "click")]


def commands(round_number: int) -> dict[str, list[str]]:
    """The commands of one round, as words after ``rumor``."""
    return {
        "get": ["get", "bench-key"],
        "put": ["put", "bench-put", f"value {round_number}"],
        "delete": ["delete", f"bench-doomed-{round_number}-PATH"],
    }


def one_round(round_number: int, env: dict[str, str]) -> dict[str, Timing]:
    """Each command through the console script and through click, and the reference."""
    timings = {"reference": timed([PYTHON, "-c", "pass"], env)}
    for name, words in commands(round_number).items():
        fast = [word.replace("PATH", "fast") for word in words]
        slow = [word.replace("PATH", "click") for word in words]
        timings[name] = timed([RUMOR, *fast], env)
        timings[f"{name} (click)"] = timed([PYTHON, "-c", CLICK_ENTRY, *slow], env)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    api_key = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as tmp:
        node, url = start_node(Path(tmp) / "b1", api_key)
        try:
            wait_ready(url, api_key, runs)
            env = {k: v for k, v in os.environ.items() if not k.startswith("RUMOR_")}
            env |= {"RUMOR_API_KEY": api_key, "RUMOR_URL": url}
            compile_package()
            warm = one_round(runs, env)  # and warms the page cache
            failed = [name for name, timing in warm.items() if timing[2] != 0]
            assert not failed, f"failed: {failed}"
            load_before = os.getloadavg()[0]
            rows = [one_round(i, env) for i in range(runs)]
        finally:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
    report(rows, load_before, os.getloadavg()[0])


def report(rows: list[dict[str, Timing]], load_before: float, load_after: float) -> None:
    def median_ms(values: list[float]) -> float:
        return 1000 * statistics.median(values)

    def show(title: str, name: str) -> None:
        runs = [row[name] for row in rows]
        walls = [run[0] for run in runs]
        extra = [row[name][0] - row["reference"][0] for row in rows]
        print(f"{title}:")
        print(f"  median wall {median_ms(walls):6.1f} ms   (fastest {1000 * min(walls):.1f} ms)"
              f"   CPU {median_ms([run[1] for run in runs]):.1f} ms")  # fmt: skip
        if name != "reference":
            print(f"  minus python -c pass, median of the pairs: {median_ms(extra):.1f} ms")

    print(f"{len(rows)} alternating rounds against a local node")
    for command in ("get", "put", "delete"):
        show(f"rumor {command} (the console script: the fast path)", command)
        show(f"rumor {command} through the click app (before the fast path)", f"{command} (click)")
    show("python -c pass (the interpreter's own start-up)", "reference")
    print(f"load average (1 min) {load_before:.2f} before, {load_after:.2f} after, "
          f"on {os.cpu_count()} CPUs: wall times above ~CPU time mean a busy machine")  # fmt: skip
    failed = sorted({name for row in rows for name, timing in row.items() if timing[2] != 0})
    if failed:
        print(f"WARNING: some runs failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
