"""Fixtures of the live ring; the harnesses themselves live in ``tests.live.harness``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.live.harness import Cluster


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(**options: Any) -> Cluster:
        cluster = Cluster(tmp_path / f"c{len(made)}", **options)
        cluster.root.mkdir(parents=True, exist_ok=True)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.close()
