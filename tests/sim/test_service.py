"""Each node's event loop as one FIFO server on the machine's shared cores, its disk's
group commit, the wake-up draw (``sim.service``), and what they do to posts, client
writes, the work beside the protocol and restarts (``sim.posts``)."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest

from rumordb.sim.calibration import Calibration, load_calibration, to_toml
from rumordb.sim.engine import Simulation
from rumordb.sim.posts import OBSERVER, SideWork, carried_counts
from rumordb.sim.service import Commits, Servers, spread_sampler, wakeup_sampler
from tests.sim.helpers import build, minimal_raw
from tests.sim.test_posts import FREE, Sim


def test_work_that_arrives_together_is_served_one_after_the_other_in_arrival_order() -> None:
    servers = Servers()
    done = [servers.serve("a", 1.0, 0.5) for _ in range(3)]
    assert done == [1.5, 2.0, 2.5]
    assert servers.busy_s == 1.5 and servers.waited_s == 0.5 + 1.0


def test_each_node_has_its_own_server_and_an_idle_one_starts_at_once() -> None:
    servers = Servers()
    assert servers.serve("a", 1.0, 0.5) == 1.5
    assert servers.serve("b", 1.0, 0.5) == 1.5  # another node: no wait
    assert servers.serve("a", 3.0, 0.5) == 3.5  # idle again by then
    assert servers.waited_s == 0.0


def test_a_crash_drops_the_queued_work() -> None:
    servers = Servers()
    servers.serve("a", 0.0, 10.0)
    servers.idle("a")
    assert servers.serve("a", 1.0, 0.5) == 1.5


def test_only_work_that_finds_its_loop_asleep_pays_a_wake_up() -> None:
    servers = Servers(wakeup_s=lambda: 0.25)
    assert servers.serve("a", 1.0, 0.5) == 1.75  # asleep: woken 0.25 late
    assert servers.serve("a", 1.0, 0.5) == 2.25  # the loop is running: no wake-up
    assert servers.serve("a", 5.0, 0.5) == 5.75


def test_writes_that_arrive_during_a_commit_share_the_next_one() -> None:
    commits = Commits()
    assert commits.commit("a", 0.0, 1.0) == 1.0
    assert commits.commit("a", 0.2, 1.0) == 2.0  # waits for the one under way
    assert commits.commit("a", 0.7, 1.0) == 2.0  # joins the queued one
    assert commits.commit("a", 1.5, 1.0) == 3.0  # the next has started: one more
    assert commits.commits == 3 and commits.on_disk_s("a") == 3.0
    assert commits.commit("b", 0.5, 1.0) == 1.5


def test_wake_ups_are_drawn_from_the_quantiles_and_none_draws_nothing() -> None:
    rng = random.Random(3)
    draw = wakeup_sampler([300.0, 100.0, 200.0], rng)
    found = {draw() for _ in range(200)}
    assert found == {100e-6, 200e-6, 300e-6}
    untouched = random.Random(3)
    assert wakeup_sampler([], untouched)() == 0.0
    assert untouched.random() == random.Random(3).random()


def test_every_job_costs_its_constant_times_a_draw_of_the_spread() -> None:
    draws = iter([0.5, 3.0])
    servers = Servers(spread=lambda: next(draws))
    assert servers.serve("a", 1.0, 0.2) == pytest.approx(1.1)  # a cheap one
    assert servers.serve("a", 1.0, 0.2) == pytest.approx(1.7)  # a slow one, queued behind
    assert servers.busy_s == pytest.approx(0.7)


def test_spreads_are_drawn_from_the_quantiles_and_none_draws_nothing() -> None:
    draw = spread_sampler([1.5, 0.5, 1.0], random.Random(4))
    assert {draw() for _ in range(200)} == {0.5, 1.0, 1.5}
    untouched = random.Random(4)
    assert spread_sampler([], untouched)() == 1.0
    assert untouched.random() == random.Random(4).random()


def test_a_spread_makes_the_lag_tail_longer_and_keeps_a_run_reproducible(
    tmp_path: Path,
) -> None:
    def lag(spread: list[float]) -> tuple[str, dict[str, float]]:
        default = load_calibration()
        constants = msgspec.structs.replace(default.constants, service_spread=spread)
        path = tmp_path / f"spread{len(spread)}.toml"
        path.write_text(to_toml(Calibration(constants=constants, machine=default.machine)))
        raw = minimal_raw() | {"faults": []}  # no partition: the lags are the send path's
        scenario = build(
            raw,
            network__posts=True,
            network__calibration=str(path),
            network__jitter_ms=0,
            network__latency_ms=0.2,
        )
        metrics = Simulation(scenario).run()
        return metrics["trace_hash"], metrics["dissemination_s"]

    flat_hash, flat = lag([])
    spread_hash, spread = lag([0.25, 0.25, 0.25, 0.25, 4.0])
    assert lag([0.25, 0.25, 0.25, 0.25, 4.0])[0] == spread_hash != flat_hash
    # (five nodes' lags: the p99 is later; its gap to the p50 is not, for every seed)
    assert spread["p99"] > flat["p99"]


def test_a_sender_works_through_its_posts_before_they_leave() -> None:
    sending = FREE.__class__(
        **{**_fields(FREE), "send_post_cost_us": 1000.0, "send_message_cost_us": 500.0}
    )
    sim = Sim(sending)
    sim.env.timeout(0).callbacks.append(lambda _e: sim.posts.enqueue("a", "c", b"y" * 10))
    sim.run([(0.0, 10), (0.0, 10)])
    # Both posts are due at once (no linger to an idle peer); a's loop sends the one to c
    # first (queued first: 1.5 ms), then the one to b (two messages: 2 ms); each arrives
    # 1 ms after it left, so b's waits for c's.
    assert sorted(sim.arrived) == [(2.5, 10), (4.5, 10), (4.5, 10)]
    assert sim.posts.finish().busy_s == pytest.approx(3.5e-3)


def test_a_receiver_pays_per_version_as_well_as_per_message() -> None:
    from rumordb.core import Record, encode
    from rumordb.core.messages import Push, Update

    record = Record(b"v", "text/plain", {"a": 1}, 1, "a")
    push = encode(Push("a", [], [Update(f"k{i}", record) for i in range(3)]))
    costly = FREE.__class__(**{**_fields(FREE), "update_cost_us": 1000.0})
    sim = Sim(costly)
    sim.env.timeout(0).callbacks.append(lambda _e: sim.posts.enqueue("a", "b", push))
    sim.run([])
    assert sim.arrived == [(4.0, len(push))]  # no linger, link 1, 3 versions x 1 ms


def test_under_sync_durability_a_client_write_holds_the_nodes_sends_until_its_commit() -> None:
    committing = FREE.__class__(**{**_fields(FREE), "commit_cost_us": 8000.0})
    sim = Sim(committing, durable=True)
    sim.env.timeout(0).callbacks.append(lambda _e: sim.posts.client_write("a"))
    sim.run([(0.0, 10)])
    assert sim.arrived == [(9.0, 10)]  # due at once, on disk at 8 ms, link 1 ms
    batch = Sim(committing)
    batch.env.timeout(0).callbacks.append(lambda _e: batch.posts.client_write("a"))
    batch.run([(0.0, 10)])
    assert batch.arrived == [(1.0, 10)]  # batch durability: nobody waits for the disk


def test_the_service_model_keeps_a_run_reproducible_and_reports_its_load() -> None:
    raw = minimal_raw()
    first = Simulation(build(raw, network__posts=True)).run()
    again = Simulation(build(raw, network__posts=True)).run()
    assert first["trace_hash"] == again["trace_hash"]
    assert first["posts"]["busy_s"] > 0 and first["posts"]["commits"] == 0
    synced = Simulation(build(raw, network__posts=True, network__durability="sync")).run()
    assert synced["posts"]["commits"] > 0 and synced["converged"]


def _fields(constants: object) -> dict[str, object]:
    import msgspec

    return msgspec.structs.asdict(constants)  # type: ignore[arg-type]


# --- the machine's shared cores ------------------------------------------------------------
def test_nodes_that_share_one_core_take_turns_and_a_core_each_never_waits() -> None:
    one = Servers(cores=1)
    assert [one.serve(n, 1.0, 0.5) for n in ("a", "b", "c")] == [1.5, 2.0, 2.5]
    assert one.core_waited_s == pytest.approx(0.5 + 1.0)
    two = Servers(cores=2)
    assert [two.serve(n, 1.0, 0.5) for n in ("a", "b", "c")] == [1.5, 1.5, 2.0]
    unshared = Servers()  # cores = 0: a core per node, as before the shared cores
    assert [unshared.serve(n, 1.0, 0.5) for n in ("a", "b", "c")] == [1.5, 1.5, 1.5]
    assert unshared.core_waited_s == 0.0


def test_a_job_takes_the_core_that_freed_last_before_it_is_ready() -> None:
    servers = Servers(cores=2)
    servers.serve("a", 0.0, 1.0)  # one core free at 1.0
    servers.serve("b", 0.0, 1.8)  # the other at 1.8
    # ready at 2.0: both are free; it takes the one free at 1.8, so the one free since
    # 1.0 is still there for the next job, ready at 1.5 (its node's loop is idle)
    assert servers.serve("c", 2.0, 1.0) == 3.0
    assert servers.serve("d", 1.5, 0.2) == pytest.approx(1.7)
    assert servers.core_waited_s == 0.0


def test_service_time_is_kept_per_server() -> None:
    servers = Servers(cores=1)
    servers.serve("a", 0.0, 0.5)
    servers.serve("b", 0.0, 0.25)
    servers.serve("a", 2.0, 0.5)
    assert servers.busy_of == {"a": 1.0, "b": 0.25} and servers.busy_s == 1.25


# --- beside the protocol: a node at rest, the observer --------------------------------------
SIDE = FREE.__class__(
    **{
        **_fields(FREE),
        "background_cost_us_per_s": 1000.0,
        "watch_cost_us": 100.0,
        "metrics_cost_us": 1000.0,
        "observer_event_cost_us": 200.0,
        "observer_sample_cost_us": 300.0,
        "observer_write_cost_us": 400.0,
    }
)


def test_at_rest_each_node_spends_its_background_cpu_once_per_timer_period() -> None:
    sim = Sim(SIDE, side=SideWork(("a", "b", "c"), tick_s=0.1))
    sim.up["c"] = False  # a node that is down does nothing
    sim.run([], until_s=0.95)
    busy = sim.posts.servers.busy_of
    # 1 ms of CPU per second, in 0.1 ms jobs every 0.1 s (a's at 0, 0.1 .. 0.9, b's a
    # third of a period later): ten each
    assert busy["a"] == pytest.approx(1e-3) and busy["b"] == pytest.approx(1e-3)
    assert "c" not in busy and OBSERVER not in busy  # no observer: no samples


def test_an_observer_costs_the_nodes_their_watch_lines_and_samples_and_itself_its_reads() -> None:
    sim = Sim(SIDE, side=SideWork(("a", "b"), tick_s=0.0, sample_s=0.25))
    sim.up["b"] = False
    sim.env.timeout(0.1).callbacks.append(lambda _e: sim.posts.stored("a", 2))
    sim.env.timeout(0.1).callbacks.append(lambda _e: sim.posts.client_write("a"))
    sim.run([], until_s=0.9)  # samples at 0.25, 0.5, 0.75
    busy = sim.posts.servers.busy_of
    assert busy["a"] == pytest.approx(3 * 1e-3 + 2 * 100e-6)  # 3 samples, 2 watch lines
    assert busy[OBSERVER] == pytest.approx(3 * 300e-6 + 2 * 200e-6 + 400e-6)
    assert "b" not in busy  # down: never sampled
    assert sim.posts.finish().observer_s == pytest.approx(busy[OBSERVER])


def test_without_an_observer_stored_versions_and_writes_cost_nothing_beside() -> None:
    sim = Sim(SIDE, side=SideWork(("a",), tick_s=0.0))
    sim.env.timeout(0.1).callbacks.append(lambda _e: sim.posts.stored("a", 5))
    sim.env.timeout(0.1).callbacks.append(lambda _e: sim.posts.client_write("a"))
    sim.run([], until_s=1.0)
    assert sim.posts.servers.busy_of == {"a": 0.0}  # the write's own cost: 0 here


def test_a_message_tells_the_versions_and_members_it_carries() -> None:
    from rumordb.core import Record, encode
    from rumordb.core.membership import MemberEntry
    from rumordb.core.messages import Heartbeat, Push, SyncRecords, Update

    record = Record(b"v", "text/plain", {"a": 1}, 1, "a")
    members = [MemberEntry(f"n{i}", f"http://127.0.0.1:{40000 + i}", 1, 7) for i in range(4)]
    updates = [Update(f"k{i}", record) for i in range(3)]
    assert carried_counts(encode(Push("a", members[:2], updates))) == (3, 2)
    assert carried_counts(encode(Heartbeat("a", members))) == (0, 4)
    assert carried_counts(encode(SyncRecords("a", 1, updates[:1], []))) == (1, 0)
    assert carried_counts(b"\x00\x01 not a message") == (0, 0)


def test_a_receiver_pays_per_membership_entry_its_messages_carry() -> None:
    from rumordb.core import encode
    from rumordb.core.membership import MemberEntry
    from rumordb.core.messages import Heartbeat

    members = [MemberEntry(f"n{i}", f"http://127.0.0.1:{40000 + i}", 1, 7) for i in range(3)]
    beat = encode(Heartbeat("a", members))
    costly = FREE.__class__(**{**_fields(FREE), "member_cost_us": 1000.0})
    sim = Sim(costly)
    sim.env.timeout(0).callbacks.append(lambda _e: sim.posts.enqueue("a", "b", beat))
    sim.run([])
    assert sim.arrived == [(4.0, len(beat))]  # no linger, link 1, 3 entries x 1 ms


def test_the_observer_and_the_shared_cores_lengthen_the_lag_tail(tmp_path: Path) -> None:
    def run(cores: int, observer_ms: int, one_machine: bool) -> dict[str, float]:
        default = load_calibration()
        constants = msgspec.structs.replace(
            default.constants,
            cores=cores,
            metrics_cost_us=2000.0,
            observer_event_cost_us=300.0,
            observer_sample_cost_us=2000.0,
        )
        path = tmp_path / f"c{cores}-{observer_ms}.toml"
        path.write_text(to_toml(Calibration(constants=constants, machine=default.machine)))
        scenario = build(
            minimal_raw() | {"faults": []},
            network__posts=True,
            network__calibration=str(path),
            network__observer_sample_ms=observer_ms,
            network__one_machine=one_machine,
        )
        metrics = Simulation(scenario).run()
        return {**metrics["dissemination_s"], "driver": metrics["posts"]["observer_s"]}

    alone, watched = run(0, 0, one_machine=True), run(0, 250, one_machine=True)
    shared = run(1, 250, one_machine=True)
    assert alone["driver"] == 0.0 < watched["driver"]
    assert shared["p99"] > watched["p99"] >= alone["p99"]
    # a scenario not on one machine keeps a core per node, whatever the calibration says
    assert run(1, 250, one_machine=False) == watched


def test_a_calibrated_start_up_keeps_a_restarted_node_down_until_it_serves(
    tmp_path: Path,
) -> None:
    default = load_calibration()
    constants = msgspec.structs.replace(default.constants, startup_ms=1500.0)
    path = tmp_path / "startup.toml"
    path.write_text(to_toml(Calibration(constants=constants, machine=default.machine)))
    faults = [
        {"at_s": 1.0, "action": "crash", "nodes": ["n2"], "state": "lose"},
        {"at_s": 2.0, "action": "restart", "nodes": ["n2"]},
    ]
    raw = minimal_raw() | {"faults": faults}

    def restarted_at(**posts: object) -> float:
        metrics = Simulation(build(raw, **posts)).run()
        assert metrics["converged"]
        return next(e["at_s"] for e in metrics["events"] if e["action"] == "restart")

    assert restarted_at(network__posts=True, network__calibration=str(path)) == 3.5
    assert restarted_at() == 2.0  # the simulator without the send path: at once


def test_an_observer_the_calibration_never_measured_changes_nothing() -> None:
    # the committed default predates the observer's constants: no job, no wake-up drawn
    raw = minimal_raw() | {"faults": []}
    plain = Simulation(build(raw, network__posts=True)).run()
    watched = Simulation(build(raw, network__posts=True, network__observer_sample_ms=250)).run()
    assert watched["trace_hash"] == plain["trace_hash"]
    assert watched["posts"]["busy_s"] == plain["posts"]["busy_s"]


def test_a_job_of_many_posts_work_varies_by_as_much_as_one_post_not_in_proportion() -> None:
    servers = Servers(spread=lambda: 3.0, spread_unit_s=0.1)
    assert servers.serve("a", 0.0, 0.05) == pytest.approx(0.15)  # under the unit: x3
    assert servers.serve("b", 0.0, 1.0) == pytest.approx(1.2)  # 1 s of work + 2 x 0.1 s
    cheap = Servers(spread=lambda: 0.5, spread_unit_s=0.1)
    assert cheap.serve("a", 0.0, 1.0) == pytest.approx(0.95)
