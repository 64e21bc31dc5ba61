"""--seeds naming a host: one URL per address it resolves to (a headless Service's pods).

The resolver is faked everywhere (no DNS): ``expand_seeds`` takes it as an argument, and
the in-process cluster test replaces ``discovery.resolve_host``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from rumordb.live import discovery
from rumordb.live.discovery import MAX_ADDRESSES_PER_SEED, expand_seeds, resolve_host
from rumordb.live.runner import Runner
from tests.live.harness import RoutingTransport, eventually, running_app, settings_for

pytestmark = pytest.mark.anyio

PODS = ["10.1.0.7", "10.1.0.8", "fd00::9"]


class FakeResolver:
    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records
        self.asked: list[str] = []

    async def __call__(self, host: str) -> list[str]:
        self.asked.append(host)
        if host not in self.records:
            raise OSError(f"{host}: name does not resolve")
        return self.records[host]


async def test_a_host_name_seed_expands_to_every_address_it_resolves_to() -> None:
    resolver = FakeResolver({"rumordb-peers.prod.svc": PODS})
    urls = await expand_seeds(["http://rumordb-peers.prod.svc:8001"], resolver)
    assert urls == ["http://10.1.0.7:8001", "http://10.1.0.8:8001", "http://[fd00::9]:8001"]


async def test_ip_literal_seeds_pass_through_without_a_lookup() -> None:
    resolver = FakeResolver({})
    seeds = ["http://127.0.0.2:8001", "https://[::1]:8443", "http://127.0.0.3"]
    assert await expand_seeds(seeds, resolver) == seeds
    assert resolver.asked == []


async def test_an_unresolvable_seed_is_left_out_and_duplicates_collapse() -> None:
    resolver = FakeResolver({"a.test": ["10.0.0.1", "10.0.0.2"], "b.test": ["10.0.0.2"]})
    seeds = ["http://a.test:8001", "http://gone.test:8001", "http://b.test:8001"]
    assert await expand_seeds(seeds, resolver) == ["http://10.0.0.1:8001", "http://10.0.0.2:8001"]
    assert resolver.asked == ["a.test", "gone.test", "b.test"]


async def test_a_name_with_many_records_costs_a_bounded_round() -> None:
    many = [f"10.2.{i // 250}.{i % 250 + 1}" for i in range(500)]
    urls = await expand_seeds(["http://big.test:8001"], FakeResolver({"big.test": many}))
    assert urls == [f"http://{a}:8001" for a in many[:MAX_ADDRESSES_PER_SEED]]


async def test_resolve_host_returns_a_numeric_host_once() -> None:
    assert await resolve_host("127.0.0.5") == ["127.0.0.5"]  # numeric: no lookup at all


async def test_a_node_joins_every_pod_behind_one_seed_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """n1's only seed is a name; each of n2..n4 is found through its own address.

    Without the expansion the HTTP client would ask for the name itself, which no node
    answers here, and n1 would stay alone.
    """
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    monkeypatch.setattr(discovery, "resolve_host", FakeResolver({"peers.test": hosts}))
    transport = RoutingTransport()
    async with contextlib.AsyncExitStack() as stack:
        for i, host in enumerate(hosts, start=2):
            settings = settings_for(tmp_path, f"n{i}", 9001, host=host)
            app, _ = await stack.enter_async_context(running_app(settings, transport))
            transport.add(f"{host}:9001", app)
        seeded = settings_for(tmp_path, "n1", 9001, seeds=["http://peers.test:9001"])
        app1, _ = await stack.enter_async_context(running_app(seeded, transport))
        transport.add("127.0.0.1:9001", app1)
        runner: Runner = app1.state.runner

        async def knows_everyone() -> bool:
            return all(runner.node.membership.is_alive(f"n{i}") for i in (2, 3, 4))

        await eventually(knows_everyone, 10.0)
