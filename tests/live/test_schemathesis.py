"""schemathesis, an external API fuzzer, against a live node's own /openapi.json.

Every operation the schema documents is called with generated requests (the coverage
phase's boundary and negative cases, then fuzzing), at most ``MAX_EXAMPLES`` per
operation, with an admin key; the run fails on any 5xx or any answer the schema does
not describe (status, content type, headers, response schema).

Bounded: ``MAX_EXAMPLES`` per operation and ``DEADLINE_S`` for the whole run (about
30 s on the 2-core CI machine). Safe: the node listens on loopback, the schema names no
server (so every request goes to the URL the schema came from), proxies are switched
off, and the node's failed-authentication bucket is large enough that the fuzzer's
missing or wrong keys get 401, never a 429 that would hide the routes behind it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.live.harness import ADMIN_KEY, Cluster, NodeProcess

pytestmark = [pytest.mark.live, pytest.mark.slow]

MAX_EXAMPLES = 50
DEADLINE_S = 240
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_headers_conformance,response_schema_conformance"
)
ST = str(Path(sys.executable).parent / "st")
HOOKS = """
import schemathesis


@schemathesis.hook
def before_call(context, case, kwargs):
    query = case.query or {}
    if str(query.get("watch", "")).lower() in ("true", "1", "yes"):
        query["watch"] = "false"
"""


@pytest.fixture
def node(cluster_factory: Callable[..., Cluster]) -> tuple[Cluster, NodeProcess]:
    cluster = cluster_factory()
    one = cluster.add(
        "f1",
        "--broadcast", "off", "--durability", "memory", "--allow-faults",
        "--auth-failure-burst", "1000000",
    )  # fmt: skip
    cluster.wait_ready(one)
    return cluster, one


def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    node: tuple[Cluster, NodeProcess], tmp_path: Path
) -> None:
    cluster, one = node
    assert one.host.startswith("127.")
    schema = cluster.client.get(one.url + "/openapi.json").json()
    assert "servers" not in schema  # requests go to the node the schema came from
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = "*"
    # A GET /kv?watch=true that opens streams until the client hangs up: the fuzzer would
    # wait for its end. The hook turns it into a listing (tests/live/test_watch.py covers
    # the stream and its documented content type is checked below).
    (tmp_path / "no_watch_streams.py").write_text(HOOKS)
    env["SCHEMATHESIS_HOOKS"] = "no_watch_streams"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    command = [
        ST, "run", one.url + "/openapi.json",
        "--header", f"Authorization: Bearer {ADMIN_KEY}",
        "--max-examples", str(MAX_EXAMPLES),
        "--checks", CHECKS,
        "--seed", "1", "--generation-database", "none",
        # /ready answers 503 by design (probes); /admin/leave makes the node leave.
        "--exclude-path", "/ready", "--exclude-path", "/admin/leave",
        "--request-timeout", "10", "--no-color",
    ]  # fmt: skip
    run = subprocess.run(
        command,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    ran = re.search(r"(\d+) generated, \1 passed", run.stdout)  # every case ran and passed
    assert ran and int(ran.group(1)) >= 100, run.stdout[-3000:]
    kv = schema["paths"]["/kv"]["get"]
    assert "watch" in {p["name"] for p in kv["parameters"]}
    assert "application/x-ndjson" in kv["responses"]["200"]["content"]
    assert {"400", "410", "503"} <= set(kv["responses"])
    put = schema["paths"]["/kv/{key}"]["put"]
    assert "ttl" in {p["name"] for p in put["parameters"]}
