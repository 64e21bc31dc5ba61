"""Ack -> visible taken apart (``bench.lag_figures``): each figure from the right instants."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.lag_figures import Observed, ProcSample, cpu_pressure_us, lag_figures, last_to_apply


def three_nodes() -> Observed:
    """Write 0: applied on n1 at 10.000, acked 10.003, applied on n2 10.004 and n3 10.009,
    read from their streams 10.006 and 10.012. Write 1: never reached n3."""
    observed = Observed(count=2, nodes=3)
    observed.acked = {0: 10.003, 1: 11.003}
    observed.applied = [{0: 10.000, 1: 11.000}, {0: 10.004, 1: 11.002}, {0: 10.009}]
    observed.seen = [{0: 10.001, 1: 11.001}, {0: 10.006, 1: 11.004}, {0: 10.012}]
    return observed


def test_each_figure_is_taken_between_its_own_instants() -> None:
    figures = lag_figures(three_nodes())
    assert figures["driver"] == pytest.approx([9.0])  # ack read -> read from n3's stream
    assert figures["nodes"] == pytest.approx([6.0])  # ack read -> applied on n3
    assert figures["cluster"] == pytest.approx([9.0])  # applied on n1 -> applied on n3
    assert figures["first"] == pytest.approx([4.0])  # applied on n1 -> applied on n2
    assert figures["spread"] == pytest.approx([5.0])  # applied on n2 -> applied on n3
    assert figures["commit"] == pytest.approx([3.0])
    assert figures["never"] == [1.0]
    assert sorted(figures["delivery"]) == pytest.approx([1.0, 1.0, 2.0, 2.0, 3.0])


def test_a_run_without_applied_instants_has_the_driver_figure_only() -> None:
    observed = three_nodes()
    observed.applied = [{}, {}, {}]
    figures = lag_figures(observed)
    assert figures["driver"] == pytest.approx([9.0])
    assert figures["nodes"] == figures["cluster"] == figures["delivery"] == []


def test_the_last_node_to_apply_is_named_for_the_slowest_writes() -> None:
    observed = Observed(count=4, nodes=3)
    observed.applied = [
        {i: float(i) for i in range(4)},
        {0: 0.001, 1: 1.050, 2: 2.001, 3: 3.002},  # n2 is last for write 1 (the slowest)
        {0: 0.002, 1: 1.003, 2: 2.002, 3: 3.001},
    ]
    assert last_to_apply(observed, 0.25) == {1: 1}
    assert sum(last_to_apply(observed, 1.0).values()) == 4


def test_a_process_sample_reads_cpu_and_scheduler_waits(tmp_path: Path) -> None:
    proc = tmp_path / "42"
    proc.mkdir()
    ticks = os.sysconf("SC_CLK_TCK")
    rest = " ".join(["0"] * 10)  # after the state (field 3): fields 4-13
    (proc / "stat").write_text(f"42 (rumor node (x)) S {rest} {3 * ticks} {ticks} 0 0\n")
    (proc / "schedstat").write_text("2000000000 500000000 250\n")
    sample = ProcSample.read(42, tmp_path)
    assert sample == ProcSample(cpu_s=4.0, run_s=2.0, wait_s=0.5, slices=250)
    delta = sample.since(ProcSample(1.0, 1.0, 0.25, 50))
    assert delta == ProcSample(3.0, 1.0, 0.25, 200)
    assert delta.wait_per_slice_ms() == pytest.approx(1.25)


def test_cpu_pressure_reads_the_some_total(tmp_path: Path) -> None:
    path = tmp_path / "cpu"
    path.write_text("some avg10=1.00 avg60=2.00 avg300=3.00 total=123456\nfull avg10=0 total=0\n")
    assert cpu_pressure_us(path) == 123456
    assert cpu_pressure_us(tmp_path / "absent") is None
