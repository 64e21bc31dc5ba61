"""``rumor sim calibrate``: framing from the real encoders, receive cost from the real app."""

from __future__ import annotations

import os
import time
from pathlib import Path

from click.testing import CliRunner

from rumordb.cli.main import app
from rumordb.live.calibrate import WAKEUP_QUANTILES, framing_bytes, thread_cpu_s
from rumordb.live.gossip_client import Envelope, seal_envelope
from rumordb.live.wire import Signer
from rumordb.sim.calibration import Constants, load_calibration


def test_framing_predicts_the_length_of_a_sealed_post() -> None:
    constants = Constants(post_cost_us=0.0, message_cost_us=0.0, **framing_bytes())
    signer = Signer("calibrate-test-secret")
    for sender, recipient, sizes in (("n1", "n2", [100]), ("node-7", "n12", [5, 90, 200])):
        messages = [b"x" * size for size in sizes]
        sealed = seal_envelope(signer, Envelope(sender, messages), time.time(), recipient)
        assert constants.sealed_bytes(sum(sizes), len(sizes), sender, recipient) == len(sealed)


def test_calibrate_writes_constants_and_the_machine(tmp_path: Path) -> None:
    out = tmp_path / "calibration.toml"
    argv = ["sim", "calibrate", "--out", str(out), "--rounds", "1", "--in-process"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    calibration = load_calibration(out)
    assert calibration.constants.post_cost_us + calibration.constants.message_cost_us > 0
    assert calibration.machine["service_times"] == "in-process app"
    assert calibration.constants.seal_bytes == framing_bytes()["seal_bytes"]
    assert calibration.machine["python"] and calibration.machine["cores"] >= 1
    assert calibration.machine["measured_at"].endswith("Z")


def test_calibrate_measures_service_times_on_a_node_process_and_the_machine_now(
    tmp_path: Path,
) -> None:
    out = tmp_path / "calibration.toml"
    result = CliRunner().invoke(app, ["sim", "calibrate", "--out", str(out), "--rounds", "1"])
    assert result.exit_code == 0, result.output
    c = load_calibration(out).constants
    assert load_calibration(out).machine["service_times"] == "node process"
    # A node process pays at least its HTTP server on top of the app: never free.
    assert c.post_cost_us + c.message_cost_us > 0 and c.write_cost_us > 0
    assert c.send_post_cost_us > 0 and c.commit_cost_us > 0
    assert len(c.wakeup_us) == WAKEUP_QUANTILES and c.wakeup_us == sorted(c.wakeup_us)
    # one post's CPU varies: quantiles over their mean, so the constants stay the mean
    spread = c.service_spread
    assert len(spread) == WAKEUP_QUANTILES and spread == sorted(spread)
    assert spread[0] < 1.0 < spread[-1] and 0.8 < sum(spread) / len(spread) < 1.2
    # beside the protocol: a node at rest, the observer's streams and samples, start-up
    assert c.background_cost_us_per_s > 0 and c.metrics_cost_us > 0
    assert c.observer_event_cost_us > 0 and c.observer_sample_cost_us > 0
    assert c.observer_write_cost_us > 0 and c.member_cost_us >= 0 and c.watch_cost_us >= 0
    assert c.cores == (os.cpu_count() or 1) and 0 < c.startup_ms < 60_000


def test_a_process_cpu_time_counts_every_live_thread() -> None:
    import threading

    spun, leave = threading.Event(), threading.Event()

    def spin() -> None:  # like the node's writer thread: busy, and still there when read
        end = time.thread_time() + 0.05
        while time.thread_time() < end:
            pass
        spun.set()
        leave.wait(10)

    before = thread_cpu_s(os.getpid())
    worker = threading.Thread(target=spin)
    worker.start()
    try:
        assert spun.wait(10)
        assert thread_cpu_s(os.getpid()) - before >= 0.04
    finally:
        leave.set()
        worker.join()


def test_the_parts_per_membership_entry_come_from_the_member_rounds() -> None:
    from rumordb.live.calibrate import MEMBER_SHAPES, MEMBERS, SHAPES, WIDE, _split

    cost = {SHAPES[0]: 100.0, SHAPES[1]: 100.0 + 15 * 10, SHAPES[2]: 100.0 + 15 * 4}
    samples = {("real", str(k)): [v + 7.0] for k, v in cost.items()}
    samples |= {("null", str(k)): [7.0] for k in cost}  # the sender's share, taken off
    members = {MEMBER_SHAPES[0]: 120.0, MEMBER_SHAPES[1]: 120.0 + WIDE * 3}
    samples |= {("real", MEMBERS + str(k)): [v] for k, v in members.items()}
    samples |= {("null", MEMBERS + str(k)): [0.0] for k in members}
    samples |= {("real", "put"): [50.0], ("null", "put"): [10.0]}
    parts = _split(samples)
    assert (parts["message_cost_us"], parts["update_cost_us"]) == (10.0, 4.0)
    assert parts["member_cost_us"] == 3.0 and parts["post_cost_us"] == 86.0
    assert parts["write_cost_us"] == 40.0
