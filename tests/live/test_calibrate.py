"""``rumor sim calibrate``: framing from the real encoders, receive cost from the real app."""

from __future__ import annotations

import time
from pathlib import Path

from click.testing import CliRunner

from rumordb.cli.main import app
from rumordb.live.calibrate import framing_bytes
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
    result = CliRunner().invoke(app, ["sim", "calibrate", "--out", str(out), "--rounds", "1"])
    assert result.exit_code == 0, result.output
    calibration = load_calibration(out)
    assert calibration.constants.post_cost_us + calibration.constants.message_cost_us > 0
    assert calibration.constants.seal_bytes == framing_bytes()["seal_bytes"]
    assert calibration.machine["python"] and calibration.machine["cores"] >= 1
    assert calibration.machine["measured_at"].endswith("Z")
