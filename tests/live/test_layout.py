"""Every live module has its test module, or tests/README.md says why not."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def live_section() -> str:
    text = (ROOT / "tests" / "README.md").read_text()
    return text.split("## live", 1)[1].split("\n## ", 1)[0]


def test_every_live_module_has_a_test_module_or_a_documented_reason() -> None:
    documented = live_section()
    missing = [
        module.name
        for module in sorted((ROOT / "live").glob("*.py"))
        if not (ROOT / "tests" / "live" / f"test_{module.name}").exists()
        and f"`live/{module.name}`" not in documented
    ]
    assert missing == []


def test_every_live_test_file_mirrors_a_module_or_is_documented() -> None:
    documented = live_section()
    stray = [
        test.name
        for test in sorted((ROOT / "tests" / "live").glob("test_*.py"))
        if not (ROOT / "live" / test.name.removeprefix("test_")).exists()
        and f"`tests/live/{test.name}`" not in documented
        and test.name != "test_layout.py"
    ]
    assert stray == []
