"""Calibration files: the committed default loads, files round-trip, bad ones are refused;
a scenario with ``[network] posts = true`` runs on them and says which it used."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from rumordb.sim.calibration import (
    DEFAULT_CALIBRATION,
    Calibration,
    Constants,
    describe,
    load_calibration,
    to_toml,
)
from rumordb.sim.engine import Simulation
from tests.sim.helpers import build, minimal_raw


def test_the_committed_default_names_its_machine() -> None:
    calibration = load_calibration()
    assert calibration.source == str(DEFAULT_CALIBRATION)
    assert {"platform", "cpu", "python", "cores", "measured_at"} <= set(calibration.machine)
    assert calibration.constants.seal_bytes > 0 and calibration.constants.post_cost_us >= 0


def test_a_written_file_reads_back_the_same(tmp_path: Path) -> None:
    constants = Constants(
        post_cost_us=120.5,
        message_cost_us=9.0,
        envelope_post_bytes=3,
        envelope_message_bytes=2,
        seal_bytes=51,
        http_head_bytes=124,
    )
    written = Calibration(constants=constants, machine={"cpu": 'a "quoted" cpu', "cores": 2})
    path = tmp_path / "c.toml"
    path.write_text(to_toml(written))
    read = load_calibration(path)
    assert read.constants == constants and read.machine == written.machine


def test_a_file_from_before_the_service_spread_loads_with_none(tmp_path: Path) -> None:
    # a file written before ``service_spread`` existed: the same file without that line
    current = to_toml(load_calibration())
    lines = [line for line in current.splitlines() if not line.startswith("service_spread")]
    old = tmp_path / "old.toml"
    old.write_text("\n".join(lines) + "\n")
    constants = load_calibration(old).constants
    assert constants.service_spread == [] and constants.wakeup_us
    for path in sorted(Path("experiments/compare").glob("*/calibration.toml")):
        assert load_calibration(path).constants.wakeup_us, path  # committed ones load too
    spread = [0.5, 1.0, 1.5]
    constants = msgspec.structs.replace(load_calibration().constants, service_spread=spread)
    path = tmp_path / "spread.toml"
    path.write_text(to_toml(Calibration(constants=constants, machine={"cores": 2})))
    assert load_calibration(path).constants.service_spread == spread


@pytest.mark.parametrize(
    "text", ["[constants]\npost_cost_us = 1\n", "not toml [", "[constants]\nwhat = 1\n"]
)
def test_a_bad_file_is_refused_with_its_name(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"bad\.toml"):
        load_calibration(path)


def test_a_run_with_posts_records_its_posts_and_calibration() -> None:
    metrics = Simulation(build(minimal_raw(), network__posts=True)).run()
    assert metrics["converged"]
    posts = metrics["posts"]
    assert 0 < posts["posts"] < posts["messages"] <= metrics["messages_sent"]
    assert posts["sealed_bytes"] > metrics["bytes_sent"] * 0.5
    assert Path(metrics["calibration"]["source"]).resolve() == DEFAULT_CALIBRATION.resolve()
    assert msgspec.convert(metrics["calibration"]["constants"], Constants)
    again = Simulation(build(minimal_raw(), network__posts=True)).run()
    assert again["trace_hash"] == metrics["trace_hash"]
    plain = Simulation(build(minimal_raw())).run()
    assert plain["trace_hash"] != metrics["trace_hash"] and "posts" not in plain


def test_the_run_report_names_the_constants_and_the_machine() -> None:
    from rumordb.sim.report import run_markdown

    metrics = Simulation(build(minimal_raw(), network__posts=True)).run()
    text = run_markdown(metrics, [], "")
    assert "post_cost_us = " in text and metrics["calibration"]["machine"]["cpu"] in text
    assert f"{metrics['posts']['posts']} ({metrics['posts']['messages']}," in text


def test_a_report_names_a_file_under_the_working_directory_by_its_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "exp").mkdir()
    path = tmp_path / "exp" / "c.toml"
    path.write_text(to_toml(load_calibration(DEFAULT_CALIBRATION)))
    monkeypatch.chdir(tmp_path)
    assert describe(load_calibration(path.resolve()))["source"] == "exp/c.toml"
    monkeypatch.chdir(tmp_path / "exp")
    assert describe(load_calibration(Path("c.toml")))["source"] == "c.toml"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert describe(load_calibration(path))["source"] == str(path)  # outside: as it is


def test_a_file_from_before_the_work_beside_the_protocol_charges_none_of_it() -> None:
    # the committed compare calibrations predate member entries, the observer, the
    # machine's cores and the start-up: they load with all of them 0
    for path in sorted(Path("experiments/compare").glob("*/calibration.toml")):
        text = path.read_text()
        if "cores =" in text:
            continue
        c = load_calibration(path).constants
        assert (c.member_cost_us, c.background_cost_us_per_s, c.watch_cost_us) == (0, 0, 0)
        assert (c.metrics_cost_us, c.observer_event_cost_us, c.cores, c.startup_ms) == (
            0,
            0,
            0,
            0,
        )


def test_a_receiver_pays_per_post_message_version_and_membership_entry() -> None:
    constants = Constants(
        post_cost_us=100.0,
        message_cost_us=10.0,
        update_cost_us=5.0,
        member_cost_us=2.0,
        envelope_post_bytes=3,
        envelope_message_bytes=2,
        seal_bytes=51,
        http_head_bytes=124,
    )
    assert constants.receive_s(2, 3) == pytest.approx(135e-6)
    assert constants.receive_s(2, 3, members=10) == pytest.approx(155e-6)
