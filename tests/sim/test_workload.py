"""Workloads: a pure, seeded stream of timed ops that both drivers can replay.

The flat ``[workload]`` (kinds in proportion to their rates, listings included) and
scripted ``[[workload.phases]]``.
"""

from __future__ import annotations

import random
from collections import Counter
from io import StringIO
from typing import Any

import pytest

from rumordb.core import Node, Record, WriteStatus
from rumordb.sim.engine import Simulation
from rumordb.sim.scenario import ScenarioError, WorkloadSpec, parse_scenario
from rumordb.sim.workload import Op, OpStream, context_of, script, value_for
from tests.sim.helpers import build, minimal_raw, phased_raw, run


def _flat(spec: WorkloadSpec, duration_s: float, seed: int = 1) -> list[Op]:
    """A flat workload's ops, picking a node after each as the engine does."""
    stream = OpStream(spec, ["n1", "n2", "n3"], duration_s, seed)
    ops = []
    for op in stream:
        stream.pick(op, lambda _name: True)
        ops.append(op)
    return ops


def _kinds(spec: WorkloadSpec, seed: int = 1) -> Counter[str]:
    return Counter(op.kind for op in _flat(spec, 100.0, seed))


def test_kinds_follow_their_rates() -> None:
    kinds = _kinds(WorkloadSpec(writes_per_s=10, reads_per_s=20, lists_per_s=10))
    total = sum(kinds.values())
    assert abs(kinds["put"] / total - 0.25) < 0.05
    assert abs(kinds["read"] / total - 0.5) < 0.05
    assert abs(kinds["list"] / total - 0.25) < 0.05


def test_no_listing_rate_means_no_listings() -> None:
    assert "list" not in _kinds(WorkloadSpec(writes_per_s=10, reads_per_s=10))


def test_listings_name_no_key_and_writes_count_up() -> None:
    spec = WorkloadSpec(writes_per_s=5, lists_per_s=5, list_limit=7)
    ops = _flat(spec, 10.0, seed=2)
    assert all(op.key == "" and op.list_limit == 7 for op in ops if op.kind == "list")
    assert [op.seq for op in ops if op.kind == "put"] == list(
        range(1, 1 + sum(op.kind == "put" for op in ops))
    )


def test_flat_listings_keep_the_draws_they_were_introduced_with() -> None:
    # The stream rumordb drew for this spec before workloads had phases (seed 5, with a
    # node picked after each op): a changed draw order would change every trace.
    spec = WorkloadSpec(writes_per_s=4, reads_per_s=3, lists_per_s=3, keys=10, delete_fraction=0.3)
    ops = _flat(spec, 100.0, seed=5)[:12]
    assert [(op.kind, op.key, round(op.at_s, 4)) for op in ops] == [
        ("put", "k5", 0.0),
        ("read", "k1", 0.0656),
        ("put", "k5", 0.0665),
        ("read", "k2", 0.5835),
        ("read", "k1", 0.5861),
        ("read", "k4", 0.6384),
        ("read", "k0", 0.7317),
        ("put", "k9", 0.7837),
        ("put", "k8", 0.8305),
        ("list", "", 0.8449),
        ("read", "k6", 0.9063),
        ("list", "", 1.0259),
    ]


def test_same_seed_same_stream() -> None:
    spec = WorkloadSpec(writes_per_s=10, reads_per_s=5, lists_per_s=1, delete_fraction=0.3)
    assert _flat(spec, 20.0, seed=3) == _flat(spec, 20.0, seed=3)


def test_values_have_the_asked_size_and_name_their_write() -> None:
    assert len(value_for("v7:", 100)) == 100 and value_for("v7:", 100).startswith(b"v7:")
    assert value_for("v7:", 0) == b""


def _ops(raw: dict[str, Any], seed: int | None = None) -> list[Op]:
    s = parse_scenario(raw, seed=seed)
    return script(s.workload, s.node_ids, s.duration_s, s.seed)


def test_the_generator_is_deterministic_from_the_seed() -> None:
    first, again = _ops(phased_raw()), _ops(phased_raw())
    assert first == again
    assert _ops(phased_raw(), seed=4) != first


def test_a_sequential_phase_writes_each_key_once_in_order_at_the_rate() -> None:
    ops = [op for op in _ops(phased_raw()) if op.phase == 0]
    assert [op.key for op in ops] == [f"k{i}" for i in range(200)]
    assert {op.node for op in ops} == {"n1"}
    assert [op.at_s for op in ops[:3]] == [1.0, 1.01, 1.02]
    assert ops[-1].at_s == pytest.approx(2.99)  # [start_s, stop_s): 3.0 is not included
    assert all(op.kind == "put" and op.value and len(op.value) == 64 for op in ops)


def test_a_mixed_phase_draws_every_kind_from_its_keys_and_nodes() -> None:
    ops = [op for op in _ops(phased_raw()) if op.phase == 1]
    assert all(4 <= op.at_s < 9 for op in ops)
    assert {op.key for op in ops} == {"a", "b", "c", "k7"}
    assert {op.node for op in ops} == {"n1", "n3"}
    labels = {op.label for op in ops}
    assert labels == {"put", "put-if-match", "delete", "read"}
    assert all(op.value is None for op in ops if op.kind != "put")
    assert 150 < len(ops) < 250  # 40/s over 5 s, Poisson


def test_phases_merge_in_time_order() -> None:
    times = [op.at_s for op in _ops(phased_raw())]
    assert times == sorted(times)


def test_writes_caps_a_phase() -> None:
    raw = phased_raw()
    raw["workload"]["phases"][1]["writes"] = 5
    ops = [op for op in _ops(raw) if op.phase == 1]
    assert sum(op.kind != "read" for op in ops) == 5


def test_a_phase_that_picks_up_nodes_is_not_a_script() -> None:
    raw = phased_raw()
    raw["workload"]["phases"][1]["pick"] = "up"
    with pytest.raises(ValueError, match=r"phases \[1\] pick their node"):
        _ops(raw)
    s = parse_scenario(raw)
    stream = OpStream(s.workload, s.node_ids, s.duration_s, s.seed)
    loose = next(op for op in stream if op.phase == 1)
    assert loose.node is None
    assert stream.pick(loose, lambda name: name == "n3") == "n3"
    assert stream.pick(loose, lambda name: False) is None


def test_a_phased_scenario_runs_identically_twice() -> None:
    first, second = run(phased_raw()), run(phased_raw())
    assert first["trace_hash"] == second["trace_hash"]
    assert first["converged"] and first["writes"] == second["writes"]
    assert first["keys"] == 203  # k0..k199, then a, b, c (k7 is one of the first 200)


def test_conditional_puts_and_both_writers_reach_the_trace() -> None:
    trace = StringIO()
    Simulation(build(phased_raw()), trace_out=trace).run()
    lines = trace.getvalue().splitlines()
    assert any(" op put-if-match " in line and line.endswith(" ok") for line in lines)
    writers = {line.split()[4] for line in lines if " op put " in line}
    assert writers == {"n1", "n3"}


def test_a_scripted_op_whose_node_is_down_fails_like_a_client_request() -> None:
    raw = phased_raw()
    raw["faults"] = [
        {"at_s": 0.5, "action": "crash", "nodes": ["n1"]},
        {"at_s": 3.5, "action": "restart", "nodes": ["n1"]},
    ]
    metrics = run(raw)
    assert metrics["failed_ops"] >= 200  # all of phase 0, and n1's share of phase 1


def test_the_context_of_a_read_names_its_version() -> None:
    node = Node("n1", "n1", rng=random.Random(1), now=0.0)
    first = node.put("k", b"1", "text/plain", 1.0).record
    assert first is not None
    context = context_of(first)
    assert context is not None and (context.clock, context.hlc) == (first.clock, first.hlc)
    node.put("k", b"2", "text/plain", 2.0)  # someone else's write in between
    stale = node.put("k", b"3", "text/plain", 3.0, context)
    assert stale.status is WriteStatus.PRECONDITION_FAILED
    tombstone = Record(b"", "x", first.clock, first.hlc, "n1", True)
    assert context_of(tombstone) is None and context_of(None) is None


def _error(raw: dict[str, Any]) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(raw)
    return str(info.value)


def _phase_error(**fields: Any) -> str:
    raw = phased_raw()
    raw["workload"]["phases"][1].update(fields)
    return _error(raw)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"stop_s": 3}, "workload.phases[1].stop_s: must be > workload.phases[1].start_s"),
        ({"rate_per_s": 0}, "workload.phases[1].rate_per_s: must be > 0"),
        ({"nodes": []}, "workload.phases[1].nodes: must not be empty (omit it for every node)"),
        ({"nodes": ["n1", "n9"]}, "workload.phases[1].nodes: unknown node 'n9'"),
        ({"nodes": ["n1", "n1"]}, "workload.phases[1].nodes: names a node twice"),
        ({"start_s": 20}, "workload.phases[1].start_s: must be within [0, duration_s)"),
        ({"key_range": [0, 5]}, "workload.phases[1]: give exactly one of key_range and key_list"),
        ({"key_list": []}, "workload.phases[1].key_list: must not be empty"),
        (
            {"mix": {"put": 0.5, "delete": 0.2}},
            "workload.phases[1].mix: shares must add up to 1 (they add up to 0.7)",
        ),
        ({"mix": {"put": 1.5, "delete": -0.5}}, "workload.phases[1].mix.delete: must be >= 0"),
        ({"writes": 0}, "workload.phases[1].writes: must be >= 1"),
        ({"rte": 3}, "workload.phases[1]: object contains unknown field `rte`"),
        ({"mix": {"puts": 1}}, "workload.phases[1].mix: object contains unknown field `puts`"),
        ({"pick": "any"}, "workload.phases[1].pick: invalid enum value 'any'"),
    ],
)
def test_bad_phases_are_refused_naming_the_field(fields: dict[str, Any], expected: str) -> None:
    assert _phase_error(**fields) == expected


def test_key_text_and_ranges_are_checked() -> None:
    assert _phase_error(key_list=["a", "b\n"]).startswith(
        "workload.phases[1].key_list: 'b\\n': keys are non-empty UTF-8 text"
    )
    raw = phased_raw()
    raw["workload"]["phases"][0]["key_range"] = [5, 5]
    assert _error(raw) == "workload.phases[0].key_range: needs 0 <= first < stop"


def test_a_phase_needs_a_rate() -> None:
    raw = phased_raw()
    del raw["workload"]["phases"][0]["rate_per_s"]
    assert _error(raw) == "workload.phases[0]: object missing required field `rate_per_s`"


def test_phases_and_the_flat_workload_do_not_mix() -> None:
    raw = phased_raw()
    raw["workload"]["writes_per_s"] = 10
    assert _error(raw) == (
        "workload.writes_per_s: not with workload.phases "
        "(the flat fields are one phase; put it in a phase)"
    )


def test_the_flat_workload_is_one_phase_that_picks_up_nodes() -> None:
    s = build(minimal_raw())
    stream = OpStream(s.workload, s.node_ids, s.duration_s, s.seed)
    [phase] = stream.phases
    assert (phase.start_s, phase.stop_s, phase.rate_per_s, phase.scripted) == (1, 10, 20, False)
    assert all(op.node is None and op.key.startswith("k") for op in stream)


def test_an_override_can_name_a_phase_by_its_index() -> None:
    s = parse_scenario(phased_raw(), {"workload.phases.1.rate_per_s": 10})
    assert [p.rate_per_s for p in s.workload.phases] == [100, 10]
    with pytest.raises(ScenarioError, match=r"^workload\.phases\.5\.rate_per_s: 5 is not an"):
        parse_scenario(phased_raw(), {"workload.phases.5.rate_per_s": 10})


def test_a_mixed_phase_without_listings_keeps_its_draws() -> None:
    # Phase 1 of PHASED_TOML as drawn before a mix could list: ``list`` took no draw.
    ops = [op for op in _ops(phased_raw()) if op.phase == 1][:6]
    assert [(op.label, op.key, op.node, round(op.at_s, 4)) for op in ops] == [
        ("put", "b", "n3", 4.0),
        ("read", "k7", "n1", 4.0161),
        ("put", "a", "n1", 4.0725),
        ("put-if-match", "c", "n3", 4.1313),
        ("put-if-match", "b", "n1", 4.1322),
        ("put", "b", "n1", 4.1467),
    ]


def _listing_phase(**fields: Any) -> dict[str, Any]:
    raw = phased_raw()
    raw["workload"]["phases"][1]["mix"] = {"put": 0.5, "read": 0.2, "list": 0.3}
    raw["workload"]["phases"][1].update(fields)
    return raw


def test_a_phase_mix_can_list_at_its_page_size() -> None:
    ops = [op for op in _ops(_listing_phase(list_limit=3)) if op.phase == 1]
    kinds = Counter(op.kind for op in ops)
    assert abs(kinds["list"] / len(ops) - 0.3) < 0.1 and kinds["put"] and kinds["read"]
    listings = [op for op in ops if op.kind == "list"]
    assert all(op.key == "" and op.value is None and op.list_limit == 3 for op in listings)
    assert {op.node for op in listings} == {"n1", "n3"}, "a scripted listing names its node"


def test_a_sequential_phase_skips_no_key_for_its_listings() -> None:
    raw = _listing_phase(key_order="sequential", key_list=["a", "b", "c"])
    keys = [op.key for op in _ops(raw) if op.phase == 1 and op.kind != "list"]
    assert keys[:7] == ["a", "b", "c", "a", "b", "c", "a"]


def test_a_phase_of_listings_only_needs_no_keys() -> None:
    raw = phased_raw()
    phase = raw["workload"]["phases"][1]
    del phase["key_list"]
    phase["mix"] = {"list": 1.0}
    ops = [op for op in _ops(raw) if op.phase == 1]
    assert ops and {op.kind for op in ops} == {"list"}
    phase["mix"] = {"list": 0.5, "read": 0.5}
    assert _error(raw) == "workload.phases[1]: give exactly one of key_range and key_list"


def test_a_run_with_a_listing_phase_checks_every_listing() -> None:
    trace = StringIO()
    metrics = Simulation(build(_listing_phase()), trace_out=trace).run()
    writes = metrics["writes"]
    assert writes["lists"] == trace.getvalue().count(" op list ") > 0
    assert writes["incomplete_lists"] < writes["lists"]


@pytest.mark.parametrize("limit", [0, 1001])
def test_list_limits_are_bounded_like_the_live_edge(limit: int) -> None:
    assert _phase_error(list_limit=limit) == "workload.phases[1].list_limit: must be in [1, 1000]"
    raw = minimal_raw()
    raw["workload"]["list_limit"] = limit
    assert _error(raw) == "workload.list_limit: must be in [1, 1000]"


def _flat_stream(**fields: Any) -> list[Op]:
    spec = WorkloadSpec(writes_per_s=10, delete_fraction=0.3, reads_per_s=5, **fields)
    return list(OpStream(spec, ["n1", "n2"], 20.0, 4))


def test_a_ttl_applies_to_puts_only_and_leaves_the_stream_as_it_was() -> None:
    ops, same = _flat_stream(ttl_s=2.5), _flat_stream()
    assert {op.ttl_s for op in ops if op.kind == "put"} == {2.5}
    assert {op.ttl_s for op in ops if op.kind != "put"} == {0.0}
    assert {op.ttl_s for op in same} == {0.0}
    assert [(o.at_s, o.kind, o.key) for o in ops] == [(o.at_s, o.kind, o.key) for o in same]


def test_a_phase_ttl_applies_to_its_puts_only() -> None:
    raw = phased_raw()
    raw["workload"]["phases"][1]["ttl_s"] = 3
    ops = _ops(raw)
    assert {op.ttl_s for op in ops if op.phase == 1 and op.kind == "put"} == {3.0}
    assert {op.ttl_s for op in ops if op.phase == 0 or op.kind != "put"} == {0.0}
    plain = _ops(phased_raw())
    assert [(o.at_s, o.kind, o.key) for o in ops] == [(o.at_s, o.kind, o.key) for o in plain]
    assert _phase_error(ttl_s=-1) == "workload.phases[1].ttl_s: must be >= 0"
