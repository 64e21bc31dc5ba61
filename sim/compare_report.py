"""The files of ``rumor sim compare``: ``compare.json``, ``report.md`` and overlaid plots.

Plots follow ``sim.plots``: one colour per side (live, sim) in every figure, each run
drawn faint and the mean of the runs (or the pooled CDF) strong, every line in the
legend, fault spans shaded as they were in force in the simulator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from rumordb.sim.compare import BAND
from rumordb.sim.lag import cdf_points
from rumordb.sim.plots import RAW_ALPHA, SPAN_ALPHA, SPAN_LABELS, _legend, moving_average, save
from rumordb.sim.report import write_json
from rumordb.sim.timeline import fault_spans

SIDES = {"live": "tab:red", "sim": "tab:blue"}
UNITS = {
    "messages": "",
    "bytes": " B",
    "bytes_per_message": " B",
    "suspect": "",
    "dead": "",
    "alive": "",
}


def write_compare_report(result: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    images = {
        "lag_cdf.png": lag_cdf_figure(result),
        "nodes_current.png": series_figure(
            result, "current", "fraction", "fraction of nodes current"
        ),
        "traffic.png": series_figure(result, "traffic", "messages_per_s", "messages per second"),
    }
    paths = [save(fig, out_dir / name) for name, fig in images.items()]
    write_json(out_dir / "compare.json", result)
    report = out_dir / "report.md"
    report.write_text(markdown(result, list(images)))
    return [out_dir / "compare.json", report, *paths]


def lag_cdf_figure(result: Mapping[str, Any]) -> Figure:
    fig, ax = plt.subplots(figsize=(8, 4.4))
    for side, colour in SIDES.items():
        runs = result[side]["runs"]
        if len(runs) == 1:
            _cdf(ax, runs[0]["lag_cdf_s"], colour, 1.6, 1.0, f"{side}, 1 run")
            continue
        pooled: list[float] = []
        for run in runs:
            _cdf(ax, run["lag_cdf_s"], colour, 0.8, RAW_ALPHA, f"{side}, one run (raw)")
            pooled += _samples(run["lag_cdf_s"])
        _cdf(ax, cdf_points(pooled), colour, 1.6, 1.0, f"{side}, {len(runs)} runs pooled")
    ax.set_xscale("log")
    ax.set_title("ack -> visible on every counted node")
    ax.set_xlabel("lag (ms, log scale)")
    ax.set_ylabel("fraction of versions")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3, which="both")
    _legend(fig, ax)
    return fig


def _cdf(ax: Any, points: Sequence[Sequence[float]], colour: str, width: float,
         alpha: float, label: str) -> None:  # fmt: skip
    if points:
        ax.step([lag * 1000 for _, lag in points], [q for q, _ in points], where="post",
                color=colour, linewidth=width, alpha=alpha, label=label)  # fmt: skip


def _samples(points: Sequence[Sequence[float]]) -> list[float]:
    """The CDF's quantile points as samples (equal weight per point): for pooling runs."""
    return [lag for _, lag in points]


def series_figure(result: Mapping[str, Any], series: str, field: str, label: str) -> Figure:
    fig, ax = plt.subplots(figsize=(9, 4.4))
    _spans(ax, result)
    for side, colour in SIDES.items():
        for i, run in enumerate(result[side]["runs"]):
            data = run[series]
            values = data[field]
            window = max(1, round(0.5 / _step(data["t_s"])))
            ax.plot(data["t_s"], values, color=colour, alpha=RAW_ALPHA, linewidth=0.8,
                    label=f"{side} (raw)")  # fmt: skip
            ax.plot(data["t_s"], moving_average(values, window), color=colour, linewidth=1.4,
                    linestyle="-" if i == 0 else ":",
                    label=f"{side} {_run_name(side, run, i)}, 0.5 s average")  # fmt: skip
    ax.set_title(f"{result['scenario']['name']}: {label}, live and simulated")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    _legend(fig, ax)
    return fig


def _run_name(side: str, run: Mapping[str, Any], index: int) -> str:
    return f"seed {run['seed']}" if side == "sim" else f"run {index + 1}"


def _step(t_s: Sequence[float]) -> float:
    return (t_s[-1] - t_s[0]) / (len(t_s) - 1) if len(t_s) > 1 and t_s[-1] > t_s[0] else 1.0


def _spans(ax: Any, result: Mapping[str, Any]) -> None:
    colours = {"partition": "tab:gray", "down": "tab:orange", "link": "tab:pink"}
    for span in fault_spans(result["sim"]["events"], result["scenario"]):
        end = span.end_s if span.end_s is not None else result["scenario"]["duration_s"]
        ax.axvspan(span.start_s, end, color=colours.get(span.kind, "tab:olive"),
                   alpha=SPAN_ALPHA, label=SPAN_LABELS.get(span.kind, span.kind))  # fmt: skip


def markdown(result: Mapping[str, Any], images: Sequence[str]) -> str:
    s = result["scenario"]
    lines = [
        f"# Live against simulated: {s['name']}",
        "",
        f"Command: `{result['command']}`  ",
        f"{s['cluster']['nodes']} nodes, {s['duration_s']} s; simulator seeds "
        f"{result['sim']['seeds']}, {len(result['live']['runs'])} live run(s) on loopback "
        f"(durability {result['live'].get('durability', 'sync')}; write -> acknowledged p50 "
        f"{_ms(result['live'].get('ack_rtt_p50_s'))} at the client).  ",
        f"Live lags end when the last node applied the version (its watch events' "
        f"`applied_us`); their lines reached the driver p50 "
        f"{_ms(result['live'].get('watch_delivery_p50_s'))}, p99 "
        f"{_ms(result['live'].get('watch_delivery_p99_s'))} later, which no lag includes.  ",
        f"CPU over a run: live nodes {_s(result['live'].get('node_cpu_s'))} (the simulator "
        f"charged their loops {_s(result['sim'].get('node_cpu_s'))}), the live driver "
        f"{_s(result['live'].get('driver_cpu_s'))} (its observer "
        f"{_s(result['sim'].get('driver_cpu_s'))}), on the same cores.  ",
        *_stalls(result),
        f"Machine: {result['machine']}  ",
        f"Calibration: `{result['calibration']['source']}` "
        f"({_constants(result['calibration']['constants'])}), measured on "
        f"{result['calibration']['machine'].get('cpu')} "
        f"({result['calibration']['machine'].get('measured_at')}).  ",
        "Live faults took effect (a restart: the new process serving) at most "
        f"{result['live']['fault_lateness_s'] * 1000:.1f} ms after their scheduled instants.",
        "",
        f"| figure | live mean (min-max) | sim mean (min-max) | live/sim | within {BAND[0]}-{BAND[1]} |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['figure']} | {_cell(row['figure'], row['live'])} | "
            f"{_cell(row['figure'], row['sim'])} | {_ratio(row['ratio'])} | "
            f"{_verdict(row)} |"
        )
    load = result.get("load_per_core")
    if load is not None and load > 1.5:
        lines += ["", f"**Warning: the machine ran at a load of {load:.1f} per core.** The live "
                  "nodes, the driver and other work competed for CPU: live timing figures "
                  "(lags, heal, timer-driven message counts) measure that starvation as much "
                  "as the protocol. Re-run on an idle machine before trusting the ratios."]  # fmt: skip
    lines += ["", "## Outside the band, and why", ""]
    lines += [f"- {text}" for text in result["explanations"]] or ["- none"]
    lines += ["", *[f"![{name[:-4]}]({name})" for name in images], ""]
    return "\n".join(lines)


def _stalls(result: Mapping[str, Any]) -> list[str]:
    """With live loop monitors: their busy turns against the model's longest job."""
    stalls = (result.get("facts") or {}).get("stalls")
    return [f"Loop stalls: {stalls}.  "] if stalls else []


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.1f} ms"


def _constants(constants: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} = {_constant(v)}" for k, v in constants.items())


def _constant(value: Any) -> str:
    """A number as it is; a list of quantiles (``wakeup_us``) by a few of them."""
    if not isinstance(value, list):
        return str(value)
    if not value:
        return "none"
    picks = ((50, 0.5), (90, 0.9), (99, 0.99))
    return (
        "("
        + ", ".join(f"p{p} {value[min(len(value) - 1, int(q * len(value)))]}" for p, q in picks)
        + ")"
    )


def _cell(figure: str, spread: Mapping[str, Any]) -> str:
    if spread["mean"] is None:
        return "n/a"
    if figure.endswith("_s"):
        return f"{spread['mean'] * 1000:.1f} ms ({spread['min'] * 1000:.1f}-{spread['max'] * 1000:.1f})"
    unit = UNITS.get(figure, "")
    return f"{spread['mean']:.0f}{unit} ({spread['min']:.0f}-{spread['max']:.0f})"


def _verdict(row: Mapping[str, Any]) -> str:
    if not row.get("applies", True):
        return "n/a"
    return "yes" if row["in_band"] else "**no**"


def _ratio(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}"
