"""Scenario files: one TOML file says everything a simulated run depends on.

A scenario is a cluster, a network, gossip parameters, a workload, a fault timeline, a
duration and a seed; the same file and seed always give the same run. The format is
parsed with the standard library's ``tomllib``, typed with msgspec (unknown fields are
errors), then checked for meaning (known node names, sane ranges). Every error names the
offending field the way a user would write it: ``faults[1].groups: unknown node 'n9'``.

The workload is either the flat ``[workload]`` table (one random-key phase) or a list
of ``[[workload.phases]]``, each a rate over ``[start_s, stop_s)`` with its writer nodes,
a ``key_range`` or ``key_list`` and an operation ``mix``; ``sim.workload`` turns either
into the same kind of timed operations, which a live driver can replay.

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
from rumordb.core.rumors import DEFAULT_DIRECT_MAIL_MAX

Topology = Literal["complete", "random_regular", "small_world", "two_dc", "graphml"]
Action = Literal["partition", "heal", "crash", "restart", "link", "clock", "leave", "forget"]
CrashState = Literal["keep", "lose", "wipe"]


MAX_NODES = 1_000_000  # issue 17: a million simulated nodes (make bench-sim-1m)
MAX_PHASES = 256
MAX_KEYS = 1_000_000  # keys one phase may address
MAX_KEY_BYTES = 1024  # the core's default limit (NodeConfig.max_key_bytes)
MAX_VALUE_BYTES = 1 << 20
MAX_RATE_PER_S = 1_000_000.0
MAX_LIST_LIMIT = 1000  # the live edge's largest page (GET /kv?limit=)
_BAD_KEY = re.compile("[\x00-\x1f]")
_LIMIT_TEXT = f"must be in [1, {MAX_LIST_LIMIT}]"
_KEY_TEXT = "keys are non-empty UTF-8 text of at most 1024 bytes, without control characters"


class ScenarioError(ValueError):
    """A scenario that cannot run; the message starts with the offending field."""


class _Spec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ClusterSpec(_Spec):
    nodes: int = 5
    sharding: bool = False
    replicas: int = 3
    membership: Literal["dynamic", "static"] = "dynamic"
    # Forget members dead this long (the live ``--reap-dead-after-s``); 0: never.
    reap_dead_after_s: float = 0.0


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
    # Model the live send path (sim.posts): per-peer posts by core.send_policy, with the
    # per-post cost and framing of a calibration file (relative to the scenario file;
    # the committed sim/calibration.toml when unset). Off: every message travels alone.
    posts: bool = False
    calibration: str | None = None
    # With posts: the live nodes' --durability; under "sync" a client write's sends wait
    # for its group commit (the calibration's commit_cost_us). "batch"/"memory": none.
    durability: Literal["batch", "sync", "memory"] = "batch"
    # With posts: an observer (the compare driver) watches every node and samples its
    # /metrics this often (sim.posts.SideWork: what that costs the nodes); 0: none.
    observer_sample_ms: int = 0
    # With posts: every node runs on one machine, sharing its cores (the calibration's
    # ``cores``), as a local live cluster and its driver do; false: a core per node.
    one_machine: bool = False


class GossipSpec(_Spec):
    fanout: int = 3
    direct_mail_max: int = DEFAULT_DIRECT_MAIL_MAX  # core.rumors.push_width
    interval_ms: int = 200
    anti_entropy_interval_ms: int = 1000
    probe_interval_ms: int = 1000
    retransmit_mult: int = 4
    suspicion_mult: int = 3
    max_batch: int = 512
    jitter_timers: bool = True


class MixSpec(_Spec):
    """Shares of a phase's operations; they add up to 1."""

    put: float = 0.0
    conditional_put: float = 0.0  # read the key's version there, then PUT with If-Match
    delete: float = 0.0
    read: float = 0.0
    list: float = 0.0  # a key listing (GET /kv) of ``list_limit`` keys; names no key


class PhaseSpec(_Spec, kw_only=True):
    """A scripted stretch of client traffic: who writes which keys, how fast, what ops.

    Runs over ``[start_s, stop_s)``. ``pick = "scripted"``: each operation names its node
    when the workload is generated (a live driver replays it as is; an operation whose
    node is down fails, as a live client's request would); ``"up"``: the driver picks one
    of ``nodes`` that is up at the operation's instant.
    """

    start_s: float = 0.0
    stop_s: float | None = None  # None: until the end of the run
    rate_per_s: float
    arrivals: Literal["poisson", "uniform"] = "uniform"
    nodes: list[str] | None = None  # None: every node
    pick: Literal["scripted", "up"] = "scripted"
    key_range: list[int] | None = None  # [first, stop): key_prefix + first ... stop - 1
    key_list: list[str] | None = None
    key_prefix: str = "k"
    key_order: Literal["random", "sequential"] = "random"  # sequential: in order, cycling
    mix: MixSpec = msgspec.field(default_factory=lambda: MixSpec(put=1.0))
    value_bytes: int = 64
    list_limit: int = 100  # keys per listing page (mix.list)
    writes: int | None = None  # stop the phase after this many puts and deletes
    ttl_s: float = 0.0  # puts expire this long after their write (0: never; live: whole s)


class WorkloadSpec(_Spec):
    """The flat fields are the original single workload; ``phases`` script several.

    Use one or the other: the flat fields are one phase of their own, generated with
    their original arrival rule so old scenarios replay to the same trace hash.
    """

    phases: list[PhaseSpec] = msgspec.field(default_factory=list)
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
    nodes: list[str] | None = None  # crash, restart, clock, leave; forget: whom to forget
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
    return parse_scenario(read_raw(path), overrides, seed)


def read_raw(path: Path) -> dict[str, Any]:
    """The file's TOML tables (plus ``base_dir``): what a remote worker is sent."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: invalid TOML: {exc}") from exc
    raw.setdefault("base_dir", str(path.parent))
    return raw


def parse_scenario(
    raw: dict[str, Any], overrides: dict[str, Any] | None = None, seed: int | None = None
) -> Scenario:
    """Override (in place), type-check and validate raw TOML tables."""
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
    """Set ``a.b.c = value`` in the raw TOML tables, creating tables as needed.

    A number picks an element of an array of tables: ``workload.phases.1.rate_per_s``.
    """
    parts = dotted.split(".")
    if not all(parts):
        raise ScenarioError(f"{dotted}: not a dotted parameter name")
    table: dict[str, Any] | list[Any] = raw
    for part in parts[:-1]:
        nested = _element(table, part, dotted) if isinstance(table, list) else None
        if nested is None and isinstance(table, dict):
            nested = table.setdefault(part, {})
        if not isinstance(nested, dict | list):
            raise ScenarioError(f"{dotted}: {part} is not a table")
        table = nested
    if isinstance(table, list):
        raise ScenarioError(f"{dotted}: name a field of an element, not the element")
    table[parts[-1]] = value


def _element(items: list[Any], part: str, dotted: str) -> Any:
    if not part.isdigit() or int(part) >= len(items):
        raise ScenarioError(f"{dotted}: {part} is not an index below {len(items)}")
    return items[int(part)]


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
    _validate_workload(s.workload, known, s.duration_s)
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
    _check(c.nodes <= MAX_NODES, "cluster.nodes", f"must be <= {MAX_NODES}")
    _check(c.replicas >= 1, "cluster.replicas", "must be >= 1")
    _check(c.reap_dead_after_s >= 0, "cluster.reap_dead_after_s", "must be >= 0 (0: never)")
    if c.sharding:
        _check(c.replicas <= c.nodes, "cluster.replicas", "must not exceed cluster.nodes")


def _validate_network(n: NetworkSpec, nodes: int, base_dir: Path) -> None:
    for name in ("latency_ms", "jitter_ms", "wan_latency_ms", "wan_jitter_ms", "observer_sample_ms"):  # fmt: skip
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
    _check(g.direct_mail_max >= 0, "gossip.direct_mail_max", "must be >= 0")


def _validate_workload(w: WorkloadSpec, known: set[str], duration_s: float) -> None:
    if w.phases:
        _check(len(w.phases) <= MAX_PHASES, "workload.phases", f"at most {MAX_PHASES} phases")
        _no_flat_fields(w)
        for i, phase in enumerate(w.phases):
            _validate_phase(phase, f"workload.phases[{i}]", known, duration_s)
        return
    for name in ("writes_per_s", "reads_per_s", "lists_per_s", "start_s", "ttl_s"):
        _check(getattr(w, name) >= 0, f"workload.{name}", "must be >= 0")
    _check(0 <= w.delete_fraction <= 1, "workload.delete_fraction", "must be in [0, 1]")
    _check(w.keys >= 1, "workload.keys", "must be >= 1")
    _check(1 <= w.list_limit <= MAX_LIST_LIMIT, "workload.list_limit", _LIMIT_TEXT)
    _check(w.value_bytes >= 0, "workload.value_bytes", "must be >= 0")
    if w.stop_s is not None:
        _check(w.stop_s >= w.start_s, "workload.stop_s", "must be >= workload.start_s")
    if w.writes is not None:
        _check(w.writes >= 0, "workload.writes", "must be >= 0")
    if w.from_nodes is not None:
        _check(bool(w.from_nodes), "workload.from_nodes", "must not be empty")
        _known_nodes(w.from_nodes, "workload.from_nodes", known)


def _no_flat_fields(w: WorkloadSpec) -> None:
    flat = WorkloadSpec()
    for name in WorkloadSpec.__struct_fields__:
        if name != "phases" and getattr(w, name) != getattr(flat, name):
            _check(
                False,
                f"workload.{name}",
                "not with workload.phases (the flat fields are one phase; put it in a phase)",
            )


def _validate_phase(p: PhaseSpec, field: str, known: set[str], duration_s: float) -> None:
    _check(0 <= p.start_s < duration_s, f"{field}.start_s", "must be within [0, duration_s)")
    if p.stop_s is not None:
        _check(p.stop_s > p.start_s, f"{field}.stop_s", f"must be > {field}.start_s")
    _check(p.rate_per_s > 0, f"{field}.rate_per_s", "must be > 0")
    _check(p.rate_per_s <= MAX_RATE_PER_S, f"{field}.rate_per_s", f"must be <= {MAX_RATE_PER_S}")
    if p.nodes is not None:
        _check(bool(p.nodes), f"{field}.nodes", "must not be empty (omit it for every node)")
        _known_nodes(p.nodes, f"{field}.nodes", known)
        _check(len(set(p.nodes)) == len(p.nodes), f"{field}.nodes", "names a node twice")
    _validate_keys(p, field)
    _validate_mix(p.mix, f"{field}.mix")
    _check(0 <= p.value_bytes <= MAX_VALUE_BYTES, f"{field}.value_bytes", "must be in [0, 1 MiB]")
    _check(1 <= p.list_limit <= MAX_LIST_LIMIT, f"{field}.list_limit", _LIMIT_TEXT)
    _check(p.ttl_s >= 0, f"{field}.ttl_s", "must be >= 0")
    if p.writes is not None:
        _check(p.writes >= 1, f"{field}.writes", "must be >= 1")


def _validate_keys(p: PhaseSpec, field: str) -> None:
    given = (p.key_range is not None) + (p.key_list is not None)
    if p.mix.list == 1 and given == 0:
        return  # listings only: no key is ever drawn
    _check(given == 1, field, "give exactly one of key_range and key_list")
    if p.key_range is not None:
        r = p.key_range
        _check(len(r) == 2, f"{field}.key_range", "is [first, stop]")
        _check(0 <= r[0] < r[1], f"{field}.key_range", "needs 0 <= first < stop")
        _check(r[1] - r[0] <= MAX_KEYS, f"{field}.key_range", f"at most {MAX_KEYS} keys")
        _check(not _BAD_KEY.search(p.key_prefix), f"{field}.key_prefix", _KEY_TEXT)
        longest = f"{p.key_prefix}{r[1] - 1}".encode()
        _check(len(longest) <= MAX_KEY_BYTES, f"{field}.key_prefix", "makes keys too long")
    for key in p.key_list or []:
        ok = bool(key) and not _BAD_KEY.search(key) and len(key.encode()) <= MAX_KEY_BYTES
        _check(ok, f"{field}.key_list", f"{key!r}: {_KEY_TEXT}")
    if p.key_list is not None:
        _check(bool(p.key_list), f"{field}.key_list", "must not be empty")
        _check(len(p.key_list) <= MAX_KEYS, f"{field}.key_list", f"at most {MAX_KEYS} keys")


def _validate_mix(m: MixSpec, field: str) -> None:
    shares = msgspec.structs.asdict(m)
    for name, share in shares.items():
        _check(share >= 0, f"{field}.{name}", "must be >= 0")
    total = sum(shares.values())
    _check(abs(total - 1) < 1e-6, field, f"shares must add up to 1 (they add up to {total:g})")


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
    elif f.action in ("crash", "restart", "leave", "forget"):
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
