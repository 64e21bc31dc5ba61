"""Shared scenario text and builders for the simulator tests."""

from __future__ import annotations

import copy
import tomllib
from typing import Any

from rumordb.sim.engine import Simulation
from rumordb.sim.scenario import Scenario, parse_scenario

# The minimal scenario, verbatim: it must work as written.
MINIMAL_TOML = """\
seed = 7
duration_s = 30
[cluster]
nodes = 5
[network]
topology = "complete"
latency_ms = 5
jitter_ms = 1
loss = 0.0
[gossip]
fanout = 2
interval_ms = 200
anti_entropy_interval_ms = 1000
[workload]
writes_per_s = 20
keys = 50
start_s = 1
stop_s = 10
[[faults]]
at_s = 3
action = "partition"
groups = [["n1", "n2"], ["n3", "n4", "n5"]]
[[faults]]
at_s = 8
action = "heal"
"""


def minimal_raw() -> dict[str, Any]:
    return copy.deepcopy(tomllib.loads(MINIMAL_TOML))


def build(raw: dict[str, Any], **overrides: Any) -> Scenario:
    """A scenario from raw tables; ``overrides`` use ``__`` for dots (gossip__fanout=1)."""
    return parse_scenario(
        copy.deepcopy(raw), {k.replace("__", "."): v for k, v in overrides.items()}
    )


def run(raw: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return Simulation(build(raw, **overrides)).run()


# A scripted workload in phases: the side-by-side measurement, in a scenario file.
PHASED_TOML = """\
seed = 3
duration_s = 20
[cluster]
nodes = 5
[network]
latency_ms = 5
jitter_ms = 1
[[workload.phases]]
start_s = 1
stop_s = 3
nodes = ["n1"]
key_range = [0, 200]
key_order = "sequential"
rate_per_s = 100
[[workload.phases]]
start_s = 4
stop_s = 9
nodes = ["n1", "n3"]
key_list = ["a", "b", "c", "k7"]
rate_per_s = 40
arrivals = "poisson"
mix = { put = 0.5, conditional_put = 0.3, delete = 0.1, read = 0.1 }
[[faults]]
at_s = 4
action = "partition"
groups = [["n1", "n2"], ["n3", "n4", "n5"]]
[[faults]]
at_s = 9
action = "heal"
"""


def phased_raw() -> dict[str, Any]:
    return copy.deepcopy(tomllib.loads(PHASED_TOML))
