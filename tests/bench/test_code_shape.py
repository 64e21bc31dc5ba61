"""The code-shape figures of closing notes: module purposes, longest function and class."""

from __future__ import annotations

from pathlib import Path

from bench.code_shape import Span, longest, purpose

MODULE_A = '''"""Decides a thing.

More text.
"""


def short() -> int:
    return 1


class Big:
    """Three methods."""

    def one(self) -> None:
        pass

    def longest_one(self) -> int:
        """Docstrings count."""
        x = 1
        x += 1
        x += 1
        return x
'''

MODULE_B = """class Small:
    pass


async def spread_out(a: int) -> int:
    b = a
    return b
"""


def test_the_longest_function_is_found_among_methods_and_across_modules(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text(MODULE_A)
    (package / "b.py").write_text(MODULE_B)
    function, cls = longest(package)
    assert function == Span("pkg/a.py:Big.longest_one", 6)
    assert cls == Span("pkg/a.py:Big", 12)


def test_an_empty_package_has_neither(tmp_path: Path) -> None:
    assert longest(tmp_path) == (None, None)


def test_a_modules_purpose_is_its_docstrings_first_line(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(MODULE_A)
    (tmp_path / "b.py").write_text(MODULE_B)
    assert purpose(tmp_path / "a.py") == "Decides a thing."
    assert purpose(tmp_path / "b.py") == ""
