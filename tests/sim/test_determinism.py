"""Same scenario and seed, same event trace (compared by its hash), in and across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest

from rumordb.sim.engine import Simulation
from tests.sim.helpers import MINIMAL_TOML, build, minimal_raw, run


def _busy_raw() -> dict[str, object]:
    """Loss, jitter, deletes, reads, churn and a clock fault: every random path is used."""
    raw = minimal_raw()
    raw["duration_s"] = 15
    raw["cluster"]["nodes"] = 10  # more members than one message gossips: sampled
    raw["network"].update(loss=0.05, jitter_ms=3)
    raw["workload"].update(delete_fraction=0.2, reads_per_s=10)
    raw["churn"] = {"interval_s": 2, "down_s": 1.5, "start_s": 1, "stop_s": 9, "state": "lose"}
    raw["faults"].append({"at_s": 4, "action": "clock", "nodes": ["n3"], "offset_ms": 250})
    return raw


def test_same_seed_gives_the_same_trace_hash_and_metrics() -> None:
    first, second = run(_busy_raw()), run(_busy_raw())
    assert first["trace_hash"] == second["trace_hash"]
    for name in ("messages_sent", "bytes_sent", "converged_at_s", "writes", "series"):
        assert first[name] == second[name]


def test_another_seed_gives_another_trace() -> None:
    assert run(_busy_raw(), seed=1)["trace_hash"] != run(_busy_raw(), seed=2)["trace_hash"]


def test_trace_text_is_identical_line_for_line() -> None:
    texts = []
    for _ in range(2):
        out = StringIO()
        Simulation(build(_busy_raw()), trace_out=out).run()
        texts.append(out.getvalue())
    assert texts[0] == texts[1]
    assert " send " in texts[0]
    assert "fault clock" in texts[0]
    assert "churn crash" in texts[0]


def _hashes_under(hash_seeds: list[str], scenario: Path, argv: list[str]) -> set[str]:
    """The trace hash of ``argv`` run once per PYTHONHASHSEED value."""
    hashes = set()
    for hash_seed in hash_seeds:
        out = scenario.parent / f"out-{hash_seed}"
        done = subprocess.run(
            [*argv, str(scenario), str(out)],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        hashes.add(done.stdout.strip().splitlines()[-1])
    return hashes


_IN_PROCESS = [
    sys.executable,
    "-c",
    "import sys; from pathlib import Path; from sim.engine import Simulation; "
    "from rumordb.sim.scenario import load_scenario; "
    "print(Simulation(load_scenario(Path(sys.argv[1]))).run()['trace_hash'])",
]


def test_trace_hash_does_not_depend_on_the_process_hash_seed(tmp_path: Path) -> None:
    """String hashing is salted per process; nothing in a run may depend on it."""
    scenario = tmp_path / "minimal.toml"
    scenario.write_text(MINIMAL_TOML)
    hashes = _hashes_under(["1", "2"], scenario, _IN_PROCESS)
    assert len(hashes) == 1
    assert run(minimal_raw())["trace_hash"] in hashes


def test_tombstone_maintenance_does_not_depend_on_the_process_hash_seed(tmp_path: Path) -> None:
    scenario = tmp_path / "busy.toml"
    scenario.write_text(tomli_w_dumps(_busy_raw()))
    assert len(_hashes_under(["1", "2", "3"], scenario, _IN_PROCESS)) == 1


def test_rumor_sim_run_gives_one_trace_whatever_the_hash_seed(tmp_path: Path) -> None:
    """The command pins PYTHONHASHSEED itself, so even tombstone maintenance replays."""
    scenario = tmp_path / "busy.toml"
    scenario.write_text(tomli_w_dumps(_busy_raw()))
    rumor = str(Path(sys.executable).parent / "rumor")
    hashes = set()
    for hash_seed in ("1", "2"):
        out = tmp_path / f"out-{hash_seed}"
        subprocess.run(
            [rumor, "sim", "run", str(scenario), "--out", str(out)],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            check=True,
            capture_output=True,
            timeout=120,
        )
        hashes.add(json.loads((out / "metrics.json").read_text())["trace_hash"])
    assert len(hashes) == 1


def tomli_w_dumps(raw: dict[str, object]) -> str:
    """Enough TOML for these scenarios: tables of scalars and lists, arrays of tables."""
    lines: list[str] = []
    tables = {k: v for k, v in raw.items() if isinstance(v, dict)}
    arrays = {k: v for k, v in raw.items() if isinstance(v, list)}
    lines += [f"{k} = {json.dumps(v)}" for k, v in raw.items() if k not in tables | arrays]
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    for name, items in arrays.items():
        for item in items:
            lines.append(f"[[{name}]]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def _every_tick_and_skipping(raw: dict[str, object]) -> tuple[list[str], list[dict[str, object]]]:
    texts, metrics = [], []
    for skip_idle in (False, True):
        out = StringIO()
        simulation = Simulation(build(raw), trace_out=out, skip_idle=skip_idle)
        result = simulation.run()
        for timing in ("wall_time_s", "messages_per_wall_s"):
            result.pop(timing, None)
        result["counts"] = simulation.counts
        texts.append(out.getvalue())
        metrics.append(result)
    return texts, metrics


def _variant(name: str) -> dict[str, object]:
    raw: dict[str, Any] = _busy_raw()
    if name == "drift":  # drifting clocks: the readings at deadlines round
        raw["clocks"] = {"skew_ms": 40, "drift_ppm": 300}
    elif name == "sharded_static_ttl":
        raw["cluster"].update(sharding=True, replicas=2, membership="static")
        raw["workload"]["ttl_s"] = 1.5
    elif name == "posts":
        raw["network"]["posts"] = True
    elif name == "leave_forget":
        raw.pop("churn")
        raw["faults"] += [
            {"at_s": 5, "action": "leave", "nodes": ["n7"]},
            {"at_s": 6, "action": "crash", "nodes": ["n7"], "state": "wipe"},
            {"at_s": 9, "action": "forget", "nodes": ["n7"]},
        ]
    return raw


@pytest.mark.parametrize("name", ["busy", "drift", "sharded_static_ttl", "posts", "leave_forget"])
def test_sleeping_through_idle_ticks_gives_the_run_every_tick_gives(name: str) -> None:
    """The simulator skips idle ticks (``skip_idle``); waking every node at every deadline
    must give the same trace, line for line, and the same metrics and counts."""
    texts, metrics = _every_tick_and_skipping(_variant(name))
    assert texts[0] == texts[1] and " delivered " in texts[0]
    assert metrics[0] == metrics[1]
