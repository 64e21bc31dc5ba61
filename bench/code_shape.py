"""The shape of the code, for closing notes: each module's one-line purpose, and the
longest function and class of each package (lines from ``def``/``class`` to the end,
docstrings included).

Run: ``.venv/bin/python -m bench.code_shape`` (``--map``: the module map of core, live
and sim too). Each package's line: its longest function, then its longest class.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "live", "sim", "cli", "rumordb")


@dataclass(frozen=True, slots=True)
class Span:
    name: str  # module:qualified.name
    lines: int


def spans(path: Path, module: str) -> tuple[list[Span], list[Span]]:
    """(functions, classes) defined in the file at ``path``, nested ones included."""
    functions: list[Span] = []
    classes: list[Span] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                size = (child.end_lineno or child.lineno) - child.lineno + 1
                found = classes if isinstance(child, ast.ClassDef) else functions
                found.append(Span(f"{module}:{name}", size))
                visit(child, name + ".")

    visit(ast.parse(path.read_text()), "")
    return functions, classes


def longest(package: Path) -> tuple[Span | None, Span | None]:
    """The longest function and the longest class of the modules in ``package``."""
    functions: list[Span] = []
    classes: list[Span] = []
    for path in sorted(package.glob("*.py")):
        found_functions, found_classes = spans(path, f"{package.name}/{path.name}")
        functions += found_functions
        classes += found_classes
    top = max(functions, key=lambda s: s.lines, default=None)
    return top, max(classes, key=lambda s: s.lines, default=None)


def purpose(path: Path) -> str:
    """The first line of the module's docstring (empty if it has none)."""
    doc = ast.get_docstring(ast.parse(path.read_text()))
    return doc.splitlines()[0] if doc else ""


def main(argv: list[str]) -> None:
    if "--map" in argv:
        for name in ("core", "live", "sim"):
            for path in sorted((ROOT / name).glob("*.py")):
                if path.name != "__init__.py":
                    print(f"{name}/{path.name:24} {purpose(path)}")
        print()
    for name in PACKAGES:
        print(f"{name:8}", *(f"{s.name} ({s.lines})" if s else "-" for s in longest(ROOT / name)))


if __name__ == "__main__":
    main(sys.argv[1:])
