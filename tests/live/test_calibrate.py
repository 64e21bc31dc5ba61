"""``rumor sim calibrate``: framing from the real encoders, receive cost from the real app."""

from __future__ import annotations

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


def test_a_process_cpu_time_counts_every_live_thread() -> None:
    import os
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
