"""``rumor node``: flags and their RUMOR_* twins, refusal without a secret."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.live.harness import ADMIN_KEY, RUMOR, SECRET, free_tcp_port

pytestmark = pytest.mark.live


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUMOR_")}
    env.update(extra)
    return env


def test_refuses_to_start_without_a_cluster_secret(tmp_path: Path) -> None:
    done = subprocess.run(
        [RUMOR, "node", "--data-dir", str(tmp_path), "--durability", "memory"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--cluster-secret" in done.stderr and "RUMOR_CLUSTER_SECRET" in done.stderr


def test_bad_flag_values_name_the_flag(tmp_path: Path) -> None:
    done = subprocess.run(
        [RUMOR, "node", "--durability", "sometimes", "--cluster-secret", "s"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--durability" in done.stderr


def test_environment_twins_configure_the_node_and_flags_win(tmp_path: Path) -> None:
    port = free_tcp_port("127.0.0.1")
    env = clean_env(
        RUMOR_NODE_ID="from-env",
        RUMOR_CLUSTER_SECRET=SECRET,
        RUMOR_ADMIN_KEY=ADMIN_KEY,
        RUMOR_PORT="1",  # overridden by the flag below
        RUMOR_DURABILITY="memory",
        RUMOR_BROADCAST="off",
        RUMOR_DATA_DIR=str(tmp_path),
    )
    log = (tmp_path / "node.log").open("wb")
    proc = subprocess.Popen(
        [RUMOR, "node", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with httpx.Client(timeout=2.0) as client:
            health = None
            for _ in range(300):
                try:
                    health = client.get(f"http://127.0.0.1:{port}/health").json()
                    break
                except httpx.HTTPError:
                    if proc.poll() is not None:
                        break
                    time.sleep(0.1)
            assert health == {"status": "ok", "node_id": "from-env"}, (
                tmp_path / "node.log"
            ).read_text()
            put = client.put(
                f"http://127.0.0.1:{port}/kv/k", content=b"v", headers={"X-API-Key": ADMIN_KEY}
            )
            assert put.status_code == 201
    finally:
        proc.kill()
        proc.wait()
        log.close()
