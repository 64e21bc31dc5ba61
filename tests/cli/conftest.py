"""Fixtures of the CLI ring: one real local cluster per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cli.harness import LocalCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("rumor-cli"))
    try:
        yield local.up()
    finally:
        local.close()
