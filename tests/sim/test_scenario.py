"""Scenario files: the minimal file loads as written; errors name the offending field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rumordb.sim.scenario import ScenarioError, load_scenario, parse_scenario, parse_value
from tests.sim.helpers import MINIMAL_TOML, minimal_raw


def _error(raw: dict[str, Any], overrides: dict[str, Any] | None = None) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(raw, overrides)
    return str(info.value)


def test_minimal_file_loads_as_written(tmp_path: Path) -> None:
    path = tmp_path / "minimal.toml"
    path.write_text(MINIMAL_TOML)
    scenario = load_scenario(path)
    assert scenario.seed == 7
    assert scenario.cluster.nodes == 5
    assert scenario.node_ids == ["n1", "n2", "n3", "n4", "n5"]
    assert scenario.network.latency_ms == 5.0
    assert [f.action for f in scenario.faults] == ["partition", "heal"]
    assert scenario.faults[0].groups == [["n1", "n2"], ["n3", "n4", "n5"]]


def test_unknown_node_in_a_partition_names_the_fault() -> None:
    raw = minimal_raw()
    raw["faults"][0]["at_s"] = 1
    raw["faults"].insert(1, {"at_s": 2, "action": "partition", "groups": [["n1"], ["n9"]]})
    assert _error(raw) == "faults[1].groups: unknown node 'n9'"


def test_wrong_type_names_the_field() -> None:
    raw = minimal_raw()
    raw["cluster"]["nodes"] = "five"
    assert _error(raw) == "cluster.nodes: expected `int`, got `str`"


def test_unknown_field_is_an_error() -> None:
    raw = minimal_raw()
    raw["gossip"]["fan_out"] = 2
    assert "fan_out" in _error(raw)
    assert _error(raw).startswith("gossip: ")


def test_missing_duration_is_named() -> None:
    raw = minimal_raw()
    del raw["duration_s"]
    assert "duration_s" in _error(raw)


def test_unknown_action_and_topology_are_named() -> None:
    raw = minimal_raw()
    raw["faults"][1]["action"] = "explode"
    assert _error(raw).startswith("faults[1].action: invalid enum value 'explode'")
    raw = minimal_raw()
    raw["network"]["topology"] = "torus"
    assert _error(raw).startswith("network.topology: ")


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("network.loss", 1.5, "network.loss: must be in [0, 1)"),
        ("gossip.fanout", 0, "gossip.fanout: must be >= 1"),
        ("cluster.nodes", 0, "cluster.nodes: must be >= 1"),
        ("cluster.nodes", 1_000_001, "cluster.nodes: must be <= 1000000"),
        ("workload.from_nodes", ["n1", "n6"], "workload.from_nodes: unknown node 'n6'"),
        ("workload.stop_s", 0.5, "workload.stop_s: must be >= workload.start_s"),
        ("network.topology", "graphml", "network.graphml: required for topology 'graphml'"),
    ],
)
def test_meaning_checks_name_the_field(path: str, value: Any, expected: str) -> None:
    assert _error(minimal_raw(), {path: value}) == expected


def test_a_million_nodes_is_a_valid_cluster() -> None:
    scenario = parse_scenario(minimal_raw(), {"cluster.nodes": 1_000_000})
    assert scenario.cluster.nodes == len(scenario.node_ids) == 1_000_000


def test_fault_specific_requirements() -> None:
    raw = minimal_raw()
    raw["faults"].append({"at_s": 9, "action": "crash"})
    assert _error(raw) == "faults[2].nodes: required for action 'crash'"
    raw = minimal_raw()
    raw["faults"].append({"at_s": 9, "action": "link", "links": [["n1", "n2", "n3"]], "loss": 1})
    assert _error(raw) == "faults[2].links: each link is a pair of nodes"
    raw = minimal_raw()
    raw["faults"].append({"at_s": 9, "action": "link"})
    assert _error(raw) == "faults[2]: action 'link' needs latency_ms, jitter_ms or loss"
    raw = minimal_raw()
    raw["faults"].append({"at_s": 99, "action": "heal"})
    assert _error(raw) == "faults[2].at_s: must be within [0, duration_s]"
    raw = minimal_raw()
    raw["faults"][0]["groups"] = [["n1", "n2"], ["n2", "n3"]]
    assert _error(raw) == "faults[0].groups: node ['n2'] is in two groups"


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("seed = \n")
    with pytest.raises(ScenarioError, match=r"broken\.toml: invalid TOML"):
        load_scenario(path)


def test_overrides_and_seed_replace_file_values(tmp_path: Path) -> None:
    path = tmp_path / "minimal.toml"
    path.write_text(MINIMAL_TOML)
    scenario = load_scenario(path, {"gossip.fanout": 4, "churn.interval_s": 2.5}, seed=99)
    assert (scenario.gossip.fanout, scenario.churn.interval_s, scenario.seed) == (4, 2.5, 99)
    with pytest.raises(ScenarioError, match=r"^gossip\.fanout: expected `int`, got `str`$"):
        load_scenario(path, {"gossip.fanout": "many"})


def test_command_line_values_read_as_toml_literals() -> None:
    assert parse_value("3") == 3
    assert parse_value("0.25") == 0.25
    assert parse_value("true") is True
    assert parse_value('"static"') == "static"
    assert parse_value("static") == "static"


def test_an_observer_samples_at_a_period_of_zero_or_more() -> None:
    assert parse_scenario(minimal_raw(), {"network.observer_sample_ms": 250}).network.observer_sample_ms == 250  # fmt: skip
    assert parse_scenario(minimal_raw()).network.observer_sample_ms == 0  # none by default
    error = _error(minimal_raw(), {"network.observer_sample_ms": -1})
    assert error == "network.observer_sample_ms: must be >= 0"


def test_a_cluster_is_on_one_machine_only_when_the_scenario_says_so() -> None:
    assert parse_scenario(minimal_raw()).network.one_machine is False
    assert parse_scenario(minimal_raw(), {"network.one_machine": True}).network.one_machine
