"""What a command or ``import rumordb`` loads: the start-up budget, checked by module lists.

Timing targets are measured by ``make bench-cli``; these tests pin the reason it is fast
(no heavy module on the path), which does not vary with the machine's load.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("httpx", "rich", "typer", "pydantic", "fastapi", "rumordb.live", "rumordb.sim",
         "rumordb.core", "msgspec")  # fmt: skip


def loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, check=True)
    return set(json.loads(done.stdout.decode().splitlines()[-1]))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY))


def test_import_rumordb_loads_nothing_else() -> None:
    assert heavy(loaded_after("import rumordb")) == []
    assert not {"rumordb.client", "http.client"} & loaded_after("import rumordb")


def test_the_get_path_loads_no_heavy_module() -> None:
    code = (
        "import sys\n"
        "from rumordb.cli.main import app\n"
        "app.get_command(None, 'get')\n"
        "from rumordb.cli import connect\n"
        "connect.open_client(['http://127.0.0.1:1'], None).close()"
    )
    assert heavy(loaded_after(code)) == []


def test_no_command_module_imports_the_main_module() -> None:
    """Commands are found through main's table, never register themselves on it."""
    from rumordb.cli.main import COMMANDS

    for entry in COMMANDS.values():
        module = entry.target.partition(":")[0]
        modules = loaded_after(f"import {module}")
        assert "rumordb.cli.main" not in modules, module
