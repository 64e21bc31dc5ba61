"""Scenario files: one TOML file says everything a simulated run depends on.

A scenario is a cluster, a network, gossip parameters, a workload, a fault timeline, a
duration and a seed; the same file and seed always give the same run. The format is
parsed with the standard library's ``tomllib``, typed with msgspec (unknown fields are
errors), then checked for meaning (known node names, sane ranges). Every error names the
offending field the way a user would write it: ``faults[1].groups: unknown node 'n9'``.

``overrides`` (dotted paths such as ``gossip.fanout``) let ``rumor sim sweep`` and the
shipped experiments vary one parameter of a file without copying it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from rumordb.core.bounds import DEFAULT_MAX_CLOCK_SKEW_MS

Topology = Literal["complete", "random_regular", "small_world", "two_dc", "graphml"]
Action = Literal["partition", "heal", "crash", "restart", "link", "clock"]
CrashState = Literal["keep", "lose", "wipe"]


class ScenarioError(ValueError):
    """A scenario that cannot run; the message starts with the offending field."""


class _Spec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ClusterSpec(_Spec):
    nodes: int = 5
    sharding: bool = False
    replicas: int = 3
    membership: Literal["dynamic", "static"] = "dynamic"


class NetworkSpec(_Spec):
    topology: Topology = "complete"
    latency_ms: float = 5.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    degree: int = 4  # random_regular degree; small_world neighbours
    rewire_p: float = 0.1  # small_world rewiring probability
    wan_latency_ms: float = 50.0  # two_dc: the link between the datacentres
    wan_jitter_ms: float = 5.0
    wan_loss: float = 0.0
    graphml: str | None = None  # path, relative to the scenario file


class GossipSpec(_Spec):
    fanout: int = 3
    interval_ms: int = 200
    anti_entropy_interval_ms: int = 1000
    probe_interval_ms: int = 1000
    retransmit_mult: int = 4
    suspicion_mult: int = 3
    max_batch: int = 512
    jitter_timers: bool = True


class WorkloadSpec(_Spec):
    writes_per_s: float = 0.0
    delete_fraction: float = 0.0  # share of writes that are deletes
    reads_per_s: float = 0.0
    lists_per_s: float = 0.0  # key listings (GET /kv): gathered from every peer when sharded
    list_limit: int = 100  # keys per listing page
    keys: int = 100
    value_bytes: int = 64
    start_s: float = 0.0
    stop_s: float | None = None  # None: until the end of the run
    writes: int | None = None  # stop after this many writes (e.g. 1 for dissemination)
    from_nodes: list[str] | None = None  # None: a random node that is up
    arrivals: Literal["poisson", "uniform"] = "poisson"
    ttl_s: float = 0.0  # puts expire this long after their write (0: never; live: whole s)


class ChurnSpec(_Spec):
    """Random crashes: every ``interval_s`` one random up node crashes for ``down_s``."""

    interval_s: float = 0.0  # 0: no churn
    down_s: float = 2.0
    start_s: float = 0.0
    stop_s: float | None = None
    state: CrashState = "keep"


class ClocksSpec(_Spec):
    """Initial clock error: offsets spread evenly in [-skew_ms, +skew_ms], drift likewise."""

    skew_ms: float = 0.0
    drift_ppm: float = 0.0
    # The nodes' bound on clocks from outside (``NodeConfig.max_clock_skew_ms``): versions
    # more than this ahead of a node's clock are dropped, and a node this far ahead of
    # most peers refuses writes. Skews beyond it measure the bound, not LWW.
    max_clock_skew_ms: int = DEFAULT_MAX_CLOCK_SKEW_MS


class FaultSpec(_Spec):
    at_s: float
    action: Action
    groups: list[list[str]] | None = None  # partition
    nodes: list[str] | None = None  # crash, restart, clock
    state: CrashState = "keep"  # crash: keep memory (pause), lose memory (reload disk), wipe
    links: list[list[str]] | None = None  # link: node pairs; None = every link
    latency_ms: float | None = None
    jitter_ms: float | None = None
    loss: float | None = None
    offset_ms: float | None = None  # clock: offset from true time
    drift: float | None = None  # clock: seconds gained per second (0.001 = 1000 ppm)


class Scenario(_Spec):
    duration_s: float
    seed: int = 0
    name: str = ""
    description: str = ""
    sample_interval_ms: float = 100.0
    stop_when_converged: bool = False  # end the run as soon as every key is everywhere
    stop_when_quiet: bool = False  # end it once no rumor is queued or in flight (push only)
    cluster: ClusterSpec = msgspec.field(default_factory=ClusterSpec)
    network: NetworkSpec = msgspec.field(default_factory=NetworkSpec)
    gossip: GossipSpec = msgspec.field(default_factory=GossipSpec)
    workload: WorkloadSpec = msgspec.field(default_factory=WorkloadSpec)
    churn: ChurnSpec = msgspec.field(default_factory=ChurnSpec)
    clocks: ClocksSpec = msgspec.field(default_factory=ClocksSpec)
    faults: list[FaultSpec] = msgspec.field(default_factory=list)
    base_dir: str = "."  # set by the loader: where relative paths start

    @property
    def node_ids(self) -> list[str]:
        return [f"n{i}" for i in range(1, self.cluster.nodes + 1)]


def load_scenario(
    path: Path, overrides: dict[str, Any] | None = None, seed: int | None = None
) -> Scenario:
    """Read, override, type-check and validate a scenario file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: invalid TOML: {exc}") from exc
    raw.setdefault("base_dir", str(path.parent))
    return parse_scenario(raw, overrides, seed)


def parse_scenario(
    raw: dict[str, Any], overrides: dict[str, Any] | None = None, seed: int | None = None
) -> Scenario:
    for dotted, value in (overrides or {}).items():
        apply_override(raw, dotted, value)
    if seed is not None:
        raw["seed"] = seed
    try:
        scenario = msgspec.convert(raw, Scenario)
    except msgspec.ValidationError as exc:
        raise ScenarioError(_field_message(str(exc))) from exc
    validate(scenario)
    return scenario


def to_dict(scenario: Scenario) -> dict[str, Any]:
    """The scenario as plain data (the echo in metrics.json)."""
    data: dict[str, Any] = msgspec.to_builtins(scenario)
    data.pop("base_dir", None)
    return data


def apply_override(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c = value`` in the raw TOML tables, creating tables as needed."""
    parts = dotted.split(".")
    if not all(parts):
        raise ScenarioError(f"{dotted}: not a dotted parameter name")
    table = raw
    for part in parts[:-1]:
        nested = table.setdefault(part, {})
        if not isinstance(nested, dict):
            raise ScenarioError(f"{dotted}: {part} is not a table")
        table = nested
    table[parts[-1]] = value


def parse_value(text: str) -> Any:
    """A command-line value read as a TOML literal: 3, 0.5, true, "x" (bare words are text)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _field_message(message: str) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.faults[1].at_s`"; lead with the field.
    match = re.search(r" - at `\$\.?(.*)`$", message)
    if not match:
        return message
    field = match.group(1) or "scenario"
    text = message[: match.start()]
    return f"{field}: {text[0].lower()}{text[1:]}"


def validate(s: Scenario) -> None:
    """Meaning checks that types cannot express; raises ScenarioError naming the field."""
    _check(s.duration_s > 0, "duration_s", "must be > 0")
    _check(s.sample_interval_ms > 0, "sample_interval_ms", "must be > 0")
    _validate_cluster(s.cluster)
    _validate_network(s.network, s.cluster.nodes, Path(s.base_dir))
    _validate_gossip(s.gossip)
    known = set(s.node_ids)
    _validate_workload(s.workload, known)
    _check(s.churn.interval_s >= 0, "churn.interval_s", "must be >= 0")
    _check(s.churn.down_s > 0, "churn.down_s", "must be > 0")
    _check(s.clocks.skew_ms >= 0, "clocks.skew_ms", "must be >= 0")
    _check(s.clocks.max_clock_skew_ms >= 1, "clocks.max_clock_skew_ms", "must be >= 1")
    _check(abs(s.clocks.drift_ppm) < 100_000, "clocks.drift_ppm", "must be below 100000")
    for i, fault in enumerate(s.faults):
        _validate_fault(fault, f"faults[{i}]", known, s.duration_s)


def _check(ok: bool, field: str, problem: str) -> None:
    if not ok:
        raise ScenarioError(f"{field}: {problem}")


def _validate_cluster(c: ClusterSpec) -> None:
    _check(c.nodes >= 1, "cluster.nodes", "must be >= 1")
    _check(c.nodes <= 100_000, "cluster.nodes", "must be <= 100000")
    _check(c.replicas >= 1, "cluster.replicas", "must be >= 1")
    if c.sharding:
        _check(c.replicas <= c.nodes, "cluster.replicas", "must not exceed cluster.nodes")


def _validate_network(n: NetworkSpec, nodes: int, base_dir: Path) -> None:
    for name in ("latency_ms", "jitter_ms", "wan_latency_ms", "wan_jitter_ms"):
        _check(getattr(n, name) >= 0, f"network.{name}", "must be >= 0")
    for name in ("loss", "wan_loss"):
        _check(0 <= getattr(n, name) < 1, f"network.{name}", "must be in [0, 1)")
    if n.topology == "random_regular":
        _check(0 < n.degree < nodes, "network.degree", "must be in [1, cluster.nodes)")
        _check(n.degree * nodes % 2 == 0, "network.degree", "degree * nodes must be even")
    if n.topology == "small_world":
        _check(1 < n.degree < nodes, "network.degree", "must be in [2, cluster.nodes)")
        _check(0 <= n.rewire_p <= 1, "network.rewire_p", "must be in [0, 1]")
    if n.topology == "two_dc":
        _check(nodes >= 2, "cluster.nodes", "two_dc needs at least 2 nodes")
    if n.topology == "graphml":
        _check(n.graphml is not None, "network.graphml", "required for topology 'graphml'")
        path = base_dir / str(n.graphml)
        _check(path.is_file(), "network.graphml", f"no such file: {path}")


def _validate_gossip(g: GossipSpec) -> None:
    for name in (
        "fanout",
        "interval_ms",
        "anti_entropy_interval_ms",
        "probe_interval_ms",
        "retransmit_mult",
        "suspicion_mult",
        "max_batch",
    ):
        _check(getattr(g, name) >= 1, f"gossip.{name}", "must be >= 1")


def _validate_workload(w: WorkloadSpec, known: set[str]) -> None:
    for name in ("writes_per_s", "reads_per_s", "lists_per_s", "start_s"):
        _check(getattr(w, name) >= 0, f"workload.{name}", "must be >= 0")
    _check(0 <= w.delete_fraction <= 1, "workload.delete_fraction", "must be in [0, 1]")
    _check(w.keys >= 1, "workload.keys", "must be >= 1")
    _check(w.list_limit >= 1, "workload.list_limit", "must be >= 1")
    _check(w.value_bytes >= 0, "workload.value_bytes", "must be >= 0")
    if w.stop_s is not None:
        _check(w.stop_s >= w.start_s, "workload.stop_s", "must be >= workload.start_s")
    if w.writes is not None:
        _check(w.writes >= 0, "workload.writes", "must be >= 0")
    if w.from_nodes is not None:
        _check(bool(w.from_nodes), "workload.from_nodes", "must not be empty")
        _known_nodes(w.from_nodes, "workload.from_nodes", known)


def _known_nodes(names: list[str], field: str, known: set[str]) -> None:
    for name in names:
        _check(name in known, field, f"unknown node {name!r}")


def _validate_fault(f: FaultSpec, field: str, known: set[str], duration_s: float) -> None:
    _check(0 <= f.at_s <= duration_s, f"{field}.at_s", "must be within [0, duration_s]")
    if f.action == "partition":
        _check(bool(f.groups), f"{field}.groups", "required for action 'partition'")
        seen: set[str] = set()
        for group in f.groups or []:
            _known_nodes(group, f"{field}.groups", known)
            twice = sorted(seen.intersection(group))
            _check(not twice, f"{field}.groups", f"node {twice[:1]} is in two groups")
            seen.update(group)
    elif f.action in ("crash", "restart"):
        _check(bool(f.nodes), f"{field}.nodes", f"required for action {f.action!r}")
        _known_nodes(f.nodes or [], f"{field}.nodes", known)
    elif f.action == "link":
        changes = (f.latency_ms, f.jitter_ms, f.loss)
        _check(
            any(v is not None for v in changes),
            field,
            "action 'link' needs latency_ms, jitter_ms or loss",
        )
        for pair in f.links or []:
            _check(len(pair) == 2, f"{field}.links", "each link is a pair of nodes")
            _known_nodes(pair, f"{field}.links", known)
        _check(f.loss is None or 0 <= f.loss <= 1, f"{field}.loss", "must be in [0, 1]")
        for name in ("latency_ms", "jitter_ms"):
            value = getattr(f, name)
            _check(value is None or value >= 0, f"{field}.{name}", "must be >= 0")
    elif f.action == "clock":
        _check(bool(f.nodes), f"{field}.nodes", "required for action 'clock'")
        _known_nodes(f.nodes or [], f"{field}.nodes", known)
        _check(
            f.offset_ms is not None or f.drift is not None,
            field,
            "action 'clock' needs offset_ms or drift",
        )
        _check(f.drift is None or abs(f.drift) < 0.1, f"{field}.drift", "must be in (-0.1, 0.1)")
