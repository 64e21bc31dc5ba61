"""Each node's event loop as one FIFO server, its disk's group commit, the wake-up draw
(``sim.service``), and what they do to posts and client writes (``sim.posts``)."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest

from rumordb.sim.calibration import Calibration, load_calibration, to_toml
from rumordb.sim.engine import Simulation
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
    assert spread["p99"] - spread["p50"] > flat["p99"] - flat["p50"]


def test_a_sender_works_through_its_posts_before_they_leave() -> None:
    sending = FREE.__class__(
        **{**_fields(FREE), "send_post_cost_us": 1000.0, "send_message_cost_us": 500.0}
    )
    sim = Sim(sending)
    sim.env.timeout(0).callbacks.append(lambda _e: sim.posts.enqueue("a", "c", b"y" * 10))
    sim.run([(0.0, 10), (0.0, 10)])
    # Both posts are due at once (idle peers, no linger); a's loop sends the one to c
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
