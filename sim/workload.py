"""Client workloads: writes, deletes, reads and listings at a rate over a key space.

The operations form one deterministic stream per seed: arrival times (Poisson or evenly
spaced), the kind of each operation in proportion to the rates, and a key drawn
uniformly from ``k0..k{keys-1}``. Which node serves an operation is decided by the
engine when it happens, because only then is it known which nodes are up.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from rumordb.sim.scenario import WorkloadSpec

OpKind = Literal["put", "delete", "read", "list"]


@dataclass(frozen=True, slots=True)
class Op:
    at_s: float
    kind: OpKind
    key: str  # "" for a listing (of every key)
    seq: int  # writes and deletes only: their position in the stream
    ttl_s: float = 0.0  # puts only: the value expires this long after its write


def operations(spec: WorkloadSpec, duration_s: float, rng: random.Random) -> Iterator[Op]:
    """The workload's operations in time order, up to ``stop_s`` and ``writes``."""
    rate = spec.writes_per_s + spec.reads_per_s + spec.lists_per_s
    stop_s = min(duration_s, spec.stop_s if spec.stop_s is not None else duration_s)
    max_writes = spec.writes if spec.writes is not None else float("inf")
    if rate <= 0 or max_writes <= 0:
        return
    write_share = spec.writes_per_s / rate
    # Reads take the rest when there are no listings: the draws, and so every trace of
    # a scenario without listings, stay what they were before listings existed.
    read_share = 1.0 if spec.lists_per_s == 0 else write_share + spec.reads_per_s / rate
    at_s, writes = spec.start_s, 0
    while at_s <= stop_s:
        draw = rng.random()
        if draw < write_share:
            kind: OpKind = "delete" if rng.random() < spec.delete_fraction else "put"
            writes += 1
            ttl_s = spec.ttl_s if kind == "put" else 0.0
            yield Op(at_s, kind, f"k{rng.randrange(spec.keys)}", writes, ttl_s)
            if writes >= max_writes:
                return
        elif draw < read_share:
            yield Op(at_s, "read", f"k{rng.randrange(spec.keys)}", 0)
        else:
            yield Op(at_s, "list", "", 0)
        at_s += rng.expovariate(rate) if spec.arrivals == "poisson" else 1.0 / rate


def value_for(seq: int, size: int) -> bytes:
    """A value of ``size`` bytes that names its write (sizes matter, content does not)."""
    label = f"v{seq}:".encode()
    return (label * (size // len(label) + 1))[:size]
