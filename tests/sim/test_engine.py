"""The engine drives reads and listings through the core's plans, as the live edge does."""

from typing import Any

from rumordb.sim.engine import Simulation
from rumordb.sim.workload import Op, value_for
from tests.sim.helpers import build, minimal_raw, run


def _quiet_sharded(**overrides: Any) -> Simulation:
    """Five sharded nodes, replicas 2, no workload and no faults: the test drives them."""
    raw = minimal_raw()
    raw["workload"] = {"writes_per_s": 0}
    raw["faults"] = []
    return Simulation(build(raw, cluster__sharding=True, cluster__replicas=2, **overrides))


def _put(key: str, seq: int) -> Op:
    return Op(0.0, None, "put", key, value_for(f"v{seq}:", 8), False, 0, seq)


def _owners(sim: Simulation, key: str) -> list[str]:
    return sim.nodes["n1"].node.view.owners(key)


def test_a_read_at_a_non_owner_is_answered_by_an_owner() -> None:
    sim = _quiet_sharded()
    key = next(f"k{i}" for i in range(100) if "n1" not in _owners(sim, f"k{i}"))
    assert sim.read_server("n1", key) in _owners(sim, key)


def test_an_owner_that_never_saw_the_key_falls_back_to_a_co_owner() -> None:
    sim = _quiet_sharded()
    key = "k1"
    first, second = _owners(sim, key)
    sim.serve(first, _put(key, 1))  # its push to ``second`` is still in flight
    assert sim.nodes[second].node.view.version(key) is None
    assert sim.read_server(second, key) == first, "the co-owner's value counts"
    assert not sim.checker.read(sim.read_server(second, key), key), "not a stale read"


def test_the_fallback_answers_not_found_here_when_no_co_owner_has_a_value() -> None:
    sim = _quiet_sharded()
    _, second = _owners(sim, "k1")
    assert sim.read_server(second, "k1") == second


def test_a_sharded_listing_gathers_every_up_peer_and_misses_only_the_down_ones() -> None:
    sim = _quiet_sharded()
    keys = [f"k{i}" for i in range(20)]
    for seq, key in enumerate(keys, 1):
        sim.serve("n1", _put(key, seq))  # stored at the first owner, pushes pending
    assert sim.list_keys("n2", 100) == sorted(keys)
    sim.crash("n3", "keep")
    only_on_n3 = {k for k in keys if sim.nodes["n3"].node.view.version(k) is not None} - {
        k for name in ("n1", "n2", "n4", "n5") for k, _ in sim.nodes[name].node.view.items()
    }
    assert only_on_n3, "the test needs keys that only the crashed node holds"
    assert sim.list_keys("n2", 100) == sorted(set(keys) - only_on_n3)


def test_listings_stop_at_the_page_limit_in_key_order() -> None:
    sim = _quiet_sharded()
    for seq, key in enumerate(["b", "a", "d", "c", "f", "e", "g"], 1):
        sim.serve("n1", _put(key, seq))
    assert sim.list_keys("n4", 5) == ["a", "b", "c", "d", "e"]


def test_a_run_with_listings_counts_them_and_ends_with_complete_ones() -> None:
    raw = minimal_raw()
    raw["workload"].update(lists_per_s=5, reads_per_s=5)
    metrics = run(raw, cluster__sharding=True, cluster__replicas=2)
    writes = metrics["writes"]
    assert metrics["converged"] and writes["lists"] > 0 and writes["reads"] > 0
    assert writes["incomplete_lists"] < writes["lists"], "after the heal, listings are whole"


def test_scripted_leave_and_forget_move_members_to_left_and_out() -> None:
    raw = minimal_raw()
    raw["duration_s"] = 20
    raw["faults"] = [
        {"at_s": 2, "action": "leave", "nodes": ["n5"]},
        {"at_s": 3, "action": "crash", "nodes": ["n4"]},
        {"at_s": 12, "action": "forget", "nodes": ["n4", "n1"]},  # n1 is alive: refused
    ]
    sim = Simulation(build(raw))
    sim.run()
    for name in ("n1", "n2", "n3"):
        view = sim.nodes[name].node.membership
        left = view.member_info("n5")
        assert left is not None and left.state.value == "left"
        assert view.member_info("n4") is None, "forgotten"
    assert sim.nodes["n2"].node.membership.member_info("n1") is not None
    assert any(e["action"] == "leave" for e in sim.events)


def test_values_with_a_ttl_expire_on_every_simulated_node_and_the_run_converges() -> None:
    raw = minimal_raw()
    raw.update(duration_s=25, faults=[])
    raw["workload"].update(writes_per_s=20, keys=10, stop_s=4, ttl_s=2.0, delete_fraction=0.0)
    simulation = Simulation(build(raw, seed=3))
    metrics = simulation.run()
    assert metrics["converged"], metrics["divergent_sample"]
    for sim_node in simulation.nodes.values():
        records = sim_node.node.view.records()
        assert all(record.tombstone for record in records.values()), "every value expired"
        assert sim_node.node.view.counters().keys_expired > 0
