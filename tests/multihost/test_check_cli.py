"""``rumor check`` end to end against fake clusters behind ``httpx.MockTransport``.

A fake node set that keeps every acknowledged write must pass; one that silently drops
writes on a node must fail with lost writes; chaos must reach every node's ``/faults`` and
heal at the end; a cluster without fault endpoints must be refused with a clear error.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from rumordb.cli.check import CheckError, CheckOptions, run_check
from rumordb.cli.main import app
from rumordb.core.context import encode_context

NODES = ["http://a:1", "http://b:1", "http://c:1"]


@dataclass
class FakeCluster:
    """One shared store (a perfectly replicated cluster), except keys ``forget`` drops on
    node ``b``; a log of fault requests."""

    forget_on_b: bool = False
    faults_enabled: bool = True
    store: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[tuple[str, str, Any]] = field(default_factory=list)
    hlc: int = 1000

    def handler(self, request: httpx.Request) -> httpx.Response:
        node = f"http://{request.url.host}:1"
        path = request.url.path
        if path == "/cluster":
            members = [{"id": u[7], "url": u, "state": "alive"} for u in NODES]
            return httpx.Response(200, json={"node_id": node[7], "members": members})
        if path == "/faults":
            if not self.faults_enabled:
                return httpx.Response(404, json={"error": "not_found", "detail": ""})
            body = json.loads(request.content) if request.content else None
            self.faults.append((node, request.method, body))
            return httpx.Response(200, json={})
        if path == "/kv":
            prefix = request.url.params.get("prefix", "")
            keys = sorted(k for k, v in self.view(node).items() if k.startswith(prefix))
            return httpx.Response(200, json={"keys": keys, "next": None})
        key = path.removeprefix("/kv/")
        if request.method == "GET":
            version = self.view(node).get(key)
            if version is None:
                return httpx.Response(404, json={"error": "not_found", "detail": key})
            return httpx.Response(200, json=version)
        return self.write(node, key, request)

    def view(self, node: str) -> dict[str, dict[str, Any]]:
        return {**self.store, **self.dropped} if node.startswith("http://b") else self.store

    def write(self, node: str, key: str, request: httpx.Request) -> httpx.Response:
        current = self.store.get(key)
        if request.method == "DELETE" and (current is None or current["tombstone"]):
            return httpx.Response(404, json={"error": "not_found", "detail": key})
        self.hlc += 1
        origin = node[7]
        clock = dict(current["clock"]) if current else {}
        clock[origin] = clock.get(origin, 0) + 1
        version = {
            "clock": clock, "hlc": self.hlc, "origin": origin,
            "tombstone": request.method == "DELETE",
            "value_sha256": hashlib.sha256(request.content).hexdigest(),
        }  # fmt: skip
        if self.forget_on_b and current is not None and node.startswith("http://b"):
            self.dropped.setdefault(key, current)  # b keeps serving the old version
        self.store[key] = version
        body = {"key": key, "context": encode_context(clock, self.hlc), "hlc": self.hlc}
        if request.method == "PUT":
            body["origin"] = origin
        return httpx.Response(200, json=body)


def options(chaos: bool = False, duration_s: float = 1.5) -> CheckOptions:
    return CheckOptions(
        urls=[NODES[0]], api_key="k", duration_s=duration_s, rate=40, keys=10, chaos=chaos,
        quiet_timeout_s=1.0, seed=3, prefix="t/", delete_ratio=0.2,
    )  # fmt: skip


def test_a_cluster_that_keeps_every_write_passes() -> None:
    fake = FakeCluster()
    report = asyncio.run(run_check(options(), httpx.MockTransport(fake.handler)))
    assert report.passed and report.identical and report.invoked == 60
    assert report.extra["urls"] == NODES  # found through GET /cluster of --url


def test_a_node_that_drops_writes_fails_the_check() -> None:
    fake = FakeCluster(forget_on_b=True)
    report = asyncio.run(run_check(options(), httpx.MockTransport(fake.handler)))
    assert not report.passed and report.lost and not report.identical
    assert all("http://b:1" in finding.node for finding in report.lost)


def test_chaos_injects_faults_on_the_nodes_and_heals_them_all_at_the_end() -> None:
    fake = FakeCluster()
    report = asyncio.run(run_check(options(chaos=True), httpx.MockTransport(fake.handler)))
    assert report.passed and report.summary()["faults"] in range(2, 100)
    heals = [node for node, method, _ in fake.faults[-3:] if method == "DELETE"]
    assert sorted(heals) == NODES
    posted = [body for _, method, body in fake.faults if method == "POST"]
    for body in posted:
        assert set(body) <= {"block", "block_to", "delay_ms", "loss"}


def test_chaos_without_fault_endpoints_is_refused() -> None:
    fake = FakeCluster(faults_enabled=False)
    with pytest.raises(CheckError, match="--allow-faults"):
        asyncio.run(run_check(options(chaos=True), httpx.MockTransport(fake.handler)))


def test_the_command_rejects_bad_urls_and_reports_unreachable_clusters() -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["check", "--urls", "ftp://x", "--api-key", "k"])
    assert bad.exit_code == 2
    down = runner.invoke(
        app, ["check", "--urls", "http://127.0.0.1:9", "--api-key", "k", "--duration", "1"]
    )
    assert down.exit_code == 4 and "error" in down.output
