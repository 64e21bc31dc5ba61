"""The core is sans-I/O: it imports nothing that touches the network, disk or clock."""

import ast
import pathlib

import pytest

CORE = pathlib.Path(__file__).resolve().parents[2] / "core"
ALLOWED = {
    "__future__",
    "array",  # packed uint64s: the digest's entry hashes (no I/O)
    "base64",
    "binascii",
    "bisect",
    "collections",
    "dataclasses",
    "enum",
    "functools",
    "hashlib",
    "heapq",
    "itertools",  # chain: a split record table iterates its base, then its shards
    "math",
    "msgspec",
    "operator",  # attrgetter: a tick reads every counter in one call (core.counters)
    "re",
    "random",
    "sortedcontainers",  # a pure-Python data structure: the store's sorted key index
    "struct",  # packed digest entry hashes (core.digest, core.record_table)
    "types",  # MappingProxyType: Output's shared, read-only empty counter deltas
    "typing",
    "rumordb.core",
}
FORBIDDEN_CALLS = {
    ("time", "time"),
    ("time", "monotonic"),
    ("random", "random"),
    ("random", "choice"),
}


def modules() -> list[pathlib.Path]:
    return sorted(CORE.glob("*.py"))


def _root(module: str) -> str:
    """The top-level name, or for our own package its subpackage (rumordb.live is not core)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "rumordb" else parts[0]


def imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(_root(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(_root(node.module))
    return roots


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.name)
def test_core_module_imports_only_pure_libraries(path: pathlib.Path) -> None:
    roots = imported_roots(ast.parse(path.read_text()))
    assert roots <= ALLOWED, f"{path.name} imports {sorted(roots - ALLOWED)}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.name)
def test_core_never_reads_the_clock_or_global_randomness(path: pathlib.Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert (node.value.id, node.attr) not in FORBIDDEN_CALLS, (
                f"{path.name}: {node.value.id}.{node.attr}"
            )
        if isinstance(node, ast.ImportFrom) and node.module == "random":
            assert all(alias.name == "Random" for alias in node.names), path.name


def test_the_check_itself_catches_a_forbidden_import() -> None:
    source = "import socket\nfrom asyncio import sleep\nfrom rumordb.live import runner"
    assert imported_roots(ast.parse(source)) - ALLOWED == {"socket", "asyncio", "rumordb.live"}
