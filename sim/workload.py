"""Client workloads: a pure description turned into a deterministic stream of timed ops.

A workload is a list of phases (``scenario.PhaseSpec``); each phase is a rate over
``[start_s, stop_s)``, a set of writer nodes, a key range or list, and an operation mix
(put, conditional put with ``If-Match``, delete, read, list). ``OpStream`` generates every
phase's operations from the scenario seed alone and merges them in time order: no
engine state goes in, so a live driver replays exactly what the simulator runs. Each
``Op`` is ``(at_s, node, kind, key, value, conditional)``; a conditional put means
"read the key's version context at that node, then PUT with ``If-Match`` naming it"
(a plain PUT when the key is absent there); a listing (``GET /kv``) names no key and
asks for ``list_limit`` keys.

Each phase draws from its own stream, ``random.Random(f"{seed}:workload:{i}")``, in a
fixed order per operation: kind (write, read or list, then which write), key (not for
a listing), node, gap. Reads take every draw above the writes when a phase has no
listings, so adding ``list`` to the mix left the streams of the other phases as they were.
Phases with ``pick = "up"`` leave ``node`` empty; the driver calls ``OpStream.pick`` at the
operation's instant, which draws from the same stream, so a live driver that does the
same reproduces the same keys.

The flat ``[workload]`` of older scenario files is one phase with ``pick = "up"`` and
its original rules (stream ``"{seed}:workload"``, arrival times accumulated, the stop
instant included, ``lists_per_s`` drawn after reads), so those files replay to the same
trace hash as before.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from rumordb.core import Record
from rumordb.core.context import Context, decode_context, encode_context
from rumordb.sim.scenario import PhaseSpec, WorkloadSpec

OpKind = Literal["put", "delete", "read", "list"]


@dataclass(frozen=True, slots=True)
class Op:
    at_s: float
    node: str | None  # None: the driver picks an up node of the phase (``OpStream.pick``)
    kind: OpKind
    key: str  # "" for a listing (of every key)
    value: bytes | None  # puts only
    conditional: bool  # a put with If-Match: the version the client just read there
    phase: int
    seq: int  # writes and deletes only: their position in the phase's stream
    list_limit: int = 0  # listings only: keys per page
    ttl_s: float = 0.0  # puts only: the value expires this long after its write

    @property
    def label(self) -> str:
        """The op as the trace names it."""
        return "put-if-match" if self.conditional else self.kind


@dataclass(frozen=True, slots=True)
class Phase:
    """A phase with its shares resolved: the generator's whole input."""

    index: int
    stream: str  # the name its random stream is seeded with
    start_s: float
    stop_s: float | None
    rate_per_s: float
    poisson: bool
    nodes: tuple[str, ...]  # empty: every node
    scripted: bool  # True: the op names its node; False: picked among the up nodes
    keys: Sequence[str]  # a range object's strings, or the key list
    sequential: bool
    write_share: float  # of all ops
    read_share: float  # draws in [write_share, read_share) are reads, the rest listings
    delete_share: float  # of writes
    conditional_share: float  # of writes
    value_bytes: int
    list_limit: int
    writes: int | None
    value_label: str
    ttl_s: float  # puts: their values expire this long after the write (0: never)
    legacy: bool  # the flat [workload]'s arrival rule: times accumulated, stop included


class KeyRange(Sequence[str]):
    """``prefix + i`` for i in [first, stop), without building the list."""

    def __init__(self, prefix: str, first: int, stop: int) -> None:
        self.prefix, self.first, self.stop = prefix, first, stop

    def __len__(self) -> int:
        return self.stop - self.first

    def __getitem__(self, i: int) -> str:  # type: ignore[override]
        return f"{self.prefix}{self.first + i}"


def phases_of(spec: WorkloadSpec) -> list[Phase]:
    if spec.phases:
        return [_phase(i, p) for i, p in enumerate(spec.phases)]
    rate = spec.writes_per_s + spec.reads_per_s + spec.lists_per_s
    if rate <= 0:
        return []
    write_share = spec.writes_per_s / rate
    return [
        Phase(
            index=0,
            stream="workload",
            start_s=spec.start_s,
            stop_s=spec.stop_s,
            rate_per_s=rate,
            poisson=spec.arrivals == "poisson",
            nodes=tuple(spec.from_nodes or ()),
            scripted=False,
            keys=KeyRange("k", 0, spec.keys),
            sequential=False,
            write_share=write_share,
            # Reads take the rest when there are no listings: the draws, and so every
            # trace of a scenario without listings, stay what they were before them.
            read_share=1.0 if spec.lists_per_s == 0 else write_share + spec.reads_per_s / rate,
            delete_share=spec.delete_fraction,
            conditional_share=0.0,
            value_bytes=spec.value_bytes,
            list_limit=spec.list_limit,
            writes=spec.writes,
            value_label="v",
            ttl_s=spec.ttl_s,
            legacy=True,
        )
    ]


def _phase(i: int, p: PhaseSpec) -> Phase:
    m = p.mix
    writes = m.put + m.conditional_put + m.delete
    keys: Sequence[str]
    if p.key_list is not None:
        keys = tuple(p.key_list)
    elif p.key_range is not None:
        keys = KeyRange(p.key_prefix, p.key_range[0], p.key_range[1])
    else:
        keys = ()  # validated: a phase of listings only, which draws no key
    return Phase(
        index=i,
        stream=f"workload:{i}",
        start_s=p.start_s,
        stop_s=p.stop_s,
        rate_per_s=p.rate_per_s,
        poisson=p.arrivals == "poisson",
        nodes=tuple(p.nodes or ()),
        scripted=p.pick == "scripted",
        keys=keys,
        sequential=p.key_order == "sequential",
        # 1.0 when nothing else is drawn: no rounding can turn a write into a read.
        write_share=1.0 if m.read == 0 and m.list == 0 else writes,
        read_share=1.0 if m.list == 0 else writes + m.read,
        delete_share=m.delete / writes if writes else 0.0,
        conditional_share=m.conditional_put / writes if writes else 0.0,
        value_bytes=p.value_bytes,
        list_limit=p.list_limit,
        writes=p.writes,
        value_label=f"v{i}.",
        ttl_s=p.ttl_s,
        legacy=False,
    )


class OpStream:
    """The workload's operations in time order; iterate once per run."""

    def __init__(
        self, spec: WorkloadSpec, node_ids: Sequence[str], duration_s: float, seed: int
    ) -> None:
        self.phases = phases_of(spec)
        self.node_ids = tuple(node_ids)
        self.duration_s = duration_s
        self._rngs = [random.Random(f"{seed}:{p.stream}") for p in self.phases]

    def __iter__(self) -> Iterator[Op]:
        streams = [
            phase_ops(p, self.node_ids, self.duration_s, rng)
            for p, rng in zip(self.phases, self._rngs, strict=True)
        ]
        # Ties keep phase order: heapq.merge is stable across its inputs.
        return heapq.merge(*streams, key=lambda op: op.at_s)

    def pick(self, op: Op, is_up: Callable[[str], bool]) -> str | None:
        """The node that serves ``op`` now, or None when none of its nodes is up."""
        if op.node is not None:
            return op.node if is_up(op.node) else None
        names = self.phases[op.phase].nodes or self.node_ids
        up = [name for name in names if is_up(name)]
        return self._rngs[op.phase].choice(up) if up else None


def phase_ops(
    p: Phase, node_ids: Sequence[str], duration_s: float, rng: random.Random
) -> Iterator[Op]:
    """One phase's operations in time order, up to its stop and its ``writes``."""
    stop_s = min(duration_s, p.stop_s if p.stop_s is not None else duration_s)
    max_writes = p.writes if p.writes is not None else float("inf")
    if max_writes <= 0:
        return
    nodes = p.nodes or tuple(node_ids)
    at_s, count, keyed, writes = p.start_s, 0, 0, 0
    while at_s <= stop_s if p.legacy else at_s < stop_s:
        kind, conditional = _kind(p, rng)
        is_write = kind in ("put", "delete")
        writes += is_write
        key = ""
        if kind != "list":  # a listing names no key: it draws none, and skips no key
            key = p.keys[keyed % len(p.keys) if p.sequential else rng.randrange(len(p.keys))]
            keyed += 1
        node = rng.choice(nodes) if p.scripted else None
        value = value_for(f"{p.value_label}{writes}:", p.value_bytes) if kind == "put" else None
        seq = writes if is_write else 0
        limit = p.list_limit if kind == "list" else 0
        ttl_s = p.ttl_s if kind == "put" else 0.0
        yield Op(at_s, node, kind, key, value, conditional, p.index, seq, limit, ttl_s)
        count += 1
        if writes >= max_writes:
            return
        at_s = _next_at(p, at_s, count, rng)


def _kind(p: Phase, rng: random.Random) -> tuple[OpKind, bool]:
    """The next op's kind, and whether a put is conditional (one or two draws)."""
    draw = rng.random()
    if draw >= p.write_share:
        return ("read" if draw < p.read_share else "list"), False
    draw = rng.random()
    if draw < p.delete_share:
        return "delete", False
    return "put", draw < p.delete_share + p.conditional_share


def _next_at(p: Phase, at_s: float, count: int, rng: random.Random) -> float:
    if p.poisson:
        return at_s + rng.expovariate(p.rate_per_s)
    if p.legacy:
        return at_s + 1.0 / p.rate_per_s
    return p.start_s + count / p.rate_per_s  # no accumulated rounding: exact counts


def script(spec: WorkloadSpec, node_ids: Sequence[str], duration_s: float, seed: int) -> list[Op]:
    """Every operation, node included: what a live driver replays (scripted phases only)."""
    stream = OpStream(spec, node_ids, duration_s, seed)
    loose = [p.index for p in stream.phases if not p.scripted]
    if loose:
        raise ValueError(f"phases {loose} pick their node when each op happens: not a script")
    return list(stream)


def context_of(record: Record | None) -> Context | None:
    """The ``If-Match`` a client sends after reading ``record`` (None when it read 404)."""
    if record is None or record.tombstone:
        return None
    return decode_context(encode_context(record.clock, record.hlc))


def value_for(label: str, size: int) -> bytes:
    """A value of ``size`` bytes that names its write (sizes matter, content does not)."""
    raw = label.encode()
    return (raw * (size // len(raw) + 1))[:size]
