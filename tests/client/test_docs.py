"""The examples in the client's docstrings and in the README run against real nodes."""

from __future__ import annotations

import doctest
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from rumordb import Client
from tests.live.harness import ADMIN_KEY, Cluster

pytestmark = [pytest.mark.live]

README = Path(__file__).resolve().parents[2] / "README.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
DOCUMENTED = [
    "rumordb",
    "rumordb.api",
    "rumordb.errors",
    "rumordb.client",
    "rumordb.async_client",
    "rumordb.follow",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path_factory.mktemp("docs"))
    try:
        for name in ("n1", "n2", "n3"):
            nodes.add(name)
        nodes.wait_ready()
        nodes.wait_members({"n1", "n2", "n3"})
        yield nodes
    finally:
        nodes.close()


def urls(cluster: Cluster) -> list[str]:
    return [node.url for node in cluster.nodes.values()]


@pytest.mark.parametrize("name", DOCUMENTED)
def test_docstring_examples_run(name: str, cluster: Cluster) -> None:
    module = importlib.import_module(name)
    with Client(urls(cluster), api_key=ADMIN_KEY) as db:
        globs = {"URLS": urls(cluster), "KEY": ADMIN_KEY, "db": db}
        result = doctest.testmod(module, extraglobs=globs, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if name != "rumordb.errors":
        assert result.attempted > 0, f"{name} has no examples"


def test_the_readme_python_example_runs(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = PYTHON_BLOCK.findall(README.read_text(encoding="utf-8"))
    assert blocks, "README.md has a ```python example"
    monkeypatch.setenv("RUMOR_API_KEY", ADMIN_KEY)
    for block in blocks:
        for index, url in enumerate(urls(cluster), start=1):
            block = block.replace(f"http://127.0.0.1:800{index}", url)
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
